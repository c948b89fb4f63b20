"""Where each benchmark's rows and media come from: the hub, the bundled samples, or a local copy.

The choice is process-wide so that both `obv-eval` and plain `lmms-eval --include_path` see it:
`obv-eval --data ...` sets it, and otherwise the environment does:

    OBV_EVAL_DATA         hub | samples | DIR (a local copy, laid out as below); default: hub
    OBV_EVAL_VIDEO_ROOT   folder the rows' video paths are relative to
    OBV_EVAL_IMAGE_ROOT   folder the rows' image paths are relative to

A local copy `DIR` holds `DIR/<benchmark>/test.{jsonl,json,parquet,csv}` (or a folder written by
`datasets.save_to_disk` at `DIR/<benchmark>/test`) and, unless the roots above say otherwise,
media under `DIR/media/<benchmark>/`. Without `DIR/<benchmark>/`, a benchmark's release row file
(obv_eval.release_formats: MIMICEchoQA's `MIMICEchoQA.json`) is read instead, with media paths
relative to the folder holding it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from obv_eval.release_formats import RELEASE_ROW_FILES, release_rows_file


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


def _folder_rows(folder: Path, split: str) -> tuple[str, dict[str, object]] | None:
    """The rows of `DIR/<benchmark>/`: a save_to_disk folder or a `<split>.<format>` file (None: neither)."""
    saved = folder / split
    if (saved / "dataset_info.json").exists() or (saved / "state.json").exists():
        return "load_from_disk", {"dataset_path": str(saved)}
    for suffix, builder in ROW_FILE_FORMATS.items():
        candidate = folder / f"{split}{suffix}"
        if candidate.exists():
            return builder, {"data_files": {split: str(candidate)}}
    return None


def _release_file(benchmark: str, split: str, root: Path) -> Path | None:
    """The release row file read for a benchmark: only where `DIR/<benchmark>/` holds no rows."""
    return None if _folder_rows(root / benchmark, split) else release_rows_file(benchmark, root)


def local_rows_location(benchmark: str, split: str, source: DataSource) -> tuple[str, dict[str, object]]:
    """The `datasets` builder and arguments that read a benchmark's rows from a local copy."""
    assert source.root is not None
    folder = source.root / benchmark
    found = _folder_rows(folder, split)
    if found is not None:
        return found
    release = release_rows_file(benchmark, source.root)
    if release is not None:
        return "json", {"data_files": {split: str(release)}}
    also = " or ".join(str(source.root / name) for name in RELEASE_ROW_FILES.get(benchmark, ()))
    raise DataSourceError(
        f"{benchmark}: no rows in {folder} (expected {split}.jsonl, .json, .parquet, .csv "
        f"or a save_to_disk folder {split}/){f', nor {also}' if also else ''}"
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

        release = _release_file(benchmark, "test", source.root)
        if release is not None:  # a release file's rows name media relative to its own folder
            return release.parent
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


# Whether the tasks' doc_to_visual is being called by obv's own adapters (see media_refs).
_MEDIA_REFS: ContextVar[bool] = ContextVar("obv_eval_media_refs", default=False)


@contextlib.contextmanager
def media_refs() -> Iterator[None]:
    """Within the block, the tasks' `doc_to_visual` give MediaRefs, which obv's backends load (root,
    kind, content-keyed caches); outside it, the plain types lmms-eval's own models take."""
    token = _MEDIA_REFS.set(True)
    try:
        yield
    finally:
        _MEDIA_REFS.reset(token)


def task_visual(ref: MediaRef) -> Any:
    """What a task's `doc_to_visual` gives for a media file: inside `media_refs()` the ref itself; else,
    as lmms-eval's own tasks give, a video as its path (a plain `str`: some of its models test
    `type(v) is str`) and an image as a PIL image, opened lazily (its pixels are read when used)."""
    if _MEDIA_REFS.get():
        return ref
    path = str(ref)
    if ref.kind == "video":
        return path
    from PIL import Image

    try:
        return Image.open(path)
    except (OSError, ValueError):  # missing or not an image: the path, which lmms-eval's models skip
        return path


# ---------------------------------------------------------------------------------------------------
# Rows of a local copy, read one by one before any columnar step

ROW_TEXT_LIMIT = 65_536  # characters of text in one row; beyond it the row fails alone


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return "a scalar"


def normalize_rows(rows: list[dict[str, Any]], error_field: str) -> list[dict[str, Any]]:
    """Rows whose every column pyarrow can hold, with the row that cannot fit marked in `error_field`.

    A column whose values pyarrow cannot put in one type is mended value by value:

    * mostly text and numbers: every scalar becomes its text (2019 and "2019" are both "2019");
      an object or list there fails its row;
    * mostly objects or lists: a string holding that JSON (``options`` written as JSON text) is
      parsed; any other value fails its row; if the objects still differ in inner types, the
      whole column becomes JSON text (the tasks read option dicts from JSON text as well).

    A failed row keeps its other fields (the record still shows its question) and gets the reason;
    the bad value becomes None. Nothing is dropped.
    """
    import pyarrow as pa

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = [dict(row) for row in rows]
    for name in columns:
        if name == error_field:
            continue
        present = [(i, row[name]) for i, row in enumerate(out) if row.get(name) is not None]
        try:
            pa.array([value for _, value in present])
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            pass
        counts = Counter(_kind(value) for _, value in present)
        dominant = max(counts, key=lambda kind: (counts[kind], kind != "a scalar"))
        for i, value in present:
            mended, problem = _mend(value, dominant)
            out[i][name] = mended
            if problem is not None and not out[i].get(error_field):
                out[i][error_field] = f"field {name!r}: {problem} where other rows have {dominant}"
        values = [row.get(name) for row in out]
        try:
            pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            for row in out:
                if row.get(name) is not None:
                    row[name] = json.dumps(row[name], ensure_ascii=False)
    return out


def _mend(value: Any, dominant: str) -> tuple[Any, str | None]:
    kind = _kind(value)
    if dominant == "a scalar":
        if kind != "a scalar":
            return None, kind
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace"), None
        return value if isinstance(value, str) else str(value), None
    if kind == dominant:
        return value, None
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None, "text that is not JSON"
        if _kind(parsed) == dominant:
            return parsed, None
        return None, f"JSON text holding {_kind(parsed)}"
    return None, kind if kind != "a scalar" else f"a {type(value).__name__}"


def read_csv_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file as text, one by one (no type guessing across rows); empty cells are None."""
    import csv

    # utf-8-sig: a BOM written by spreadsheet tools would otherwise stick to the first column's name
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        return [
            {str(k): (v if v != "" else None) for k, v in row.items() if k is not None}
            for row in csv.DictReader(handle)
        ]


def oversized_row_reason(row: dict[str, Any], limit: int = ROW_TEXT_LIMIT) -> str | None:
    """Why a row is too large to run (its text fields hold more than `limit` characters), or None."""
    sizes = {name: _text_size(value) for name, value in row.items() if not str(name).startswith("_obv")}
    total = sum(sizes.values())
    if total <= limit:
        return None
    largest = max(sizes, key=lambda name: sizes[name])
    return (
        f"row text is {total:,} characters (field {largest!r}: {sizes[largest]:,}), over the "
        f"{limit:,}-character limit for one item; far beyond any model's context"
    )


def _text_size(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_text_size(v) for v in value.values())
    if isinstance(value, list):
        return sum(_text_size(v) for v in value)
    return 0
