"""`data check` compares each clip with its row (duration, fps, frame count, resolution) and warns
on a SurgeryVideoQA file with one question per clip. Mismatches are warnings: the check still
passes, every row stays counted."""

from __future__ import annotations

import itertools
import json
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from media_factories import write_rotated_clip

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.cli import main
from obv_eval.data.check import check_benchmark
from obv_eval.data.clipcheck import ONE_QUESTION_PER_CLIP, clip_mismatches, one_question_per_clip, probe_clip
from obv_eval.data.prepare import ClipFormat, cut_clip
from obv_eval.data.synth import write_video
from obv_eval.sources import DataSource, parse_data_source

_QUESTION_IDS = itertools.count()


def _row(
    clip: str, start: float, end: float, fps: float, width: int, height: int, count: int
) -> dict[str, Any]:
    return {
        "id": f"{clip}-q{next(_QUESTION_IDS)}",  # one id per question, as the real rows' uuids
        "video_id": clip.split("_")[0],
        "video": clip,
        "timestamp": [start, end],
        "question": "What is shown?",
        "answer": "A gallbladder.",
        "video_metadata": {
            "original": {"duration": end - start, "fps": fps, "frame_count": count,
                         "resolution": {"width": width, "height": height}}
        },
    }  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local copy whose media folder holds one right clip and three wrong ones, cut from one source."""
    root = tmp_path_factory.mktemp("local")
    media = root / "media" / "surgeryvqa"
    media.mkdir(parents=True)
    source = write_video(root / "src.mp4", num_frames=250, fps=25, width=96, height=56, seed=4)  # 10 s
    cut_clip(source, 2, 8, media / "good.mp4", ClipFormat(Fraction(1), 84, 48))  # 6 frames, 1 fps, 84x48
    cut_clip(source, 2, 8, media / "source_rate.mp4", None)  # 25 fps, 96x56: a cut kept at the download's
    cut_clip(source, 2, 5, media / "short.mp4", ClipFormat(Fraction(1), 84, 48))  # 3 s
    return root


def test_a_clip_that_matches_its_row_has_no_mismatch(clips: Path) -> None:
    facts = probe_clip(clips / "media" / "surgeryvqa" / "good.mp4")
    assert (facts.frames, facts.width, facts.height, facts.first_time_s, facts.monotonic) == (
        6,
        84,
        48,
        0,
        True,
    )
    assert facts.duration_s == pytest.approx(6) and facts.fps == pytest.approx(1)
    assert (
        clip_mismatches(clips / "media" / "surgeryvqa" / "good.mp4", _row("good.mp4", 2, 8, 1.0, 84, 48, 6))
        == []
    )
    # The published clips sometimes hold the frame at `end` too (frame_count = span + 1): still a match.
    assert (
        clip_mismatches(clips / "media" / "surgeryvqa" / "good.mp4", _row("good.mp4", 2, 7, 1.0, 84, 48, 6))
        == []
    )


def test_each_disagreement_is_named(clips: Path) -> None:
    media = clips / "media" / "surgeryvqa"
    kinds = {
        kind for kind, _ in clip_mismatches(media / "source_rate.mp4", _row("x.mp4", 2, 8, 1.0, 84, 48, 6))
    }
    assert kinds == {"clip fps", "clip frame count", "clip resolution"}
    kinds = {kind for kind, _ in clip_mismatches(media / "short.mp4", _row("x.mp4", 2, 8, 1.0, 84, 48, 6))}
    assert kinds == {"clip duration", "clip frame count"}
    wrong_size = clip_mismatches(media / "good.mp4", _row("x.mp4", 2, 8, 1.0, 840, 476, 6))
    assert wrong_size == [("clip resolution", "good.mp4: 84x48, the row says 840x476")]


@pytest.mark.parametrize(("degrees", "sideways"), [(-90, True), (90, True), (180, False)])
def test_a_sideways_clip_matches_its_row_at_either_size(tmp_path: Path, degrees: int, sideways: bool) -> None:
    """A clip stored 112x56 with a display rotation of +-90 plays as 56x112; a row may list either size.
    Without a quarter turn, the swapped size is a mismatch."""
    clip = write_rotated_clip(tmp_path / "turned.mp4", degrees, num_frames=8, width=112, height=56)
    stored = clip_mismatches(clip, _row("x.mp4", 0, 2, 4.0, 112, 56, 8))
    shown = {kind for kind, _ in clip_mismatches(clip, _row("x.mp4", 0, 2, 4.0, 56, 112, 8))}
    assert stored == []
    assert shown == (set() if sideways else {"clip resolution"})


def test_data_check_warns_per_row_and_keeps_every_row(
    clips: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        _row("good.mp4", 2, 8, 1.0, 84, 48, 6),
        _row("good.mp4", 2, 8, 1.0, 84, 48, 6),  # a second question on the same clip
        _row("source_rate.mp4", 2, 8, 1.0, 84, 48, 6),
        _row("short.mp4", 2, 8, 1.0, 84, 48, 6),
    ]
    folder = clips / "surgeryvqa"
    folder.mkdir(exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = check_benchmark(BENCHMARKS["surgeryvqa"], parse_data_source(str(clips)), progress=False)
    assert report.ok and report.rows == 4 and report.media_checked == 4
    assert report.warning_counts() == {
        "clip fps": 1, "clip frame count": 2, "clip resolution": 1, "clip duration": 1,
    }  # fmt: skip
    assert {row for row, _, _ in report.warnings} == {2, 3}
    assert main(["data", "check", "surgeryvqa", "--data", str(clips), "--no-progress"]) == 0  # warnings only
    out = capsys.readouterr().out
    assert "4 rows, 4 media files checked; no problems" in out
    assert "row 3: warning: clip duration: short.mp4: 3.000 s, the row's timestamp spans 6 s" in out
    assert ONE_QUESTION_PER_CLIP not in out


def test_one_question_per_clip_is_flagged() -> None:
    assert one_question_per_clip(["a.mp4", "b.mp4", "c.mp4"]) is not None
    assert one_question_per_clip(["a.mp4", "a.mp4", "b.mp4"]) is None
    assert one_question_per_clip(["a.mp4"]) is None


def test_the_real_preprocessed_file_is_flagged(tmp_path: Path, realdata: Path) -> None:
    # The study's preprocessed file: one question per clip (realdata honours OBV_EVAL_REALDATA).
    real_rows = realdata / "surgeryvqa" / "surgeryvideoqa_processed.jsonl"
    (tmp_path / "surgeryvqa").mkdir()
    shutil.copy(real_rows, tmp_path / "surgeryvqa" / "test.jsonl")
    expected = len(real_rows.read_text().splitlines())
    report = check_benchmark(BENCHMARKS["surgeryvqa"], DataSource("local", tmp_path), progress=False)
    assert report.rows == expected
    flagged = [detail for row, kind, detail in report.warnings if kind == ONE_QUESTION_PER_CLIP]
    assert len(flagged) == 1 and f"each of the {expected} clips" in flagged[0]
    assert report.counts() == {"missing media": expected}  # the clips are not here: every row still counted


def test_prepared_clips_pass_the_check_and_source_format_ones_warn(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`data prepare` then `data check`, through the CLI: the default clips match their rows; clips
    kept at the source's format are flagged (fps, frame count, resolution) but do not fail."""
    sources = tmp_path / "youtube"
    write_video(sources / "vidA.mp4", num_frames=300, fps=30, width=96, height=56, seed=5)  # 10 s
    rows = [_row("vidA_1_7.mp4", 1, 7, 1.0, 84, 48, 6), _row("vidA_1_7.mp4", 1, 7, 1.0, 84, 48, 6)]
    rows.append(_row("vidA_3_9.mp4", 3, 9, 1.0, 84, 48, 7))  # frame_count = span + 1: the frame at `end` too
    for name, extra in (("default", []), ("source", ["--keep-source-format"])):
        local = tmp_path / name
        (local / "surgeryvqa").mkdir(parents=True)
        (local / "surgeryvqa" / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        argv = ["data", "prepare", "surgeryvqa", "--source-videos", str(sources), "--data", str(local),
                "--no-progress", *extra]  # fmt: skip
        assert main(argv) == 0
        assert "2 clips made" in capsys.readouterr().out
        assert main(["data", "check", "surgeryvqa", "--data", str(local), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "3 rows, 3 media files checked; no problems" in out
        if name == "default":
            assert "warning" not in out
            assert probe_clip(local / "media" / "surgeryvqa" / "vidA_3_9.mp4").frames == 7
        else:
            assert "clip fps: 3, clip frame count: 3, clip resolution: 3" in out
