"""Where each benchmark's rows and media come from: the hub, the bundled samples, or a local copy.

The choice is process-wide so that both `obv-eval` and plain `lmms-eval --include_path` see it:
`obv-eval --data ...` sets it, and otherwise the environment does:

    OBV_EVAL_DATA         hub | samples | DIR (a local copy, laid out as below); default: hub
    OBV_EVAL_VIDEO_ROOT   folder the rows' video paths are relative to
    OBV_EVAL_IMAGE_ROOT   folder the rows' image paths are relative to

A local copy `DIR` holds `DIR/<benchmark>/test.{jsonl,json,parquet,csv}` (or a folder written by
`datasets.save_to_disk` at `DIR/<benchmark>/test`) and, unless the roots above say otherwise,
media under `DIR/media/<benchmark>/`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


def tasks_package_dir() -> Path:
    """The lmms-eval task folders: tasks/ in a checkout, installed as the obv_eval.tasks package."""
    import obv_eval.tasks

    return Path(obv_eval.tasks.__file__).resolve().parent


SAMPLES_DIR = tasks_package_dir() / "samples"

SourceKind = Literal["hub", "samples", "local"]
ROW_FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass(frozen=True)
class DataSource:
    kind: SourceKind
    root: Path | None = None  # the local copy's folder (samples: the bundled folder)
    video_root: Path | None = None
    image_root: Path | None = None

    def describe(self) -> str:
        return self.kind if self.root is None else f"{self.kind}:{self.root}"


class DataSourceError(Exception):
    """The configured data source cannot serve a benchmark (one line: what is missing, how to mend)."""


_override: DataSource | None = None


def set_data_source(source: DataSource | None) -> None:
    """Set the source for this process (None: back to the environment)."""
    global _override
    _override = source


def parse_data_source(value: str, video_root: str | None = None, image_root: str | None = None) -> DataSource:
    vroot = Path(video_root).expanduser() if video_root else None
    iroot = Path(image_root).expanduser() if image_root else None
    if value == "hub":
        return DataSource("hub", None, vroot, iroot)
    if value == "samples":
        return DataSource("samples", SAMPLES_DIR, vroot, iroot)
    path = Path(value).expanduser()
    if not path.is_dir():
        raise DataSourceError(f"data source {value!r} is neither 'hub', 'samples' nor an existing folder")
    return DataSource("local", path.resolve(), vroot, iroot)


def current_data_source() -> DataSource:
    if _override is not None:
        return _override
    return parse_data_source(
        os.environ.get("OBV_EVAL_DATA", "hub"),
        os.environ.get("OBV_EVAL_VIDEO_ROOT"),
        os.environ.get("OBV_EVAL_IMAGE_ROOT"),
    )


def local_rows_location(benchmark: str, split: str, source: DataSource) -> tuple[str, dict[str, object]]:
    """The `datasets` builder and arguments that read a benchmark's rows from a local copy."""
    assert source.root is not None
    folder = source.root / benchmark
    saved = folder / split
    if (saved / "dataset_info.json").exists() or (saved / "state.json").exists():
        return "load_from_disk", {"dataset_path": str(saved)}
    for suffix, builder in ROW_FILE_FORMATS.items():
        candidate = folder / f"{split}{suffix}"
        if candidate.exists():
            return builder, {"data_files": {split: str(candidate)}}
    raise DataSourceError(
        f"{benchmark}: no rows in {folder} (expected {split}.jsonl, .json, .parquet, .csv "
        f"or a save_to_disk folder {split}/)"
    )


def media_root(
    benchmark: str, kind: Literal["video", "image"], source: DataSource | None = None
) -> Path | None:
    """Folder that a benchmark's relative media paths resolve against (None: not configured)."""
    source = source or current_data_source()
    explicit = source.video_root if kind == "video" else source.image_root
    if explicit is not None:
        return explicit
    if source.root is not None:
        from obv_eval.benchmarks import BENCHMARKS

        subdir = BENCHMARKS[benchmark].media_subdir if benchmark in BENCHMARKS else ""
        return source.root / "media" / benchmark / subdir if subdir else source.root / "media" / benchmark
    return None


@dataclass(frozen=True)
class MediaRef:
    """A media file named by a dataset row, resolved against its root only when it is loaded."""

    kind: Literal["video", "image"]
    path: str
    root: str | None

    def __str__(self) -> str:
        return self.path if self.root is None else f"{self.root}/{self.path}"
