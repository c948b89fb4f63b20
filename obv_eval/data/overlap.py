"""Contamination guard: training clips that share a source with a benchmark item.

A training row (OpenBiomedVid schema) and a benchmark row are compared on what identifies where a clip
came from:

* the YouTube video (``video_id``, else the ``v=`` of ``video_url``, else the ``<id>_<start>_<end>.mp4``
  file name) and the time range cut from it (``timestamp`` [start, end] seconds, else the file name);
* the echo study (MIMICEchoQA ``study``, else the ``s<digits>`` folder of a MIMIC-IV-ECHO path);
* the media file path itself.

Kinds of overlap, most severe first:

    clip   same source video and the time ranges intersect (or a range is unknown, so it cannot be ruled out)
    study  same echo study
    file   same media file path
    video  same source video, disjoint time ranges (a different part of the same lecture or operation)

``level="clip"`` reports the first three; ``level="video"`` (the default, the cautious one) all four.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

OverlapKind = Literal["clip", "study", "file", "video"]
Level = Literal["clip", "video"]
KINDS_BY_LEVEL: dict[str, tuple[OverlapKind, ...]] = {
    "clip": ("clip", "study", "file"),
    "video": ("clip", "study", "file", "video"),
}
VIDEO_BENCHMARKS = ("surgeryvqa", "mimicechoqa")

# YouTube ids are 11 characters of [A-Za-z0-9_-]; clips are cut as <id>_<start>_<end>.<ext>.
_CLIP_NAME = re.compile(r"^(?P<id>[A-Za-z0-9_-]{11})_(?P<start>\d+(?:\.\d+)?)_(?P<end>\d+(?:\.\d+)?)$")
_STUDY_DIR = re.compile(r"(?:^|/)s(?P<study>\d{6,})(?:/|$)")


@dataclass(frozen=True)
class ClipRef:
    """Where one row's clip came from, as far as the row says."""

    item_id: str
    video: str | None = None
    video_id: str | None = None
    start: float | None = None
    end: float | None = None
    study: str | None = None

    @property
    def time_range(self) -> tuple[float, float] | None:
        return (self.start, self.end) if self.start is not None and self.end is not None else None


@dataclass(frozen=True)
class Overlap:
    benchmark: str
    kind: OverlapKind
    train_id: str
    benchmark_id: str
    key: str  # the shared video id, study or file
    train_range: tuple[float, float] | None = None
    benchmark_range: tuple[float, float] | None = None

    def describe(self) -> str:
        ranges = ""
        if self.kind in ("clip", "video"):
            ranges = f" train {_fmt_range(self.train_range)} vs benchmark {_fmt_range(self.benchmark_range)}"
        pair = f"train {self.train_id} / item {self.benchmark_id}"
        return f"{self.benchmark}: {self.kind} overlap on {self.key}: {pair}{ranges}"


def _fmt_range(value: tuple[float, float] | None) -> str:
    return "[?]" if value is None else f"[{value[0]:g}, {value[1]:g}]s"


