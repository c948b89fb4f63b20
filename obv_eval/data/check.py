"""`obv-eval data check`: what in a benchmark's rows and media would fail a run, before running it.

Rows are read exactly as a run reads them (obv_eval.tasking.load_rows, so the same rows are marked
malformed, oversized rows included), every row goes through its task's own scoring with an empty
reply (so a gold letter outside the options is listed with the run's reason), ids are checked for
duplicates, and every media file is loaded with THE frame sampler and the image loader (images fully
decoded, truncation refused), so what passes here decodes in a run. Media that a run shows the model
otherwise than as stored (16-bit or float images mapped over their own range, EXIF-rotated images,
videos with a display rotation) are warned about, once per file.
"""

from __future__ import annotations

import importlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from obv_eval.benchmarks import Benchmark
from obv_eval.data.clipcheck import ONE_QUESTION_PER_CLIP, clip_mismatches, one_question_per_clip
from obv_eval.media import (
    ImageAdjustments,
    ImageSettings,
    MediaError,
    Video,
    VideoSettings,
    load_image_with_adjustments,
    load_video,
    resolve_media_path,
)
from obv_eval.sources import DataSource, media_root
from obv_eval.tasking import ROW_ERROR_FIELD, load_rows, text_field


@dataclass
class CheckReport:
    benchmark: str
    rows: int = 0
    media_checked: int = 0
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # (row, kind, detail)
    # Clips that disagree with their rows, the one-question-per-clip file (row -1: the whole file).
    # Warnings do not fail the check: in a run such items still run and count.
    warnings: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def counts(self) -> Counter[str]:
        return Counter(kind for _, kind, _ in self.problems)

    def warning_counts(self) -> Counter[str]:
        return Counter(kind for _, kind, _ in self.warnings)


def _problem_kind(error: MediaError) -> str:
    text = str(error)
    if "not found" in text or "no file name" in text:
        return "missing media"
    if "escapes" in text:
        return "path escapes media root"
    return "unreadable media"


HIGH_BIT_DEPTH = "high-bit-depth image"
EXIF_ROTATED = "EXIF-rotated image"
ROTATED_VIDEO = "rotated video"
# EXIF orientation tag values, as viewers apply them.
_ORIENTATIONS = {
    2: "mirrored left-right",
    3: "turned 180 degrees",
    4: "mirrored top-bottom",
    5: "mirrored along the main diagonal",
    6: "turned 90 degrees clockwise",
    7: "mirrored along the anti-diagonal",
    8: "turned 90 degrees counterclockwise",
}


def _image_warnings(path: Path, adjusted: ImageAdjustments) -> list[tuple[str, str]]:
    """How a run shows this image otherwise than as stored (see obv_eval.media.load_image)."""
    warnings = []
    if adjusted.value_range is not None:
        lo, hi = adjusted.value_range
        warnings.append(
            (
                HIGH_BIT_DEPTH,
                f"{path}: mode {adjusted.mode}, values {lo:g}..{hi:g} mapped to 0..255 over its own "
                "range (Qwen2-VL's RGB conversion would clip them at 255); convert it to 8 bits yourself "
                "if another window is wanted",
            )
        )
    if adjusted.orientation != 1:
        width, height = adjusted.stored_size
        warnings.append(
            (
                EXIF_ROTATED,
                f"{path}: EXIF orientation {adjusted.orientation} "
                f"({_ORIENTATIONS.get(adjusted.orientation, 'unknown')}) applied to the stored "
                f"{width}x{height} pixels, so the model sees it as viewers show it",
            )
        )
    return warnings


def _video_warnings(path: Path, video: Video) -> list[tuple[str, str]]:
    if video.rotation == 0:
        return []
    turns = {90: "90 degrees counterclockwise", 180: "180 degrees", 270: "90 degrees clockwise"}
    sense = turns[video.rotation]
    return [
        (
            ROTATED_VIDEO,
            f"{path}: its display matrix turns the stored frames {sense}; they are turned so, and "
            "the model sees them as players show them",
        )
    ]


