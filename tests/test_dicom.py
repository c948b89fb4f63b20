"""`obv-eval data prepare mimicechoqa`: DICOM cines to mp4 on real DICOM files.

The files are pydicom's own test files (shipped in the pydicom wheel) and those of `pydicom-data`
(the `dev` extra), among them a real echocardiogram cine: color3d_jpeg_baseline.dcm, 120 frames of
640x480 YBR_FULL_422 JPEG baseline at FrameTime 33.333 ms. Where a file lacks frame timing (the
palette, RGB and MR files are stills or non-cine multi-frames) a copy gets a timing attribute here;
the pixel data stay the real ones.
"""

from __future__ import annotations

import json
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
from obv_eval.sources import SAMPLES_DIR

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


# --------------------------------------------------------------------------------------------------
# The acceptance path: the real echo cine through the CLI, then data check and a tiny-model run.


@pytest.fixture(scope="module")
def converted_echo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(data folder, source DICOM) after `obv-eval data prepare mimicechoqa` on the echo cine."""
    echo = _testfile(ECHO_CINE)
    root = tmp_path_factory.mktemp("echo")
    source = root / "physionet.org" / "files"
    twin = source / Path(CLIP).with_suffix(".dcm")
    twin.parent.mkdir(parents=True)
    shutil.copyfile(echo, twin)
    data = root / "data"
    (data / "mimicechoqa").mkdir(parents=True)
    rows = _echo_rows(CLIP, 2)
    (data / "mimicechoqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(
        ["data", "prepare", "mimicechoqa", "--source", str(source), "--data", str(data), "--no-progress"]
    )
    assert code == 0
    return data, twin


def test_echo_cine_becomes_120_frames_at_30_fps(converted_echo: tuple[Path, Path]) -> None:
    data, twin = converted_echo
    clip = data / "media" / "mimicechoqa" / CLIP
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
    _, frames, _ = _decode(data / "media" / "mimicechoqa" / CLIP)
    picks = [0, 37, 119]
    reference = rgb_frames(pydicom.dcmread(twin), picks)
    for index, expected in zip(picks, reference, strict=True):
        assert _mad(frames[index], expected) < 2.5, index
        # and not just any echo frame: a frame from elsewhere in the beat is further off
        assert _mad(frames[(index + 15) % 120], expected) > _mad(frames[index], expected)


def test_data_check_and_a_tiny_model_run_accept_the_clip(
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
    task = json.loads((tmp_path / "tiny-qwen2vl" / "echo" / "results.json").read_text())["tasks"][
        "mimicechoqa"
    ]
    assert task["n"] == 2 and task["failed"] == 0


def test_existing_clips_are_left_alone(
    converted_echo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    data, twin = converted_echo
    source = twin.parents[len(Path(CLIP).parts) - 1]
    before = (data / "media" / "mimicechoqa" / CLIP).stat().st_mtime_ns
    assert (
        main(
            ["data", "prepare", "mimicechoqa", "--source", str(source), "--data", str(data), "--no-progress"]
        )
        == 0
    )
    assert "0 clips made, 1 already there" in capsys.readouterr().out
    assert (data / "media" / "mimicechoqa" / CLIP).stat().st_mtime_ns == before


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
    assert "1 clips made, 0 already there, 1 without a DICOM under the source folder, 3 failed" in text
    assert (out / names["good"]).is_file()
    for key in ("truncated", "garbage", "no_timing", "missing"):
        assert not (out / names[key]).exists(), key
    assert f"missing DICOM for {names['missing']}" in text
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
