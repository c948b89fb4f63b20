"""`obv-eval report`: a static, self-contained HTML page of one run (or a pair) for error analysis.

Built only from the run folders' files (results.json, samples.jsonl). Every item is embedded as one JSON
array and rendered a page at a time by a small inline script (no CDN, works from file://), with filters
(task, category, outcome, flips) and a text search. For video and image items a contact sheet of the
frames the model received is made on demand: the item's media are found through the data source the run
recorded (or --data / --video-root / --image-root), decoded with obv_eval.media using the run's recorded
frame settings, and embedded as small JPEG thumbnails; a placeholder says why when they are absent.

Outcome of an item on its task's primary metric (one of): failed (status failed), unparsed (no answer
could be extracted), unscored (no primary score, e.g. no judge), correct (score >= 0.5), wrong.
"""

from __future__ import annotations

import base64
import contextlib
import html
import importlib
import io
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from obv_eval.files import atomic_write_text
from obv_eval.results import check_samples_match, item_key, read_results, read_samples, record_score

OUTCOMES = ("correct", "wrong", "unparsed", "unscored", "failed")
PAGE_SIZE = 50
MAX_SHEET_FRAMES = 16
THUMB_HEIGHT = 84
JPEG_QUALITY = 70
ASSETS = Path(__file__).resolve().parent / "assets" / "report"
_OPTION_LINE = re.compile(r"^([A-J])[.)]\s+(.+)$")


def outcome(record: Mapping[str, Any], metric: str) -> str:
    """The item's outcome on `metric` (see the module docstring)."""
    if record.get("status") == "failed":
        return "failed"
    if record.get("unparsed"):
        return "unparsed"
    score = record_score(record, metric)
    if score is None:
        return "unscored"
    return "correct" if score >= 0.5 else "wrong"


def options_from_prompt(prompt: str) -> list[list[str]]:
    """The lettered options shown in the user turn of the prompt ("A. text" lines), in order."""
    user = prompt.split("<|im_start|>user", 1)[-1].split("<|im_end|>", 1)[0]
    found = [m.groups() for line in user.splitlines() if (m := _OPTION_LINE.match(line.strip()))]
    letters = [letter for letter, _ in found]
    if len(found) < 2 or letters != sorted(letters) or len(set(letters)) != len(letters):
        return []
    return [[letter, text] for letter, text in found]


# ---------------------------------------------------------------------------------------------------------
# Media: the frames the model received


@dataclass
class MediaLocator:
    """Finds an item's visuals through its task's own doc_to_visual on the recorded data source."""

    data: str | None
    video_root: str | None
    image_root: str | None
    provenance: Mapping[str, Any]

    def __post_init__(self) -> None:
        self._rows: dict[str, Any] = {}
        self._why: dict[str, str] = {}

    def source(self) -> Any:
        from obv_eval.sources import DataSourceError, parse_data_source

        recorded = str(self.provenance.get("data_source") or "")
        kind, _, root = recorded.partition(":")
        value = self.data or ("samples" if kind == "samples" else root if kind == "local" else kind)
        if not value:
            raise DataSourceError("the run recorded no data source; pass --data")
        if value == "hub":
            raise DataSourceError(
                "the run read the Hugging Face hub; media are not fetched for a report "
                "(pass --data DIR with a local copy, or --video-root / --image-root)"
            )
        return parse_data_source(value, self.video_root, self.image_root)

    def rows(self, task: str) -> Any:
        if task in self._rows or task in self._why:
            return self._rows.get(task)
        try:
            source = self.source()  # first: a hub run is refused before anything heavy is imported
            import datasets

            from obv_eval.benchmarks import BENCHMARKS
            from obv_eval.tasking import load_rows

            datasets.disable_progress_bars()
            with _data_source(source):
                dataset = load_rows(BENCHMARKS[task], source)
                module = importlib.import_module(f"obv_eval.tasks.{task}.utils")
                yaml_file = next(Path(module.__file__ or "").parent.glob("*.yaml"))
                process = re.search(
                    r"^process_docs:\s*!function\s+utils\.(\w+)", yaml_file.read_text(encoding="utf-8"), re.M
                )
                if process:
                    dataset = getattr(module, process.group(1))(dataset)
            self._rows[task] = (dataset, module, source)
        except Exception as error:  # any reason the rows cannot be read becomes the placeholder text
            self._why[task] = f"media not available: {error}"
            return None
        return self._rows[task]

    def visuals(self, record: Mapping[str, Any]) -> tuple[list[Any], str | None]:
        """The item's visuals (MediaRef or PIL image), or a reason they cannot be found."""
        task = str(record.get("task"))
        loaded = self.rows(task)
        if loaded is None:
            return [], self._why.get(task, "media not available")
        dataset, module, source = loaded
        doc_id = int(record.get("doc_id", -1))
        if not 0 <= doc_id < len(dataset):
            return [], f"media not available: row {doc_id} is not in the data source any more"
        row = dataset[doc_id]
        from obv_eval.tasking import text_field

        if record.get("question") and text_field(row, "question").strip() != str(record["question"]).strip():
            return [], f"media not shown: row {doc_id} of the data source no longer matches this item"
        if not hasattr(module, "doc_to_visual"):
            return [], None
        with _data_source(source):
            from obv_eval.sources import media_refs

            with media_refs():
                return list(module.doc_to_visual(row)), None


