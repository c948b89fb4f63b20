"""The lmms-eval side shared by every obv task: loading rows from the configured source, marking
malformed rows, and turning one scored item into the record that lmms-eval aggregates and
obv-eval writes.

Every row that the source holds becomes an item: a row that cannot be run (missing field,
undecodable text) is kept and marked, so it fails with its reason instead of leaving the
denominator.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import datasets
from lmms_eval.api.task import ConfigurableMessagesTask, ConfigurableTask

from obv_eval.benchmarks import Benchmark, benchmark_for_task
from obv_eval.failures import parse_failure
from obv_eval.release_formats import RELEASE_KEY, adapt_row, in_test_split
from obv_eval.sources import (
    DataSource,
    DataSourceError,
    current_data_source,
    local_rows_location,
    normalize_rows,
    oversized_row_reason,
    read_csv_rows,
)

ROW_ERROR_FIELD = "_obv_error"


def read_json_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a .jsonl (or a .json list) file; a line that cannot be read becomes a marked row."""
    raw = path.read_bytes().removeprefix(codecs.BOM_UTF8)  # a BOM (from Windows tools) is not data
    if path.suffix == ".json" and raw.lstrip().startswith(b"["):
        try:
            items = json.loads(raw.decode("utf-8"))
        except ValueError as error:  # no row boundaries to keep: the whole file is unreadable
            raise DataSourceError(f"{path}: not a JSON list of rows ({error}); fix the file") from None
        return [
            dict(item)
            if isinstance(item, dict)
            else {ROW_ERROR_FIELD: f"{path.name} item {number}: not a JSON object"}
            for number, item in enumerate(items, start=1)
        ]
    keyed: Any = None
    if path.suffix == ".json" and raw.lstrip().startswith(b"{"):
        # A release file keyed by item id (PubMedQA's ori_pqal.json): the key goes with the row.
        try:
            keyed = json.loads(raw.decode("utf-8"))
        except json.JSONDecodeError as error:
            if error.msg != "Extra data":  # "Extra data": one object per line, read below as JSON lines
                raise DataSourceError(f"{path}: not a JSON object of rows ({error}); fix the file") from None
        except ValueError as error:
            raise DataSourceError(f"{path}: not UTF-8 JSON ({error}); fix the file") from None
    if isinstance(keyed, dict):
        return [
            {**row, RELEASE_KEY: key}
            if isinstance(row, dict)
            else {ROW_ERROR_FIELD: f"{path.name} item {key}: not a JSON object", RELEASE_KEY: key}
            for key, row in keyed.items()
        ]
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
        except UnicodeDecodeError:
            row = {ROW_ERROR_FIELD: f"{path.name} line {number}: not valid UTF-8"}
        except ValueError as error:
            row = {ROW_ERROR_FIELD: f"{path.name} line {number}: malformed JSON ({error})"}
        rows.append(row)
    return rows


def rows_to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    # Every row gets every column, so rows with missing fields still load (and are marked); a value
    # whose type does not fit its column fails its row alone (obv_eval.sources.normalize_rows).
    rows = normalize_rows(rows, ROW_ERROR_FIELD)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    columns.setdefault(ROW_ERROR_FIELD, None)
    table = {name: _one_scalar_type([row.get(name) for row in rows]) for name in columns}
    return datasets.Dataset.from_dict(table)


def _one_scalar_type(values: list[Any]) -> list[Any]:
    """A column whose scalars mix types (VQA-RAD's release has answers 2 and "2") becomes text.

    Arrow needs one type per column; prompts and scorers read fields as text anyway."""
    kinds = {type(v) for v in values if v is not None}
    if len(kinds) > 1 and kinds <= {str, int, float, bool}:
        return [None if v is None else str(v) for v in values]
    return values


def mark_invalid_rows(dataset: datasets.Dataset, benchmark: Benchmark) -> datasets.Dataset:
    """Add the reason a row cannot be run to ROW_ERROR_FIELD (kept, never dropped)."""
    if ROW_ERROR_FIELD not in dataset.column_names:
        dataset = dataset.add_column(ROW_ERROR_FIELD, [None] * len(dataset))

    def check(row: dict[str, Any]) -> dict[str, Any]:
        if row.get(ROW_ERROR_FIELD):
            return row
        missing = [name for name in benchmark.required_fields if row.get(name) in (None, "")]
        if missing:
            row[ROW_ERROR_FIELD] = f"row is missing {', '.join(missing)}"
        else:
            row[ROW_ERROR_FIELD] = oversized_row_reason(row)
        return row

    return dataset.map(check, load_from_cache_file=False, desc=None)


