"""`obv-eval data prepare` cuts real clips by timestamp; `data check` finds what a run would fail on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import pytest

from obv_eval.cli import main
from obv_eval.data.prepare import prepare_clips
from obv_eval.data.synth import read_marker, write_video
from obv_eval.sources import SAMPLES_DIR


def _frames(path: Path) -> list[int]:
    with av.open(str(path)) as container:
        return [read_marker(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]


def test_prepare_cuts_each_clip_once_and_lists_missing_sources(tmp_path: Path) -> None:
    sources = tmp_path / "youtube"
    write_video(sources / "vidA.mp4", num_frames=40, fps=4, width=64, height=48, seed=1)  # 10 s
    rows = [
        {"video_id": "vidA", "timestamp": [2, 4], "video": "vidA_2_4.mp4"},
        {"video_id": "vidA", "timestamp": [2, 4], "video": "vidA_2_4.mp4"},  # a second question, same clip
        {"video_id": "vidA", "timestamp": [5, 7.5], "video": "vidA_5_7.mp4"},
        {"video_id": "gone", "timestamp": [0, 3], "video": "gone_0_3.mp4"},
    ]
    clips = tmp_path / "clips"
    report = prepare_clips(rows, sources, clips, progress=False)
    assert sorted(report.made) == ["vidA_2_4.mp4", "vidA_5_7.mp4"]
    assert report.missing_sources == {"gone": ["gone_0_3.mp4"]}
    # 4 fps: [2, 4) s holds source frames 8..15, [5, 7.5) holds 20..29 (markers wrap every 30 frames).
    assert _frames(clips / "vidA_2_4.mp4") == list(range(8, 16))
    assert _frames(clips / "vidA_5_7.mp4") == list(range(20, 30))
    again = prepare_clips(rows, sources, clips, progress=False)
    assert again.made == [] and sorted(again.existing) == ["vidA_2_4.mp4", "vidA_5_7.mp4"]


def test_prepare_cli_reports_missing_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"video_id": "nope", "timestamp": [0, 1], "video": "nope_0_1.mp4"}) + "\n")
    (tmp_path / "src").mkdir()
    code = main(
        ["data", "prepare", "openbiomedvid", "--source-videos", str(tmp_path / "src"), "--rows", str(rows),
         "--out", str(tmp_path / "out"), "--no-progress"]
    )  # fmt: skip
    assert code == 1  # missing sources fail unless --allow-missing (tests/test_prepare_clips.py)
    assert "missing source nope: 1 clips" in capsys.readouterr().out


def test_prepare_routes_by_the_dataset_not_by_a_path_that_names_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"video_id": "nope", "timestamp": [0, 1], "video": "nope_0_1.mp4"}) + "\n")
    sources = tmp_path / "mimicechoqa"  # a folder named after the DICOM dataset
    sources.mkdir()
    code = main(
        ["data", "prepare", "--rows", str(rows), "openbiomedvid", "--source-videos", str(sources),
         "--out", str(tmp_path / "mimicechoqa"), "--no-progress"]
    )  # fmt: skip
    assert code == 1  # the timestamp cutter ran and found the source missing
    assert "missing source nope: 1 clips" in capsys.readouterr().out
    # The DICOM converter still gets its own dataset, whichever side of the options it stands.
    for argv in (
        ["mimicechoqa", "--source", str(tmp_path / "absent")],
        ["--source", str(tmp_path / "absent"), "mimicechoqa"],
    ):
        assert main(["data", "prepare", *argv]) == 2
        assert "not a folder" in capsys.readouterr().err  # the DICOM converter's own check


def test_data_check_passes_the_bundled_samples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "surgeryvqa", "--data", "samples", "--no-progress"]) == 0
    assert "no problems" in capsys.readouterr().out


def test_data_check_lists_problems_with_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    media = tmp_path / "media" / "surgeryvqa"
    shutil.copytree(SAMPLES_DIR / "media" / "surgeryvqa", media)
    (media / "broken.mp4").write_bytes(b"not a video at all" * 20)
    good = json.loads((SAMPLES_DIR / "surgeryvqa" / "test.jsonl").read_text().splitlines()[0])
    rows = [good, {**good, "video": "absent.mp4"}, {**good, "video": "broken.mp4"}, {**good, "answer": None}]
    (tmp_path / "surgeryvqa").mkdir()
    (tmp_path / "surgeryvqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "check", "surgeryvqa", "--data", str(tmp_path), "--no-progress"]) == 1
    out = capsys.readouterr().out
    assert "4 rows" in out
    assert "malformed row: 1" in out and "missing media: 1" in out and "unreadable media: 1" in out
    assert "row 1: missing media" in out and "row 3: malformed row: row is missing answer" in out
