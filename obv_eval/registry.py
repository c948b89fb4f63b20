"""Model names -> checkpoint folders (and LoRA adapters), with the reason when one is not available here."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from obv_eval.models import UnknownFamily, family_of_checkpoint
from obv_eval.models.qwen2_5_vl import TINY_NAME as TINY_QWEN25_NAME
from obv_eval.tiny_model import (
    RANDOM_2B_NAME,
    TINY_MODEL_NAME,
    default_cache_root,
    qwen2vl_2b_random_dir,
    tiny_model_dir,
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    description: str
    hub_id: str | None = None  # public base checkpoint
    base: str | None = None  # for fine-tuned entries: the registry name of the base model
    api: bool = False  # served by a remote API, not loaded here
    reference: bool = False  # a reference row computed from the data (obv_eval.baselines), no model
    family: str | None = None  # obv_eval.models family name (None: no checkpoint here)
    # What was done with it here (`obv-eval models`, docs/models.md): "run here" (ran on CPU in the tests),
    # "trained here" (obv-train's output, run here after training), "resolves" (hub id and architecture
    # checked against public sources; weights never ran here), "unverified" (hub id from mirrors only).
    checked: str = "resolves"
    build: Callable[[Path | None], Path] | None = None  # built offline on first use


_RUN_HERE = "run here"


def _build_twin(family_name: str, cache_root: Path | None) -> Path:
    from obv_eval.models import families, tiny_twin_dir

    return tiny_twin_dir(families()[family_name], cache_root)


MODELS: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            TINY_MODEL_NAME,
            "random-weight Qwen2-VL built offline (demo and tests)",
            family="qwen2_vl",
            checked=_RUN_HERE,
            build=tiny_model_dir,
        ),
        ModelEntry(
            f"{TINY_MODEL_NAME}-obv",
            "the tiny model after obv-train --config tiny_cpu",
            base=TINY_MODEL_NAME,
            family="qwen2_vl",
            checked="trained here",
        ),
        ModelEntry(
            RANDOM_2B_NAME,
            "random weights, Qwen2-VL-2B's real architecture, built offline (GPU throughput checks)",
            family="qwen2_vl",
            checked="run here (GPU)",
            build=qwen2vl_2b_random_dir,
        ),
        ModelEntry(
            TINY_QWEN25_NAME,
            "random-weight Qwen2.5-VL built offline (tests)",
            family="qwen2_5_vl",
            checked=_RUN_HERE,
            build=functools.partial(_build_twin, "qwen2_5_vl"),
        ),
        ModelEntry(
            f"{TINY_QWEN25_NAME}-obv",
            "tiny-qwen2.5-vl after obv-train --model tiny-qwen2.5-vl",
            base=TINY_QWEN25_NAME,
            family="qwen2_5_vl",
            checked="trained here",
        ),
        ModelEntry(
            "qwen2vl-2b",
            "Qwen2-VL-2B-Instruct",
            hub_id="Qwen/Qwen2-VL-2B-Instruct",
            family="qwen2_vl",
        ),
        ModelEntry(
            "qwen2vl-7b",
            "Qwen2-VL-7B-Instruct",
            hub_id="Qwen/Qwen2-VL-7B-Instruct",
            family="qwen2_vl",
        ),
        ModelEntry(
            "qwen2vl-2b-obv",
            "Qwen2-VL-2B fine-tuned on OpenBiomedVid (obv-train)",
            base="qwen2vl-2b",
            family="qwen2_vl",
            checked="obv-train",
        ),
        ModelEntry(
            "qwen2vl-7b-obv",
            "Qwen2-VL-7B fine-tuned on OpenBiomedVid (obv-train)",
            base="qwen2vl-7b",
            family="qwen2_vl",
            checked="obv-train",
        ),
        ModelEntry(
            "qwen2.5-vl-3b",
            "Qwen2.5-VL-3B-Instruct (Qwen Research License)",
            hub_id="Qwen/Qwen2.5-VL-3B-Instruct",
            family="qwen2_5_vl",
        ),
        ModelEntry(
            "qwen2.5-vl-7b",
            "Qwen2.5-VL-7B-Instruct (Apache-2.0)",
            hub_id="Qwen/Qwen2.5-VL-7B-Instruct",
            family="qwen2_5_vl",
        ),
        ModelEntry(
            "qwen3-vl-4b",
            "Qwen3-VL-4B-Instruct (Apache-2.0)",
            hub_id="Qwen/Qwen3-VL-4B-Instruct",
            family="qwen3_vl",
        ),
        ModelEntry(
            "qwen3-vl-8b",
            "Qwen3-VL-8B-Instruct (Apache-2.0)",
            hub_id="Qwen/Qwen3-VL-8B-Instruct",
            family="qwen3_vl",
        ),
        ModelEntry(
            "llava-onevision-7b",
            "LLaVA-OneVision Qwen2-7B (ov), transformers format (Apache-2.0)",
            hub_id="llava-hf/llava-onevision-qwen2-7b-ov-hf",
            family="llava_onevision",
        ),
        ModelEntry(
            "internvl3-8b",
            "InternVL3-8B, transformers-native -hf checkpoint (hub license tag: qwen)",
            hub_id="OpenGVLab/InternVL3-8B-hf",
            family="internvl",
        ),
        ModelEntry(
            "medgemma-4b",
            "MedGemma 4B-it, medical Gemma 3 (Health AI Developer Foundations terms; gated)",
            hub_id="google/medgemma-4b-it",
            family="gemma3",
        ),
        ModelEntry(
            "lingshu-7b",
            "Lingshu-7B, a medical model built on Qwen2.5-VL (MIT)",
            hub_id="lingshu-medical-mllm/Lingshu-7B",
            family="qwen2_5_vl",
        ),
        ModelEntry(
            "huatuogpt-vision-7b",
            "HuatuoGPT-Vision-7B, its Qwen2.5-VL-7B release (license not read)",
            hub_id="FreedomIntelligence/HuatuoGPT-Vision-7B-Qwen2.5VL",
            family="qwen2_5_vl",
            checked="unverified",
        ),
        ModelEntry("gpt-4o", "OpenAI GPT-4o through the API (the study's reference row)", api=True),
        ModelEntry(
            "chance", "reference row: a uniform random answer's exact expected accuracy", reference=True
        ),
        ModelEntry("majority", "reference row: each task's most frequent gold label", reference=True),
    )
}


def _tiny_twins() -> list[ModelEntry]:
    """Every family's tiny twin that has no entry above (families added later register themselves)."""
    from obv_eval.models import families

    return [
        ModelEntry(
            family.tiny_name,
            f"random-weight {family.title} built offline (tests)"
            + (f"; {family.tiny_note}" if family.tiny_note else ""),
            family=family.name,
            checked=_RUN_HERE,
            build=functools.partial(_build_twin, family.name),
        )
        for family in families().values()
        if family.tiny_name is not None and family.tiny_name not in MODELS and family.build_tiny is not None
    ]