def load_rows(benchmark: Benchmark, source: DataSource) -> datasets.Dataset:
    split = benchmark.split if source.kind == "hub" else "test"
    if source.kind == "hub":
        if not benchmark.hub_path:  # published elsewhere only (MIMICEchoQA: PhysioNet)
            raise DataSourceError(f"{benchmark.name}: {benchmark.hub_note}; --data samples runs the samples")
        try:
            dataset = datasets.load_dataset(benchmark.hub_path, benchmark.hub_name, split=split)
        except Exception as error:  # any hub failure: say what to do instead
            raise DataSourceError(
                f"{benchmark.name}: cannot load {benchmark.hub_path} from the Hugging Face hub "
                f"({type(error).__name__}); give a local copy with --data DIR (or OBV_EVAL_DATA), "
                "or --data samples for the bundled samples"
            ) from error
    else:
        builder, kwargs = local_rows_location(benchmark.rows_name, split, source)
        if builder == "load_from_disk":
            dataset = datasets.load_from_disk(str(kwargs["dataset_path"]))
        elif builder == "json":
            files = kwargs["data_files"]
            assert isinstance(files, dict)
            rows = read_json_rows(Path(files[split]))
            dataset = rows_to_dataset([adapt_row(benchmark.name, row) for row in rows])
        elif builder == "csv":  # read as text, row by row: no type guessing across rows
            files = kwargs["data_files"]
            assert isinstance(files, dict)
            rows = read_csv_rows(Path(files[split]))
            dataset = rows_to_dataset([adapt_row(benchmark.name, row) for row in rows])
        else:
            try:
                dataset = datasets.load_dataset(builder, split=split, **kwargs)
            except (ValueError, TypeError, OSError) as error:  # e.g. a parquet type `datasets` cannot hold
                files = kwargs.get("data_files")
                where = files.get(split) if isinstance(files, dict) else files
                first = (str(error).splitlines() or [type(error).__name__])[0]
                raise DataSourceError(
                    f"{where}: cannot be read as {builder} rows ({first}); fix the file"
                ) from None
    return mark_invalid_rows(select_test_split(benchmark, dataset), benchmark)


def select_test_split(benchmark: Benchmark, dataset: datasets.Dataset) -> datasets.Dataset:
    """The benchmark's test items of a file that holds more (PubMedQA's 1,000, VQA-RAD's whole release).

    Rows that cannot be read are kept (they fail with their reason)."""
    columns = [c for c in ("pubid", "phrase_type") if c in dataset.column_names]
    if not columns:
        return dataset
    if ROW_ERROR_FIELD in dataset.column_names:
        columns.append(ROW_ERROR_FIELD)
    view = dataset.select_columns(columns)
    keep = [i for i, row in enumerate(view) if row.get(ROW_ERROR_FIELD) or in_test_split(benchmark.name, row)]
    if len(keep) == len(dataset):
        return dataset
    if not keep:
        raise DataSourceError(
            f"{benchmark.name}: none of the {len(dataset)} rows belongs to the benchmark's test split"
            + (
                " (the 500 official PMIDs); the task pubmedqa_all takes every row"
                if benchmark.rows_from == "" and benchmark.labels
                else ""
            )
        )
    return dataset.select(keep)


def _loaded_for_chat_model() -> bool:
    """Whether lmms-eval is loading the task being built for a chat model (one that reads
    `doc_to_messages`) rather than a simple one (`doc_to_visual` and the prompt text).

    lmms-eval picks ConfigurableMessagesTask for a chat model only for YAML-only tasks; a task with its
    own `class` is built the same way for both. Its loader, TaskManager._load_individual_task_or_group,
    holds the model's kind in `task_type` (lmms-eval 0.7.3); when no such caller is found, simple.
    A loader without it (another lmms-eval) is an error: guessing would run chat models blind.
    """
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "_load_individual_task_or_group":
            task_type = frame.f_locals.get("task_type")
            if task_type not in ("simple", "chat"):
                raise RuntimeError(
                    "obv tasks cannot tell whether this lmms-eval loads them for a chat or a simple model "
                    f"(its task loader's task_type is {task_type!r}); install the lmms-eval version of "
                    "obv-eval's lock (requirements/lock-linux-*.txt)"
                )
            return bool(task_type == "chat")
        frame = frame.f_back
    return False