@contextlib.contextmanager
def _data_source(source: Any) -> Iterator[None]:
    """The task code reads the process-wide data source; set it for the block, then put it back."""
    from obv_eval import sources

    previous = getattr(sources, "_override", None)
    sources.set_data_source(source)
    try:
        yield
    finally:
        sources.set_data_source(previous)


def _jpeg_data_uri(image: Any) -> str:
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
    scale = THUMB_HEIGHT / max(picture.height, 1)
    size = (max(1, round(picture.width * scale)), THUMB_HEIGHT)
    thumb = picture.convert("RGB").resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def contact_sheet(visual: Any, provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Thumbnails of one visual as the model received it (sampled and resized with the recorded settings,
    under the run's control: blank frames, shuffled order, ...)."""
    from obv_eval import controls
    from obv_eval.media import ImageSettings, MediaError, VideoSettings, load_image, load_video
    from obv_eval.sources import MediaRef

    media = provenance.get("media") or {}
    control = provenance.get("control")
    try:
        if isinstance(visual, MediaRef) and visual.kind == "video":
            settings = controls.video_settings(control, VideoSettings(**(media.get("video") or {})))
            (video,), _ = controls.apply(control, (load_video(visual.path, settings, root=visual.root),), ())
            count = video.num_frames
            step = (count - 1) / (MAX_SHEET_FRAMES - 1)
            shown = sorted({round(i * step) for i in range(MAX_SHEET_FRAMES)})
            shown = shown if count > MAX_SHEET_FRAMES else list(range(count))
            return {
                "kind": "video",
                "name": str(visual.path),
                "frames": [_jpeg_data_uri(video.frames[i]) for i in shown],
                "indices": [video.indices[i] for i in shown],
                "sampled": count,
                "size": f"{video.frames.shape[2]}x{video.frames.shape[1]}",
                "fps": round(video.source_fps, 3),
                "total": video.total_frames,
            }
        image_settings = ImageSettings(**(media.get("image") or {}))
        if isinstance(visual, MediaRef):
            image = load_image(visual.path, image_settings, root=visual.root)
            name = str(visual.path)
        else:
            image = load_image(visual, image_settings)
            name = "image from the dataset row"
        _, (image,) = controls.apply(control, (), (image,))
        size = f"{image.width}x{image.height}"
        return {"kind": "image", "name": name, "frames": [_jpeg_data_uri(image)], "size": size}
    except (MediaError, OSError, ValueError, TypeError) as error:
        return {"missing": f"media not available: {error}"}


# ---------------------------------------------------------------------------------------------------------
# The page's data


def _item(record: Mapping[str, Any], metric: str) -> dict[str, Any]:
    scores = record.get("scores") or {}
    tokens = record.get("tokens") or {}
    return {
        "q": record.get("question") or "",
        "g": record.get("target"),
        "p": record.get("prediction") or "",
        "x": record.get("extracted"),
        "s": record_score(record, metric),
        "sc": scores,
        "o": outcome(record, metric),
        "jr": record.get("judge_reason"),
        "st": record.get("status"),
        "r": record.get("reason"),
        "tk": [tokens.get("prompt"), tokens.get("output")],
        "fr": record.get("frames") or [],
        **({"jv": scores["judge"]} if "judge" in scores else {}),
    }


def _summary(results: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for task, summary in results["tasks"].items():
        metric = summary["primary_metric"]
        estimate = summary["metrics"][metric]
        out[task] = {
            "metric": metric,
            "n": summary["n"],
            "failed": summary["failed"],
            "unparsed": summary["unparsed"],
            "unscored": summary["unscored"],
            "mean": estimate["mean"],
            "ci_low": estimate["ci_low"],
            "ci_high": estimate["ci_high"],
        }
    return out


def _pair_stats(
    results: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    base_results: Mapping[str, Any],
    base_records: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    from obv_eval.regress import paired_metric_scores
    from obv_eval.stats import paired_test

    out: dict[str, Any] = {}
    for task in [t for t in results["tasks"] if t in base_results["tasks"]]:
        metric = results["tasks"][task]["primary_metric"]
        # a primary "not scored" in either run: the closed items, under their own name (as `compare`)
        if any(metric in (r["tasks"][task].get("not_scored") or {}) for r in (results, base_results)):
            metric = f"{metric}_closed"
        base_task = base_results["tasks"][task]
        a, b, clusters = paired_metric_scores(base_records, records, task, metric, base_task)
        entry: dict[str, Any] = {"metric": metric, "n": len(a)}
        if a:
            # The same test as `compare` and the leaderboard: clustered where items share a source.
            test = paired_test(a, b, clusters)
            diff = test.estimate.to_dict()
            entry.update(mean=diff["mean"], ci_low=diff["ci_low"], ci_high=diff["ci_high"])
            entry.update(pvalue=test.pvalue, method=test.method)
            entry.update(gained=sum(y > x for x, y in zip(a, b, strict=True)))
            entry.update(lost=sum(y < x for x, y in zip(a, b, strict=True)))
        out[task] = entry
    return out


def _run_label(results: Mapping[str, Any]) -> str:
    """The model's name, and the control a control run removed (its scores are not the model's)."""
    control = (results.get("provenance") or {}).get("control")
    return f"{results['model']} [control: {control}]" if control else str(results["model"])


def report_data(
    run_dir: Path,
    against: Path | None = None,
    media: bool = True,
    data: str | None = None,
    video_root: str | None = None,
    image_root: str | None = None,
) -> dict[str, Any]:
    """Everything the page shows, as one JSON-able object (items in task, doc_id order)."""
    results, records = read_results(run_dir), read_samples(run_dir)
    check_samples_match(results, records, str(run_dir))
    metrics = {task: summary["primary_metric"] for task, summary in results["tasks"].items()}
    runs = [
        {
            "model": _run_label(results),
            "run_id": results["run_id"],
            "dir": str(run_dir),
            "judge": (results["provenance"].get("judge") or {}).get("note"),
            "tasks": _summary(results),
        }
    ]
    base_index: dict[tuple[str, str], Mapping[str, Any]] = {}
    pair = None
    if against is not None:
        base_results, base_records = read_results(against), read_samples(against)
        check_samples_match(base_results, base_records, str(against))
        base_index = {item_key(r): r for r in base_records}
        runs.append(
            {
                "model": _run_label(base_results),
                "run_id": base_results["run_id"],
                "dir": str(against),
                "judge": (base_results["provenance"].get("judge") or {}).get("note"),
                "tasks": _summary(base_results),
            }
        )
        pair = _pair_stats(results, records, base_results, base_records)
    locator = MediaLocator(data, video_root, image_root, results["provenance"]) if media else None
    sheets: dict[str, Any] = {}
    items = []
    for record in records:
        task = str(record.get("task"))
        metric = metrics.get(task, "accuracy")
        item = _item(record, metric)
        item.update(
            t=task,
            d=str(record.get("doc_id")),
            c={k: str(v) for k, v in (record.get("categories") or {}).items() if v is not None and v != ""},
            opt=options_from_prompt(str(record.get("prompt") or "")),
            pr=str(record.get("prompt") or ""),
            cl=record.get("cluster"),
        )
        visual = bool(record.get("frames")) or _has_visual(record)
        item["m"] = _media_keys(record, locator, sheets, results["provenance"]) if visual else []
        if against is not None:
            base = base_index.get(item_key(record))
            if base is None:
                item["f"] = "only_run"
            else:
                item["b"] = _item(base, metric)
                now, then = record_score(record, metric), record_score(base, metric)
                if now is None or then is None:
                    item["f"] = "unpaired"
                elif now > then:
                    item["f"] = "improved"
                elif now < then:
                    item["f"] = "regressed"
                else:
                    item["f"] = "same"
        items.append(item)
    if not media:
        sheets["off"] = {"missing": "media left out of this report (--no-media)"}
    return {"runs": runs, "pair": pair, "items": items, "media": sheets, "outcomes": list(OUTCOMES)}


def _has_visual(record: Mapping[str, Any]) -> bool:
    prompt = str(record.get("prompt") or "")
    return "<|image_pad|>" in prompt or "<|video_pad|>" in prompt


def _media_keys(
    record: Mapping[str, Any],
    locator: MediaLocator | None,
    sheets: dict[str, Any],
    provenance: Mapping[str, Any],
) -> list[str]:
    if locator is None:
        return ["off"]
    visuals, why = locator.visuals(record)
    if why is not None:
        key = "why:" + why
        sheets.setdefault(key, {"missing": why})
        return [key]
    keys = []
    for visual in visuals:
        key = f"{record.get('task')}:{visual}" if not hasattr(visual, "tobytes") else f"{item_key(record)}"
        if key not in sheets:
            sheets[key] = contact_sheet(visual, provenance)
        keys.append(key)
    return keys


# ---------------------------------------------------------------------------------------------------------
# HTML


# Characters that could end the <script> element, open an HTML comment or break a JS string, written as
# JSON's own \\uXXXX escapes: the text stays valid JSON (JSON.parse gives back the same strings) and the
# HTML parser never sees a "<", ">" or "&" inside the data.
_SCRIPT_ESCAPES = str.maketrans({c: f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})


def _script_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=str)
    return text.translate(_SCRIPT_ESCAPES)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _asset(name: str) -> str:
    return (ASSETS / name).read_text(encoding="utf-8")


def render_report(data: Mapping[str, Any]) -> str:
    run = data["runs"][0]
    title = f"obv-eval report: {run['model']} {run['run_id']}"
    if len(data["runs"]) > 1:
        title += f" vs {data['runs'][1]['model']} {data['runs'][1]['run_id']}"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_asset('report.css')}</style>\n</head>\n<body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        '<div id="summary"></div>\n<div id="controls"></div>\n<div id="status"></div>\n'
        '<div id="pager-top" class="pager"></div>\n<div id="items"></div>\n'
        '<div id="pager" class="pager"></div>\n'
        f'<script id="report-data" type="application/json">{_script_json(_clean(dict(data)))}</script>\n'
        f"<script>{_asset('report.js')}</script>\n</body>\n</html>\n"
    )


def write_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    against: str | Path | None = None,
    media: bool = True,
    data: str | None = None,
    video_root: str | None = None,
    image_root: str | None = None,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Write the report (default: <run_dir>/report.html) and return its path."""
    run_path = Path(run_dir)
    payload = report_data(
        run_path, Path(against) if against is not None else None, media, data, video_root, image_root
    )
    target = Path(out) if out is not None else run_path / "report.html"
    atomic_write_text(target, render_report(payload))  # a full disk leaves no half page behind
    if log is not None:
        shown = sum(1 for sheet in payload["media"].values() if "frames" in sheet)
        log(f"obv-eval: report of {len(payload['items'])} items, {shown} contact sheets")
    return target
