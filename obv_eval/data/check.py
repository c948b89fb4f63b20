"""`obv-eval data check`: what in a benchmark's rows and media would fail a run, before running it.

Rows are read exactly as a run reads them (obv_eval.tasking.load_rows, so the same rows are marked
malformed) and every media file is loaded with THE frame sampler, so what passes here decodes
in a run.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from tqdm import tqdm

from obv_eval.benchmarks import Benchmark
from obv_eval.data.clipcheck import ONE_QUESTION_PER_CLIP, clip_mismatches, one_question_per_clip
from obv_eval.media import (
    ImageSettings,
    MediaError,
    VideoSettings,
    load_image,
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


def check_benchmark(benchmark: Benchmark, source: DataSource, progress: bool = True) -> CheckReport:
    rows = load_rows(benchmark, source)
    report = CheckReport(benchmark.name, rows=len(rows))
    kind: Literal["video", "image"] = "video" if benchmark.modality == "video" else "image"
    root = media_root(benchmark.name, kind, source)
    if benchmark.name == "surgeryvqa" and benchmark.media_field in rows.column_names:
        warning = one_question_per_clip(list(rows[benchmark.media_field]))
        if warning is not None:
            report.warnings.append((-1, ONE_QUESTION_PER_CLIP, warning))
    for index, row in enumerate(tqdm(rows, desc=f"checking {benchmark.name}", disable=not progress)):
        if row.get(ROW_ERROR_FIELD):
            report.problems.append((index, "malformed row", str(row[ROW_ERROR_FIELD])))
            continue
        if benchmark.media_field is None:
            continue
        value = row.get(benchmark.media_field)
        if value is not None and not isinstance(value, str):
            continue  # an image decoded by `datasets` from the hub: nothing on disk to check
        report.media_checked += 1
        try:
            if kind == "video":
                load_video(text_field(row, benchmark.media_field), VideoSettings(), root=root)
                clip = resolve_media_path(text_field(row, benchmark.media_field), root)
                report.warnings.extend((index, k, detail) for k, detail in clip_mismatches(clip, row))
            else:
                load_image(text_field(row, benchmark.media_field), ImageSettings(), root=root)
        except MediaError as error:
            report.problems.append((index, _problem_kind(error), str(error)))
    return report