class ObvTask(ConfigurableMessagesTask):
    """An lmms-eval task whose rows come from obv_eval.sources, for simple and chat models alike.

    For a simple model (obv's adapters, lmms-eval's qwen2_vl, llava_onevision, ...) its requests carry
    `doc_to_visual`, as ConfigurableTask's do; for a chat model (lmms-eval's huggingface, qwen2_5_vl, ...)
    they carry `doc_to_messages`, as ConfigurableMessagesTask's do.
    """

    def __init__(self, config: Mapping[str, Any], **kwargs: Any) -> None:
        # lmms-eval hands the `class` entry over with the rest of the YAML.
        super().__init__(config={k: v for k, v in config.items() if k != "class"}, **kwargs)
        self.for_chat_model = _loaded_for_chat_model()

    def construct_requests(self, doc_id: int, ctx: str, **kwargs: Any) -> Any:
        if self.for_chat_model:
            return super().construct_requests(doc_id, ctx, **kwargs)
        return ConfigurableTask.construct_requests(self, doc_id, ctx, **kwargs)

    def download(self, dataset_kwargs: dict[str, Any] | None = None) -> None:
        benchmark = benchmark_for_task(self.config.task)
        split = self.config.test_split
        source = current_data_source()
        rows = load_rows(benchmark, source)
        from obv_eval.provenance import record_rows

        record_rows(benchmark, source, rows)  # hub revision and media digest for results.json
        self.dataset = datasets.DatasetDict({split: rows})
        if self.config.process_docs is not None:
            self.dataset[split] = self.config.process_docs(self.dataset[split])
        self.dataset_no_image = self.dataset