# The twins go after the entries above them that are tiny ones, so `obv-eval models` lists them together.
_entries = list(MODELS.values())
_after_tiny = max(i for i, entry in enumerate(_entries) if entry.name.startswith("tiny-")) + 1
MODELS = {e.name: e for e in [*_entries[:_after_tiny], *_tiny_twins(), *_entries[_after_tiny:]]}


class ModelNotAvailable(Exception):
    """A known model that cannot be used here; the message says how to make it available."""


@dataclass(frozen=True)
class ResolvedModel:
    name: str
    path: Path | None  # checkpoint folder with weights (the base model's, for a LoRA adapter)
    adapter_path: Path | None = None  # LoRA adapter folder over `path`
    api: bool = False
    reference: bool = False  # chance / majority: no model at all (obv_eval.baselines)


def checkpoint_dir() -> Path:
    """Where obv-train writes and the registry looks for fine-tuned checkpoints."""
    return Path(os.environ.get("OBV_EVAL_CHECKPOINTS", default_cache_root() / "checkpoints"))


def _hub_snapshot(hub_id: str) -> Path | None:
    """A checkpoint already in the local Hugging Face cache; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, local_files_only=True))
    except Exception:
        return None


def default_data(model: str, model_path: str | None = None) -> str:
    """What `--data auto` means: the embedded random models' data are the bundled samples; real models
    default to the benchmarks themselves, never silently to the samples."""
    tiny = model.startswith("tiny-")  # every family's tiny twin (and its obv-train output)
    return "samples" if tiny and model_path is None else "hub"


def resolve_model(name: str, model_path: str | None = None, build: bool = True) -> ResolvedModel:
    """Resolve a registry name or a local checkpoint folder. Raises ModelNotAvailable / KeyError."""
    if model_path is not None:
        path = Path(model_path).expanduser()
        if not path.exists() and model_path.count("/") == 1:  # a hub id: only from the local cache
            snapshot = _hub_snapshot(model_path)
            if snapshot is None:
                raise ModelNotAvailable(
                    f"--model-path {model_path}: not a folder, and not in the local Hugging Face cache "
                    f"(download it first: hf download {model_path})"
                )
            path = snapshot
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise ModelNotAvailable(f"--model-path {path}: no config.json or adapter_config.json there")
        return _folder(name, path)
    if name not in MODELS:
        folder = Path(name).expanduser()
        if folder.is_dir():
            return _folder(folder.name, folder)
        raise KeyError(f"unknown model {name!r}; valid: {', '.join(MODELS)} (or a checkpoint folder)")
    entry = MODELS[name]
    if entry.api:
        return ResolvedModel(name, None, api=True)
    if entry.reference:
        return ResolvedModel(name, None, reference=True)
    if entry.build is not None:
        return ResolvedModel(name, entry.build(None) if build else None)
    if entry.hub_id is not None:
        snapshot = _hub_snapshot(entry.hub_id)
        if snapshot is None:
            raise ModelNotAvailable(
                f"{name}: {entry.hub_id} is not in the local Hugging Face cache; download it on a "
                f"machine with hub access (hf download {entry.hub_id}) or pass --model-path DIR"
            )
        return ResolvedModel(name, snapshot)
    folder = checkpoint_dir() / name
    train_command = (
        "obv-train --config tiny_cpu" if entry.base == TINY_MODEL_NAME else f"obv-train --model {entry.base}"
    )
    if entry.base == TINY_QWEN25_NAME:
        train_command = f"obv-train --model {entry.base}"
    if not folder.is_dir():
        raise ModelNotAvailable(
            f"{name}: no checkpoint at {folder}; train it with `{train_command}` "
            "or set OBV_EVAL_CHECKPOINTS / pass --model-path DIR"
        )
    return _folder(name, folder)


def _folder(name: str, path: Path) -> ResolvedModel:
    if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        import json

        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        base_resolved = resolve_model(base) if base in MODELS else ResolvedModel(base, Path(base))
        if base_resolved.path is not None and (base_resolved.path / "config.json").is_file():
            _check_family(base_resolved.path)
        return ResolvedModel(name, base_resolved.path, adapter_path=path)
    _check_family(path)
    return ResolvedModel(name, path)


def _check_family(path: Path) -> None:
    """A checkpoint folder must be of a known model family (its config.json model_type)."""
    try:
        family_of_checkpoint(path)
    except UnknownFamily as error:
        raise ModelNotAvailable(str(error)) from None


def availability() -> list[tuple[str, str, bool, str]]:
    """(name, description, available, where-or-why) for `obv-eval models`."""
    rows = []
    for entry in MODELS.values():
        if entry.api:
            ok = bool(os.environ.get("OPENAI_API_KEY"))
            rows.append(
                (entry.name, entry.description, ok, "OPENAI_API_KEY set" if ok else "OPENAI_API_KEY not set")
            )
            continue
        try:
            resolved = resolve_model(entry.name, build=False)
            where = "no model (computed from the data)" if entry.reference else ""
            where = where or (str(resolved.path) if resolved.path else "built on first use")
            rows.append((entry.name, entry.description, True, where))
        except ModelNotAvailable as error:
            rows.append((entry.name, entry.description, False, str(error)))
    return rows


def family_and_check(name: str) -> tuple[str, str]:
    """(family, what was done with it here) of a registry entry, for `obv-eval models`."""
    entry = MODELS[name]
    if entry.api:
        return "api", "api"
    if entry.family is None:
        return "-", "-"
    return entry.family, entry.checked