OVERSIZED_MARK = "-character limit for one item"
# Row fields that name an item, in the benchmarks' schemas (the first one a benchmark's rows have).
ID_FIELDS = ("id", "qid", "question_id", "pubid", "realidx", "messages_id")


def _duplicate_ids(rows: Any) -> list[tuple[int, str, str]]:
    """Rows sharing an id: a run would score (and a comparison pair) the same item twice."""
    name = next((f for f in ID_FIELDS if f in rows.column_names), None)
    if name is None:
        return []
    first: dict[str, int] = {}
    problems = []
    for index, value in enumerate(rows[name]):
        if value is None or value == "":
            continue
        key = str(value)
        if key in first:
            problems.append((index, "duplicate id", f"{name} {key!r} is also row {first[key]}'s"))
        else:
            first[key] = index
    return problems


def _task_scorer(benchmark: Benchmark) -> Callable[[dict[str, Any], list[str]], Any] | None:
    """The task's own process_results, so an item the run would fail is listed with the run's reason."""
    try:
        module = importlib.import_module(f"obv_eval.tasks.{benchmark.name}.utils")
    except ImportError:
        return None
    scorer = getattr(module, "process_results", None)
    return scorer if callable(scorer) else None


def _item_problem(scorer: Any, row: dict[str, Any]) -> tuple[str, str] | None:
    """What the task's scoring says of the row whatever the model answers (a gold letter outside
    the options, a row the scorer cannot read), or None."""
    if scorer is None:
        return None
    try:
        scored = scorer(row, [""])
    except Exception as error:  # a row that would stop the scorer: the run fails it alone
        return "invalid item", f"the task cannot score this row ({type(error).__name__}: {error})"
    record = next((v for v in scored.values() if isinstance(v, dict) and "status" in v), None)
    if record is None or record["status"] != "failed" or not record.get("reason"):
        return None
    reason = str(record["reason"])
    return ("gold answer outside the options" if "gold answer" in reason else "invalid item"), reason


def check_benchmark(benchmark: Benchmark, source: DataSource, progress: bool = True) -> CheckReport:
    rows = load_rows(benchmark, source)
    report = CheckReport(benchmark.name, rows=len(rows))
    kind: Literal["video", "image"] = "video" if benchmark.modality == "video" else "image"
    root = media_root(benchmark.name, kind, source)
    if benchmark.name == "surgeryvqa" and benchmark.media_field in rows.column_names:
        warning = one_question_per_clip(list(rows[benchmark.media_field]))
        if warning is not None:
            report.warnings.append((-1, ONE_QUESTION_PER_CLIP, warning))
    scorer = _task_scorer(benchmark)
    report.problems.extend(_duplicate_ids(rows))
    warned: set[Path] = set()  # files already warned about: one line per file, however many rows use it
    for index, row in enumerate(tqdm(rows, desc=f"checking {benchmark.name}", disable=not progress)):
        if row.get(ROW_ERROR_FIELD):
            reason = str(row[ROW_ERROR_FIELD])
            oversized = OVERSIZED_MARK in reason
            report.problems.append((index, "oversized item" if oversized else "malformed row", reason))
            continue
        item_problem = _item_problem(scorer, row)
        if item_problem is not None:
            report.problems.append((index, *item_problem))
        if benchmark.media_field is None:
            continue
        value = row.get(benchmark.media_field)
        if value is not None and not isinstance(value, str):
            continue  # an image decoded by `datasets` from the hub: nothing on disk to check
        report.media_checked += 1
        try:
            media = resolve_media_path(text_field(row, benchmark.media_field), root)
            if kind == "video":
                video = load_video(media, VideoSettings())
                report.warnings.extend((index, k, detail) for k, detail in clip_mismatches(media, row))
                shown = _video_warnings(media, video)
            else:
                shown = _image_warnings(media, load_image_with_adjustments(media, ImageSettings())[1])
            if media not in warned:
                warned.add(media)
                report.warnings.extend((index, k, detail) for k, detail in shown)
        except MediaError as error:
            report.problems.append((index, _problem_kind(error), str(error)))
    report.problems.sort(key=lambda problem: problem[0])
    return report
