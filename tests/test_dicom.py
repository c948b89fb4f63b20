"""`obv-eval data prepare mimicechoqa`: DICOM cines to mp4 on real DICOM files, and the PhysioNet
release's layout (MIMICEchoQA.json) through prepare, check and a run.

The files are pydicom's own test files (shipped in the pydicom wheel) and those of `pydicom-data`
(the `dev` extra), among them a real echocardiogram cine: color3d_jpeg_baseline.dcm, 120 frames of
640x480 YBR_FULL_422 JPEG baseline at FrameTime 33.333 ms. Where a file lacks frame timing (the
palette, RGB and MR files are stills or non-cine multi-frames) a copy gets a timing attribute here;
the pixel data stay the real ones.
"""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.pixels import apply_color_lut

import obv_eval.data.dicom as dicom
from obv_eval.benchmarks import BENCHMARKS
from obv_eval.cli import main
from obv_eval.data.dicom import (
    DicomError,
    convert_dicom,
    dicom_twin,
    frame_timing,
    prepare_echo,
    rate_from_frame_time,
    rgb_frames,
)
from obv_eval.sources import SAMPLES_DIR, DataSourceError, media_root, parse_data_source
from obv_eval.tasking import load_rows

ECHO_CINE = "color3d_jpeg_baseline.dcm"  # pydicom-data
# A row's clip path as MIMICEchoQA names it; the DICOM twin has the same path with .dcm.
CLIP = "mimic-iv-echo/0.1/files/p10/p10119872/s98097718/98097718_0047.mp4"


def _testfile(name: str) -> Path:
    path = get_testdata_file(name, download=False)  # never from the network
    if path is None:
        pytest.skip(f"{name} not installed (pip install pydicom-data, in the dev extra)")
    return Path(str(path))


