"""The contamination guard finds training clips cut from a benchmark's source and passes a clean split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from obv_eval.data.overlap import check_overlap, clip_ref, find_overlaps, main
from obv_eval.sources import SAMPLES_DIR


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


TRAIN = _rows(SAMPLES_DIR / "openbiomedvid" / "train.jsonl")
SURGERY = _rows(SAMPLES_DIR / "surgeryvqa" / "test.jsonl")
ECHO = _rows(SAMPLES_DIR / "mimicechoqa" / "test.jsonl")


def _clip(clip_id: str, video_id: str, start: float, end: float) -> dict[str, Any]:
    return {
        "id": clip_id,
        "video_id": video_id,
        "video": f"{video_id}_{start:g}_{end:g}.mp4",
        "timestamp": [start, end],
    }


def test_the_bundled_split_is_clean() -> None:
    assert find_overlaps(TRAIN, {"surgeryvqa": SURGERY, "mimicechoqa": ECHO}) == []


def test_a_planted_clip_inside_a_benchmark_range_is_found() -> None:
    item = SURGERY[0]  # Qm7_vB2xKpL [112, 115]
    planted = _clip("planted", item["video_id"], 114.0, 120.0)
    overlaps = find_overlaps([*TRAIN, planted], {"surgeryvqa": SURGERY}, level="clip")
    # Every question on that clip is an overlap; nothing else is.
    same_clip = [row["id"] for row in SURGERY if row["video"] == item["video"]]
    assert sorted(o.benchmark_id for o in overlaps) == sorted(same_clip)
    assert {(o.kind, o.train_id, o.key, o.train_range, o.benchmark_range) for o in overlaps} == {
        ("clip", "planted", "Qm7_vB2xKpL", (114.0, 120.0), (112.0, 115.0))
    }
    # At the default level the other clip cut from the same video is reported too, as a video overlap.
    video_level = find_overlaps([*TRAIN, planted], {"surgeryvqa": SURGERY})
    other_clip = {row["id"] for row in SURGERY if row["video_id"] == item["video_id"]} - set(same_clip)
    assert {o.benchmark_id for o in video_level if o.kind == "video"} == other_clip != set()


def test_another_part_of_the_same_video_is_a_video_level_overlap_only() -> None:
    disjoint = _clip("later", "Qm7_vB2xKpL", 500.0, 510.0)
    touching = _clip("touching", "Qm7_vB2xKpL", 115.0, 118.0)  # ends meet, no shared second
    video_level = find_overlaps([disjoint, touching], {"surgeryvqa": SURGERY})
    assert {o.kind for o in video_level} == {"video"} and {o.train_id for o in video_level} == {
        "later",
        "touching",
    }
    assert find_overlaps([disjoint, touching], {"surgeryvqa": SURGERY}, level="clip") == []


def test_a_clip_with_an_unknown_range_cannot_be_ruled_out() -> None:
    row = {"id": "x", "video_url": "https://www.youtube.com/watch?v=Zc81dJqYw3e", "video": "lecture.mp4"}
    assert clip_ref(row).video_id == "Zc81dJqYw3e" and clip_ref(row).time_range is None
    assert {o.kind for o in find_overlaps([row], {"surgeryvqa": SURGERY}, level="clip")} == {"clip"}


def test_ids_and_ranges_come_from_the_file_name_when_fields_are_missing() -> None:
    ref = clip_ref({"video": "clips/-t4RkW9sHn0_35_38.mp4"})
    assert (ref.video_id, ref.time_range) == ("-t4RkW9sHn0", (35.0, 38.0))
    overlaps = find_overlaps([{"id": "t", "video": "-t4RkW9sHn0_36_37.mp4"}], {"surgeryvqa": SURGERY})
    assert overlaps and {o.kind for o in overlaps} == {"clip"}


def test_an_echo_study_shared_with_mimicechoqa_is_found() -> None:
    path = ECHO[0]["video"]  # .../s93817254/93817254_0012.mp4
    other_view = {"id": "echo-train", "video": path.replace("_0012.mp4", "_0031.mp4")}
    overlaps = find_overlaps([other_view], {"mimicechoqa": ECHO}, level="clip")
    assert overlaps and {(o.kind, o.key) for o in overlaps} == {("study", "study s93817254")}
    same_file = find_overlaps([{"id": "f", "video": path}], {"mimicechoqa": ECHO[:1]})
    assert [(o.kind, o.train_id) for o in same_file] == [("study", "f")]  # one record per pair, most severe


def test_check_overlap_reads_benchmarks_from_a_source_and_lists_unreadable_ones(tmp_path: Path) -> None:
    report = check_overlap(TRAIN, "samples")
    assert report.clean and report.benchmarks_checked == ["surgeryvqa", "mimicechoqa"]
    (tmp_path / "surgeryvqa").mkdir()
    (tmp_path / "surgeryvqa" / "test.jsonl").write_text(json.dumps(SURGERY[0]) + "\n")
    partial = check_overlap([_clip("p", SURGERY[0]["video_id"], 100, 113)], str(tmp_path))
    assert not partial.clean and list(partial.unchecked) == ["mimicechoqa"]
    assert [o.kind for o in partial.overlaps] == ["clip"]


@pytest.mark.parametrize(("planted", "code"), [(False, 0), (True, 1)])
def test_main_exit_code_and_json_report(
    tmp_path: Path, planted: bool, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [*TRAIN, _clip("planted", "Zc81dJqYw3e", 300, 309)] if planted else TRAIN
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = tmp_path / "overlap.json"
    assert main(["--train", str(train), "--data", "samples", "--json", str(report)]) == code
    written = json.loads(report.read_text())
    assert len(written["overlaps"]) == (2 if planted else 0)  # two questions on that clip
    assert ("0 overlap(s)" in capsys.readouterr().out) is not planted