def item_result(
    metrics: Iterable[str],
    *,
    doc: Mapping[str, Any],
    prediction: str,
    scores: dict[str, float | None],
    item_id: str,
    cluster: str,
    categories: dict[str, str],
    question: str,
    target: str,
    extracted: str | None = None,
    unparsed: bool = False,
    unparsed_reason: str | None = None,
    choices: Iterable[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The per-metric dicts lmms-eval aggregates; each carries the whole record.

    A failed item (bad row, or the model could not run it) scores 0 on every metric. With `choices`
    (the option letters shown), a gold letter outside them is a bad row: failed, not scored wrong.
    `reason` says why a failed item failed, and why nothing was read from an unparsed one
    (`unparsed_reason`, e.g. "empty reply", "contradictory: no, yes"; "unparsed" when not given).
    """
    shown = sorted(choices) if choices is not None else None
    bad_gold = (
        f"gold answer {target!r} is not one of the options {shown}" if shown and target not in shown else None
    )
    failure = doc.get(ROW_ERROR_FIELD) or bad_gold or parse_failure(prediction)
    record: dict[str, Any] = {
        "item_id": item_id,
        "cluster": cluster,
        "categories": categories,
        "question": question,
        "target": target,
        "prediction": "" if failure else prediction,
        "extracted": None if failure else extracted,
        "status": "failed" if failure else "ok",
        "reason": failure or ((unparsed_reason or "unparsed") if unparsed else None),
        "unparsed": bool(unparsed) and not failure,
        "scores": {name: (0.0 if failure else value) for name, value in scores.items()},
    }
    out: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        value = record["scores"].get(metric)
        # lmms-eval's standard errors skip dicts without a score: an unscored item has none.
        out[metric] = record if value is None else {"score": value, **record}
    return out


def text_field(doc: Mapping[str, Any], name: str) -> str:
    """A row's field as text ('' when missing), never raising on odd values."""
    value = doc.get(name)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def mean_score(items: list[dict[str, Any] | float]) -> float:
    """lmms-eval aggregation: mean over scored items (unscored items, score None, are left out)."""
    values = [item.get("score") if isinstance(item, dict) else item for item in items]
    scored = [float(v) for v in values if v is not None]
    return sum(scored) / len(scored) if scored else float("nan")


def image_visual(doc: Mapping[str, Any], field: str, benchmark: str) -> list[Any]:
    """An image row's visual: the image `datasets` decoded from a hub row, or the file the row names
    (sources.task_visual: a PIL image for lmms-eval's models, a MediaRef for obv's)."""
    from obv_eval.sources import MediaRef, media_root, task_visual

    value = doc.get(field)
    if value is None or isinstance(value, str):
        root = media_root(benchmark, "image")
        return [task_visual(MediaRef("image", text_field(doc, field), str(root) if root else None))]
    if isinstance(value, dict) and value.get("path") and not value.get("bytes"):
        root = media_root(benchmark, "image")
        return [task_visual(MediaRef("image", str(value["path"]), str(root) if root else None))]
    return [value]  # a PIL image decoded by `datasets`


def video_visual(doc: Mapping[str, Any], field: str, benchmark: str) -> list[Any]:
    """A video row's visual: the file it names (sources.task_visual: its path for lmms-eval's models,
    a MediaRef for obv's)."""
    from obv_eval.sources import MediaRef, media_root, task_visual

    root = media_root(benchmark, "video")
    return [task_visual(MediaRef("video", text_field(doc, field), str(root) if root else None))]


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def chat_messages(visuals: Iterable[Any], text: str) -> list[dict[str, Any]]:
    """One user turn in lmms-eval's chat form (lmms_eval.protocol.ChatMessages): the item's visuals,
    then its text, as obv's conversation lays them out; the `doc_to_messages` of every obv task, which
    lmms-eval's chat models read. A path is a video unless it names an image file (one PIL could not
    open)."""
    from PIL import Image

    from obv_eval.sources import MediaRef

    content: list[dict[str, Any]] = []
    for visual in visuals:
        if isinstance(visual, MediaRef):
            content.append({"type": visual.kind, "url": str(visual)})
        elif isinstance(visual, Image.Image) or str(visual).lower().endswith(IMAGE_SUFFIXES):
            content.append({"type": "image", "url": visual})
        else:
            content.append({"type": "video", "url": visual})
    return [{"role": "user", "content": [*content, {"type": "text", "text": text}]}]


def image_key(doc: Mapping[str, Any], field: str) -> str:
    """A stable key for the image an item shows (its cluster): the path, or a hash of the pixels."""
    import hashlib

    value = doc.get(field)
    if value is None or isinstance(value, str):
        return text_field(doc, field)
    if isinstance(value, dict):
        return str(value.get("path") or hashlib.sha256(value.get("bytes") or b"").hexdigest()[:16])
    tobytes = getattr(value, "tobytes", None)
    return hashlib.sha256(tobytes()).hexdigest()[:16] if tobytes else repr(value)


VQA_METRICS = ("accuracy", "exact_match", "token_f1", "answer_recall")
VQA_INSTRUCTION = "Answer the question using a single word or phrase."


class ImageVqa:
    """The lmms-eval functions of an image VQA task (VQA-RAD, PathVQA, SLAKE): one place for all three.

    Closed items are those the rows label CLOSED in `answer_type_field` (SLAKE, VQA-RAD's original
    release), else those whose gold answer is yes/no (VQA-RAD's hub copy, PathVQA);
    categories name extra row fields reported per value.
    """

    def __init__(
        self,
        benchmark: str,
        image_field: str,
        answer_type_field: str | None = None,
        category_fields: tuple[str, ...] = (),
    ) -> None:
        self.benchmark = benchmark
        self.image_field = image_field
        self.answer_type_field = answer_type_field
        self.category_fields = category_fields

    def doc_to_visual(self, doc: dict[str, Any]) -> list[Any]:
        return image_visual(doc, self.image_field, self.benchmark)

    def doc_to_messages(
        self, doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        return chat_messages(self.doc_to_visual(doc), self.doc_to_text(doc))

    def doc_to_text(
        self, doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None
    ) -> str:
        return f"{text_field(doc, 'question').strip()}\n{VQA_INSTRUCTION}"

    def doc_to_target(self, doc: dict[str, Any]) -> str:
        return text_field(doc, "answer")

    def is_closed(self, doc: dict[str, Any]) -> bool:
        from obv_eval.scoring.vqa import is_closed_answer

        labelled = text_field(doc, self.answer_type_field).strip().upper() if self.answer_type_field else ""
        if labelled in ("CLOSED", "OPEN"):
            return labelled == "CLOSED"
        # Rows without the label (VQA-RAD's hub copy): closed when the gold is yes/no.
        return is_closed_answer(text_field(doc, "answer"))

    def process_results(self, doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
        from obv_eval.scoring.vqa import score_vqa

        gold, closed = text_field(doc, "answer"), self.is_closed(doc)
        scored = score_vqa(results[0], gold, closed, question=text_field(doc, "question"))
        cluster = image_key(doc, self.image_field)
        categories = {"answer_type": "closed" if closed else "open"}
        categories.update({name: text_field(doc, name) for name in self.category_fields})
        return item_result(
            VQA_METRICS,
            doc=doc,
            prediction=results[0],
            scores=scored.scores,
            item_id=f"{cluster}|{text_field(doc, 'question')}",
            cluster=cluster,
            categories=categories,
            question=text_field(doc, "question"),
            target=gold,
            extracted=scored.extracted,
            unparsed=scored.unparsed,
            unparsed_reason=scored.reason,
        )