def _text(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def _youtube_id(url: str | None) -> str | None:
    if not url:
        return None
    parsed = urlparse(url)
    if parsed.hostname and parsed.hostname.endswith("youtu.be"):
        return parsed.path.strip("/") or None
    values = parse_qs(parsed.query).get("v")
    return values[0] if values else None


def clip_ref(row: Mapping[str, Any], index: int = 0) -> ClipRef:
    """What identifies a row's clip; fields the row lacks are inferred from its file name where possible."""
    video = _text(row.get("video"))
    if video is None and isinstance(row.get("videos"), list) and row["videos"]:
        video = _text(row["videos"][0])
    item_id = (
        _text(row.get("id"))
        or _text(row.get("messages_id"))
        or _text(str(row.get("pubid") or ""))
        or str(index)
    )
    name = _CLIP_NAME.match(PurePosixPath(video).stem) if video else None
    video_id = _text(row.get("video_id")) or _youtube_id(_text(row.get("video_url")))
    if video_id is None and name:
        video_id = name["id"]
    start = end = None
    stamp = row.get("timestamp")
    if isinstance(stamp, list | tuple) and len(stamp) == 2 and all(isinstance(v, int | float) for v in stamp):
        start, end = float(stamp[0]), float(stamp[1])
    elif name and (video_id is None or name["id"] == video_id):
        start, end = float(name["start"]), float(name["end"])
    study = _text(str(row["study"])) if row.get("study") not in (None, "") else None
    if study is None and video:
        found = _STUDY_DIR.search(video)
        study = found["study"] if found else None
    if study is not None:
        study = study.lstrip("s")
    return ClipRef(item_id, video, video_id, start, end, study)


def _intersect(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    if a is None or b is None:
        return True  # unknown: cannot rule it out
    return max(a[0], b[0]) < min(a[1], b[1])


def _normal_path(path: str) -> str:
    return str(PurePosixPath(path.replace("\\", "/"))).lstrip("./")


def find_overlaps(
    train_rows: Iterable[Mapping[str, Any]],
    benchmark_rows_by_name: Mapping[str, Iterable[Mapping[str, Any]]],
    level: Level = "video",
) -> list[Overlap]:
    """Every (training clip, benchmark item) pair that shares a source, at the kinds ``level`` covers."""
    kinds = KINDS_BY_LEVEL[level]
    train = [clip_ref(row, i) for i, row in enumerate(train_rows)]
    by_video: dict[str, list[ClipRef]] = defaultdict(list)
    by_study: dict[str, list[ClipRef]] = defaultdict(list)
    by_file: dict[str, list[ClipRef]] = defaultdict(list)
    for ref in train:
        if ref.video_id:
            by_video[ref.video_id].append(ref)
        if ref.study:
            by_study[ref.study].append(ref)
        if ref.video:
            by_file[_normal_path(ref.video)].append(ref)

    found: list[Overlap] = []
    for benchmark, rows in benchmark_rows_by_name.items():
        for index, row in enumerate(rows):
            item = clip_ref(row, index)
            seen: set[str] = set()  # one record per (train clip, item), the most severe kind
            candidates: list[tuple[OverlapKind, ClipRef, str]] = []
            for ref in by_video.get(item.video_id or "", []):
                kind: OverlapKind = "clip" if _intersect(ref.time_range, item.time_range) else "video"
                candidates.append((kind, ref, item.video_id or ""))
            for ref in by_study.get(item.study or "", []):
                candidates.append(("study", ref, f"study s{item.study}"))
            for ref in by_file.get(_normal_path(item.video) if item.video else "", []):
                candidates.append(("file", ref, item.video or ""))
            order = {k: n for n, k in enumerate(("clip", "study", "file", "video"))}
            for kind, ref, key in sorted(candidates, key=lambda c: order[c[0]]):
                if kind not in kinds or ref.item_id in seen:
                    continue
                seen.add(ref.item_id)
                found.append(
                    Overlap(benchmark, kind, ref.item_id, item.item_id, key, ref.time_range, item.time_range)
                )
    return found


@dataclass
class OverlapReport:
    benchmarks_checked: list[str] = field(default_factory=list)
    unchecked: dict[str, str] = field(default_factory=dict)  # benchmark -> why its rows could not be read
    overlaps: list[Overlap] = field(default_factory=list)
    level: str = "video"
    train_clips: int = 0

    @property
    def clean(self) -> bool:
        return not self.overlaps and not self.unchecked

    def to_dict(self) -> dict[str, Any]:
        counts: dict[str, int] = defaultdict(int)
        for overlap in self.overlaps:
            counts[f"{overlap.benchmark}:{overlap.kind}"] += 1
        return {
            "level": self.level,
            "train_clips": self.train_clips,
            "benchmarks_checked": self.benchmarks_checked,
            "unchecked": self.unchecked,
            "overlap_counts": dict(sorted(counts.items())),
            "overlaps": [asdict(o) for o in self.overlaps],
        }

    def summary(self) -> str:
        lines = [
            f"overlap check ({self.level} level): {self.train_clips} training clips against "
            f"{', '.join(self.benchmarks_checked) or 'no benchmark'}: {len(self.overlaps)} overlap(s)"
        ]
        lines += [f"  {overlap.describe()}" for overlap in self.overlaps[:20]]
        if len(self.overlaps) > 20:
            lines.append(f"  ... and {len(self.overlaps) - 20} more")
        lines += [f"  {name}: NOT CHECKED ({why})" for name, why in self.unchecked.items()]
        return "\n".join(lines)


def load_benchmark_rows(name: str, data: str) -> list[dict[str, Any]]:
    """A benchmark's rows from ``hub``, ``samples`` or a local copy, as obv-eval reads them for evaluation."""
    from obv_eval.benchmarks import BENCHMARKS
    from obv_eval.sources import parse_data_source
    from obv_eval.tasking import load_rows

    return [dict(row) for row in load_rows(BENCHMARKS[name], parse_data_source(data))]


def check_overlap(
    train_rows: Sequence[Mapping[str, Any]],
    benchmark_data: str,
    benchmarks: Sequence[str] = VIDEO_BENCHMARKS,
    level: Level = "video",
) -> OverlapReport:
    """Load each benchmark's rows from ``benchmark_data`` and compare; unreadable benchmarks are listed."""
    report = OverlapReport(level=level, train_clips=len(train_rows))
    rows_by_name: dict[str, list[dict[str, Any]]] = {}
    for name in benchmarks:
        try:
            rows_by_name[name] = load_benchmark_rows(name, benchmark_data)
        except Exception as error:  # any source failure leaves that benchmark unchecked, and says so
            report.unchecked[name] = f"{type(error).__name__}: {error}".splitlines()[0]
    report.benchmarks_checked = list(rows_by_name)
    report.overlaps = find_overlaps(train_rows, rows_by_name, level)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """`obv-eval data overlap`: exit 0 clean, 1 overlaps found (or a benchmark unchecked), 2 bad usage."""
    from obv_eval.benchmarks import BENCHMARKS

    parser = argparse.ArgumentParser(
        prog="obv-eval data overlap",
        description="Report training clips that share a source video, time range, echo study or file "
        "with a video benchmark's items.",
    )
    parser.add_argument("--train", default="hub", help="training rows: hub | samples | DIR | rows file")
    parser.add_argument("--data", help="benchmark rows: hub | samples | DIR (default: as --train)")
    parser.add_argument(
        "--benchmarks", nargs="+", default=list(VIDEO_BENCHMARKS), choices=list(VIDEO_BENCHMARKS)
    )
    parser.add_argument("--level", choices=("clip", "video"), default="video")
    parser.add_argument("--json", type=Path, help="also write the full report here")
    args = parser.parse_args(argv)

    from obv_eval.train.data import load_train_rows

    benchmark_data = args.data or args.train
    if Path(benchmark_data).is_file():
        print(
            "obv-eval data overlap: --data must be hub, samples or a folder when --train is a file",
            file=sys.stderr,
        )
        return 2
    try:
        rows, _, _ = load_train_rows(args.train)
    except Exception as error:
        print(f"obv-eval data overlap: cannot read training rows {args.train!r}: {error}", file=sys.stderr)
        return 2
    assert all(name in BENCHMARKS for name in args.benchmarks)
    report = check_overlap(rows, benchmark_data, args.benchmarks, args.level)
    print(report.summary())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0 if report.clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