def _decode(path: Path) -> tuple[av.video.stream.VideoStream, list[np.ndarray], list[float]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return stream, [f.to_ndarray(format="rgb24") for f in frames], [float(f.time) for f in frames]


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _with(name: str, tmp_path: Path, **attributes: object) -> Path:
    """A copy of a test file with header attributes set (the pixel data untouched)."""
    ds = pydicom.dcmread(_testfile(name))
    for key, value in attributes.items():
        setattr(ds, key, value)
    out = tmp_path / f"{Path(name).stem}_{'_'.join(attributes)}.dcm"
    ds.save_as(out)
    return out


def _lut_rgb(ds: pydicom.Dataset) -> np.ndarray:
    """The palette's colours at 8 bits (LUT entries are 8 or 16 bits, as the descriptor says)."""
    rgb = apply_color_lut(ds.pixel_array, ds).astype(np.uint32)
    bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    return (rgb * 255 // (2**bits - 1)).astype(np.uint8)


def _echo_rows(video: str, count: int) -> list[dict[str, object]]:
    """Sample rows (whatever they hold now) pointed at one clip."""
    lines = (SAMPLES_DIR / "mimicechoqa" / "test.jsonl").read_text(encoding="utf-8").splitlines()
    return [{**json.loads(line), "video": video} for line in lines[:count]]


def _release_rows(video: str) -> list[dict[str, object]]:
    """Two invented rows in the field set of PhysioNet's MIMICEchoQA.json (its README's example entry):
    the clip in a one-item `videos` list, a four-option item and a Yes/No one."""
    common = {
        "videos": [video],
        "study": "s98097718",
        "image": "98097718_0047",
        "view": "A3C",
        "split": "test",
    }
    return [
        {
            **common,
            "messages_id": "5921e583-0000-4000-8000-000000000001",
            "question": "What is the severity of mitral stenosis?",
            "answer": "Normal",
            "correct_option": "A",
            "option_A": "Normal",
            "option_B": "Mild",
            "option_C": "Moderate",
            "option_D": "Severe",
            "structure": "Mitral Valve",
            "report": "impression: mitral annular calcification without stenosis.",
            "exact_sentence": "Mitral annular calcification without stenosis.",
        },
        {
            **common,
            "messages_id": "5921e583-0000-4000-8000-000000000002",
            "question": "Is there a pericardial effusion?",
            "answer": "No",
            "correct_option": "B",
            "option_A": "Yes",
            "option_B": "No",
            "option_C": "",
            "option_D": "",
            "structure": "Pericardium",
            "report": "impression: no pericardial effusion.",
            "exact_sentence": "There is no pericardial effusion.",
        },
    ]


def _release(folder: Path, rows: list[dict[str, object]]) -> Path:
    """A download of the release as `wget -r` lays it out; returns the version folder (the --data DIR)."""
    data = folder / "physionet.org" / "files" / "mimic-iv-ext-echoqa" / "1.0.0"
    (data / "MIMICEchoQA").mkdir(parents=True)
    (data / "MIMICEchoQA" / "MIMICEchoQA.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return data


# --------------------------------------------------------------------------------------------------
# The acceptance path: the release's MIMICEchoQA.json and the real echo cine as its DICOM, through
# `data prepare`, `data check` and a tiny-model run.


@pytest.fixture(scope="module")
def converted_echo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(--data folder, source DICOM) after `obv-eval data prepare mimicechoqa` on the echo cine."""
    echo = _testfile(ECHO_CINE)
    root = tmp_path_factory.mktemp("echo")
    # MIMIC-IV-ECHO as wget lays it out: physionet.org/files/mimic-iv-echo/0.1/files/p10/...dcm
    twin = root / "physionet.org" / "files" / Path(CLIP).with_suffix(".dcm")
    twin.parent.mkdir(parents=True)
    shutil.copyfile(echo, twin)
    data = _release(root, _release_rows(CLIP))
    version_folder = root / "physionet.org" / "files" / "mimic-iv-echo" / "0.1"
    argv = ["data", "prepare", "mimicechoqa", "--source", str(version_folder), "--data", str(data)]
    assert main([*argv, "--no-progress"]) == 0
    return data, twin


def _clip(data: Path) -> Path:
    return data / "MIMICEchoQA" / CLIP  # where the rows name it, beside MIMICEchoQA.json


def test_echo_cine_becomes_120_frames_at_30_fps(converted_echo: tuple[Path, Path]) -> None:
    data, twin = converted_echo
    clip = _clip(data)
    header = pydicom.dcmread(twin, stop_before_pixels=True)
    assert (int(header.NumberOfFrames), str(header.FrameTime)) == (120, "33.333")
    stream, frames, times = _decode(clip)
    assert len(frames) == stream.frames == 120
    assert stream.average_rate == Fraction(30)
    assert np.allclose(np.diff(times), 1 / 30)  # 33.3 ms a frame
    assert times[-1] + 1 / 30 == pytest.approx(4.0)
    assert frames[0].shape == (int(header.Rows), int(header.Columns), 3)  # not resized
    assert not list(clip.parent.glob("*.partial"))


def test_echo_clip_frames_match_the_dicom_frames(converted_echo: tuple[Path, Path]) -> None:
    data, twin = converted_echo
    _, frames, _ = _decode(_clip(data))
    picks = [0, 37, 119]
    reference = rgb_frames(pydicom.dcmread(twin), picks)
    for index, expected in zip(picks, reference, strict=True):
        assert _mad(frames[index], expected) < 2.5, index
        # and not just any echo frame: a frame from elsewhere in the beat is further off
        assert _mad(frames[(index + 15) % 120], expected) > _mad(frames[index], expected)


def test_data_check_and_a_tiny_model_run_accept_the_release(
    converted_echo: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, _ = converted_echo
    assert main(["data", "check", "mimicechoqa", "--data", str(data), "--no-progress"]) == 0
    assert "no problems" in capsys.readouterr().out
    code = main(
        ["--model", "tiny-qwen2vl", "--tasks", "mimicechoqa", "--data", str(data), "--limit", "2",
         "--output-dir", str(tmp_path), "--run-id", "echo", "--no-progress"]
    )  # fmt: skip
    assert code == 0
    run = tmp_path / "tiny-qwen2vl" / "echo"
    task = json.loads((run / "results.json").read_text())["tasks"]["mimicechoqa"]
    assert task["n"] == 2 and task["failed"] == 0
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    # the release's fields reach the records: messages_id is the item, study the cluster
    assert sorted(r["item_id"] for r in records) == sorted(str(r["messages_id"]) for r in _release_rows(CLIP))
    assert {r["cluster"] for r in records} == {"s98097718"}
    assert sorted(r["categories"]["question_type"] for r in records) == ["multiple_choice", "yes_no"]


def test_existing_clips_are_left_alone(
    converted_echo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, twin = converted_echo
    source = twin.parents[len(Path(CLIP).parts) - 1]
    before = _clip(data).stat().st_mtime_ns
    assert (
        main(
            ["data", "prepare", "mimicechoqa", "--source", str(source), "--data", str(data), "--no-progress"]
        )
        == 0
    )
    assert "0 clips made from DICOMs, 0 taken from the release, 1 already there" in capsys.readouterr().out
    assert _clip(data).stat().st_mtime_ns == before


# --------------------------------------------------------------------------------------------------
# Where the release's rows and clips are found


def test_clips_the_download_ships_are_linked_not_converted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Third-party code reads the release's zip as MIMICEchoQA/0.1/files/...mp4 beside the json (the row's
    # path without its first folder): such a clip is used as shipped, no DICOM needed.
    data = _release(tmp_path, _release_rows(CLIP))
    shipped = data / "MIMICEchoQA" / Path(*Path(CLIP).parts[1:])
    shipped.parent.mkdir(parents=True)
    convert_dicom(_testfile("examples_ybr_color.dcm"), shipped)
    code = main(["data", "prepare", "mimicechoqa", "--data", str(data), "--no-progress"])
    assert code == 0
    assert "0 clips made from DICOMs, 1 taken from the release" in capsys.readouterr().out
    clip = _clip(data)
    assert clip.read_bytes() == shipped.read_bytes()
    assert os.path.samefile(clip, shipped)  # a hard link (one file system here), not a second copy
    assert not list(clip.parent.glob("*.partial"))


def test_the_older_local_layout_still_prepares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # DIR/mimicechoqa/test.jsonl with clips under DIR/media/mimicechoqa/
    source = tmp_path / "dicoms"
    (source / CLIP).parent.mkdir(parents=True)
    shutil.copyfile(_testfile("examples_ybr_color.dcm"), (source / CLIP).with_suffix(".dcm"))
    data = tmp_path / "data"
    (data / "mimicechoqa").mkdir(parents=True)
    rows = _echo_rows(CLIP, 2)
    (data / "mimicechoqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["data", "prepare", "mimicechoqa", "--source", str(source), "--data", str(data), "--no-progress"]
    assert main(argv) == 0
    assert "1 clips made from DICOMs" in capsys.readouterr().out
    assert (data / "media" / "mimicechoqa" / CLIP).is_file()


def test_release_rows_are_read_with_their_clip_and_bad_rows_fail_alone(tmp_path: Path) -> None:
    rows = _release_rows(CLIP)
    rows[1]["videos"] = [CLIP, CLIP.replace("0047", "0048")]  # two clips for one item
    data = tmp_path / "MIMICEchoQA"  # --data may also be the folder holding the json
    data.mkdir()
    (data / "MIMICEchoQA.json").write_text(json.dumps(rows), encoding="utf-8")
    loaded = list(load_rows(BENCHMARKS["mimicechoqa"], parse_data_source(str(data))))
    assert [r["video"] for r in loaded] == [CLIP, None]
    assert media_root("mimicechoqa", "video", parse_data_source(str(data))) == data
    # A `mimicechoqa/` folder without rows (what a case-insensitive file system shows for the release's
    # `MIMICEchoQA/`) does not hide the release: rows and clips still come from the json's folder.
    (tmp_path / "mimicechoqa").mkdir()
    parent = parse_data_source(str(tmp_path))
    assert len(load_rows(BENCHMARKS["mimicechoqa"], parent)) == 2
    assert media_root("mimicechoqa", "video", parent) == data
    assert loaded[0]["_obv_error"] is None
    assert "'videos' holds 2 items" in loaded[1]["_obv_error"]


def test_no_hub_dataset_and_no_clip_source_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(DataSourceError, match=r"PhysioNet as MIMIC-IV-ECHO-Ext-MIMICEchoQA 1\.0\.0"):
        load_rows(BENCHMARKS["mimicechoqa"], parse_data_source("hub"))
    data = tmp_path / "data"
    (data / "mimicechoqa").mkdir(parents=True)
    (data / "mimicechoqa" / "test.jsonl").write_text(json.dumps(_echo_rows(CLIP, 1)[0]) + "\n")
    assert main(["data", "prepare", "mimicechoqa", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "give --source DIR" in err and len(err.strip().splitlines()) == 1


# --------------------------------------------------------------------------------------------------
# Photometric interpretations and transfer syntaxes


def test_ybr_full_422_jpeg_baseline_cine(tmp_path: Path) -> None:
    source = _testfile("examples_ybr_color.dcm")  # pydicom's own: 30 frames, 320x240, SonoSite echo
    ds = pydicom.dcmread(source)
    assert ds.PhotometricInterpretation == "YBR_FULL_422" and ds.file_meta.TransferSyntaxUID.is_compressed
    result = convert_dicom(source, tmp_path / "ybr.mp4")
    assert (result.frames, result.rate, result.width, result.height) == (30, 30, 320, 240)
    stream, frames, _ = _decode(tmp_path / "ybr.mp4")
    assert len(frames) == 30 and stream.average_rate == 30
    reference = rgb_frames(ds)
    assert max(_mad(a, b) for a, b in zip(frames, reference, strict=True)) < 2.5
    # pydicom converted YCbCr to RGB: the raw YBR planes would be far off
    raw = next(pydicom.pixels.iter_pixels(ds, as_rgb=False))
    assert _mad(frames[0], raw) > 2 * _mad(frames[0], reference[0])


def test_ybr_full_uncompressed_matches_the_rgb_original(tmp_path: Path) -> None:
    # SC_ybr_full_uncompressed.dcm is SC_rgb.dcm stored as YBR_FULL: the clips must look the same.
    ybr = _with("SC_ybr_full_uncompressed.dcm", tmp_path, CineRate=10)
    rgb = _with("SC_rgb.dcm", tmp_path, CineRate=10)
    convert_dicom(ybr, tmp_path / "ybr.mp4")
    convert_dicom(rgb, tmp_path / "rgb.mp4")
    (_, [from_ybr], _), (_, [from_rgb], _) = _decode(tmp_path / "ybr.mp4"), _decode(tmp_path / "rgb.mp4")
    original = pydicom.dcmread(rgb).pixel_array
    assert _mad(from_rgb, original) < 3 and _mad(from_ybr, original) < 3


def test_palette_color_uses_the_lookup_table(tmp_path: Path) -> None:
    source = _with("examples_palette.dcm", tmp_path, RecommendedDisplayFrameRate=25)
    ds = pydicom.dcmread(source)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    result = convert_dicom(source, tmp_path / "palette.mp4")
    assert (result.rate, result.timing_source, result.frames) == (25, "RecommendedDisplayFrameRate", 1)
    _, [frame], _ = _decode(tmp_path / "palette.mp4")
    assert _mad(frame, _lut_rgb(ds)) < 3
    assert _mad(frame, np.repeat(ds.pixel_array[..., None], 3, axis=-1)) > 10  # indices are not colours


def test_16_bit_palette(tmp_path: Path) -> None:
    source = _with("gdcm-US-ALOKA-16.dcm", tmp_path, CineRate=20)
    ds = pydicom.dcmread(source)
    convert_dicom(source, tmp_path / "p16.mp4")
    _, [frame], _ = _decode(tmp_path / "p16.mp4")
    assert ds.BitsStored == 16 and ds.RedPaletteColorLookupTableDescriptor[2] == 16
    assert _mad(frame, _lut_rgb(ds)) < 3


def test_rgb_uncompressed_multiframe_with_a_frame_time_vector(tmp_path: Path) -> None:
    source = _with("SC_rgb_2frame.dcm", tmp_path, FrameTimeVector=["0", "40"])
    result = convert_dicom(source, tmp_path / "rgb.mp4")
    assert (result.frames, result.rate, result.timing_source) == (2, 25, "FrameTimeVector")
    _, frames, times = _decode(tmp_path / "rgb.mp4")
    reference = pydicom.dcmread(source).pixel_array
    assert times == pytest.approx([0.0, 0.04])
    assert all(_mad(a, b) < 3 for a, b in zip(frames, reference, strict=True))


def test_16_bit_rgb_is_scaled_to_8_bits(tmp_path: Path) -> None:
    source = _with("SC_rgb_16bit_2frame.dcm", tmp_path, CineRate=5)
    convert_dicom(source, tmp_path / "rgb16.mp4")
    _, frames, _ = _decode(tmp_path / "rgb16.mp4")
    reference = (pydicom.dcmread(source).pixel_array >> 8).astype(np.uint8)
    assert all(_mad(a, b) < 3 for a, b in zip(frames, reference, strict=True))


def test_monochrome_16_bit_cine_and_a_variable_frame_time_vector(tmp_path: Path) -> None:
    steps = ["0", "30", "40", "30", "40", "30", "40", "30", "40", "30"]  # ms, 10 frames
    source = _with("emri_small.dcm", tmp_path, FrameTimeVector=steps)
    result = convert_dicom(source, tmp_path / "mr.mp4")
    assert result.frames == 10 and result.timing_source == "FrameTimeVector (variable)"
    _, frames, times = _decode(tmp_path / "mr.mp4")
    assert times == pytest.approx(np.cumsum([float(s) for s in steps]) / 1000)
    pixels = pydicom.dcmread(source).pixel_array.astype(np.float64)
    grey = np.rint((pixels - pixels.min()) * 255 / (pixels.max() - pixels.min())).astype(np.uint8)
    expected = [np.repeat(g[..., None], 3, axis=-1) for g in grey]
    # a small, noisy 64x64 slice: H.264 at CRF 18 is off by about 4 levels, a neighbouring slice by more
    assert all(_mad(frame, e) < 6 for frame, e in zip(frames, expected, strict=True))
    assert all(_mad(frames[i], expected[i]) < _mad(frames[i], expected[i - 1]) for i in range(1, 10))
    assert np.allclose(frames[0][..., 0], frames[0][..., 1], atol=3)  # grey stays grey


# --------------------------------------------------------------------------------------------------
# Frame timing from the header


@pytest.mark.parametrize(
    ("printed", "rate"),
    [
        ("33.333", Fraction(30)),
        ("33.33", Fraction(30)),
        ("40", Fraction(25)),
        ("16.667", Fraction(60)),
        ("33.367", Fraction(30000, 1001)),
        ("41.708", Fraction(24000, 1001)),
        ("35.1", Fraction(10000, 351)),  # exact, and no rounder rate within 35.05-35.15 ms
    ],
)
def test_rate_from_frame_time(printed: str, rate: Fraction) -> None:
    assert rate_from_frame_time(printed) == rate
    half_step = Fraction(1, 2 * 10 ** len(printed.partition(".")[2]))
    assert abs(1000 / rate - Fraction(printed)) <= half_step  # consistent with what the header says


@pytest.mark.parametrize("printed", ["0", "-33.3", "fast"])
def test_bad_frame_times_are_refused(printed: str) -> None:
    with pytest.raises(DicomError):
        rate_from_frame_time(printed)


def test_frame_time_takes_precedence_over_the_other_timing_attributes() -> None:
    ds = pydicom.Dataset()
    ds.CineRate = 12
    ds.RecommendedDisplayFrameRate = 15
    assert frame_timing(ds, 10).source == "CineRate"
    ds.FrameTimeVector = ["0", "50", "50"]
    assert (frame_timing(ds, 3).rate, frame_timing(ds, 3).source) == (20, "FrameTimeVector")
    ds.FrameTime = "33.333"
    assert (frame_timing(ds, 3).rate, frame_timing(ds, 3).source) == (30, "FrameTime")
    with pytest.raises(DicomError, match="no frame timing"):
        frame_timing(pydicom.Dataset(), 2)


# --------------------------------------------------------------------------------------------------
# Finding DICOMs, failures that are listed, atomic writes


def test_dicom_twin_is_found_from_any_level_of_the_physionet_layout(tmp_path: Path) -> None:
    twin = tmp_path / "physionet.org" / "files" / Path(CLIP).with_suffix(".dcm")
    twin.parent.mkdir(parents=True)
    twin.write_bytes(b"x")
    for level in (tmp_path / "physionet.org" / "files", twin.parents[3], twin.parents[4], twin.parent):
        assert dicom_twin(CLIP, level) == twin, level
    assert dicom_twin(CLIP.replace("0047", "0048"), tmp_path / "physionet.org" / "files") is None


def test_unreadable_and_missing_dicoms_are_listed_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _testfile("examples_ybr_color.dcm")
    source = tmp_path / "src"
    names = {
        "good": CLIP.replace("0047", "0001"),
        "truncated": CLIP.replace("0047", "0002"),
        "garbage": CLIP.replace("0047", "0003"),
        "no_timing": CLIP.replace("0047", "0004"),
        "missing": CLIP.replace("0047", "0005"),
    }
    for key in ("good", "truncated", "garbage", "no_timing"):
        (source / names[key]).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(good, (source / names["good"]).with_suffix(".dcm"))
    blob = good.read_bytes()
    (source / names["truncated"]).with_suffix(".dcm").write_bytes(blob[: len(blob) // 2])  # frames cut off
    (source / names["garbage"]).with_suffix(".dcm").write_bytes(b"\x00DICM? no." * 300)
    shutil.copyfile(_testfile("examples_palette.dcm"), (source / names["no_timing"]).with_suffix(".dcm"))
    rows = [{"video": name} for name in names.values()]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "clips"
    argv = ["data", "prepare", "mimicechoqa", "--source", str(source), "--rows", str(tmp_path / "rows.jsonl")]
    code = main([*argv, "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 1
    assert "1 clips made from DICOMs, 0 taken from the release, 0 already there, 1 missing, 3 failed" in text
    assert (out / names["good"]).is_file()
    for key in ("truncated", "garbage", "no_timing", "missing"):
        assert not (out / names[key]).exists(), key
    assert f"missing {names['missing']} (no DICOM for it under {source})" in text
    failed = {
        line.split(": ", 1)[0].removeprefix("  failed "): line
        for line in text.splitlines()
        if "failed " in line
    }
    assert "no frame timing" in failed[names["no_timing"]]
    assert "not a DICOM" in failed[names["garbage"]] or "not a readable DICOM" in failed[names["garbage"]]
    assert names["truncated"] in failed
    assert not list(out.rglob("*.partial"))
    # --allow-missing accepts a partial set, not failures
    assert main([*argv, "--out", str(out), "--no-progress", "--allow-missing"]) == 1
    rows_ok = [{"video": names["good"]}, {"video": names["missing"]}]
    (tmp_path / "ok.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows_ok))
    partial = [
        "data",
        "prepare",
        "mimicechoqa",
        "--source",
        str(source),
        "--rows",
        str(tmp_path / "ok.jsonl"),
    ]
    assert main([*partial, "--out", str(out), "--no-progress"]) == 1
    assert main([*partial, "--out", str(out), "--no-progress", "--allow-missing"]) == 0


def test_a_failure_while_encoding_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = dicom._yuv_frame

    def failing(rgb: np.ndarray, bitexact: bool) -> av.VideoFrame:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(rgb, bitexact)

    monkeypatch.setattr(dicom, "_yuv_frame", failing)
    (tmp_path / "src").mkdir()
    shutil.copyfile(_testfile("examples_ybr_color.dcm"), tmp_path / "src" / "clip.dcm")
    report = prepare_echo([{"video": "clip.mp4"}], tmp_path / "src", tmp_path / "out", progress=False)
    assert calls["n"] == 5  # failed after four frames were encoded
    assert "disk full" in report.failed["clip.mp4"] and not report.made
    assert list((tmp_path / "out").iterdir()) == []  # neither clip.mp4 nor clip.mp4.partial


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["data", "prepare", "mimicechoqa", "--source", str(tmp_path / "nope"), "--out", str(tmp_path)])
        == 2
    )
    assert "not a folder" in capsys.readouterr().err
