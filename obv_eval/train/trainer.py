"""Supervised fine-tuning of Qwen2-VL on OpenBiomedVid with the transformers Trainer.

Multi-GPU and DeepSpeed come from accelerate (`accelerate launch ... -m obv_eval.train.cli`), LoRA from
PEFT. The checkpoint folder is written whole at the end (weights or adapter, processor, chat template and
obv_manifest.json) and only then renamed into place, so the registry never finds half a checkpoint.
Trainer's own checkpoints, for --resume, go to a separate work folder.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from obv_eval.train.config import TrainConfig, deepspeed_config_path
from obv_eval.train.data import build_samples, load_train_rows
from obv_eval.train.manifest import data_fingerprint, package_versions, write_manifest
from obv_eval.train.packing import (
    PackCollator,
    PackedDataset,
    Plan,
    pack_lengths,
    packing_stats,
    plan_samples,
    prepare_packed_inputs,
    singleton_packs,
)

log = logging.getLogger("obv_eval.train")
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class OverlapError(Exception):
    """Training clips overlap a benchmark (or a benchmark could not be checked); see the message."""


class OutputExistsError(Exception):
    """The checkpoint folder already exists and --overwrite was not given."""


# Families obv-train's packing, position ids and frame rule are written and tested for.
TRAINABLE_FAMILIES = {"qwen2_vl": "Qwen2-VL", "qwen2_5_vl": "Qwen2.5-VL"}


@dataclass(frozen=True)
class BaseModel:
    name: str  # registry name, or the folder's name
    path: Path
    reference: str  # what an adapter's base_model_name_or_path should say: the registry name or the folder


def resolve_base_model(model: str) -> BaseModel:
    from obv_eval.registry import MODELS, resolve_model

    resolved = resolve_model(model)
    if resolved.path is None or resolved.api:
        raise ValueError(f"{model}: an API model cannot be fine-tuned here")
    if resolved.adapter_path is not None:
        raise ValueError(f"{model}: is a LoRA adapter; merge it first or train from its base model")
    from obv_eval.models import family_of_checkpoint

    family = family_of_checkpoint(resolved.path)
    if family.name not in TRAINABLE_FAMILIES:  # packing and positions are written for the Qwen2 families
        trainable = " and ".join(TRAINABLE_FAMILIES.values())
        raise ValueError(
            f"{model}: a {family.title} checkpoint; obv-train trains {trainable} (the study's recipe); "
            "obv-eval evaluates it"
        )
    reference = model if model in MODELS else str(resolved.path.resolve())
    return BaseModel(resolved.name, resolved.path, reference)


def default_output_dir(base: BaseModel) -> Path:
    """checkpoint_dir()/<base>-obv: where the registry looks for e.g. qwen2vl-2b-obv."""
    from obv_eval.registry import checkpoint_dir

    return checkpoint_dir() / f"{base.name}-obv"


class ObvTrainer(Trainer):
    """Trainer that turns packed batches into position ids and logs tokens/s and packing efficiency."""

    def __init__(self, *args: Any, max_tokens: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_tokens = max_tokens
        self._window = {"real": 0, "processed": 0, "rows": 0}
        self._window_start = time.perf_counter()

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> Any:
        if "seq_lens" in inputs:
            if model.training:
                seq_lens = inputs["seq_lens"]
                rows, width = inputs["input_ids"].shape
                self._window["processed"] += rows * width
                self._window["real"] += int(seq_lens.sum())
                self._window["rows"] += rows
            inputs = prepare_packed_inputs(model, inputs)
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._window["rows"]:
            elapsed = max(time.perf_counter() - self._window_start, 1e-9)
            window = self._window
            # Per process: with N processes the whole run moves about N times as many tokens.
            logs["tokens_per_second"] = round(window["real"] / elapsed, 1)
            logs["padding_efficiency"] = round(window["real"] / max(window["processed"], 1), 4)
            logs["pack_fill"] = round(window["real"] / (window["rows"] * self.max_tokens), 4)
            self._window = {"real": 0, "processed": 0, "rows": 0}
            self._window_start = time.perf_counter()
        super().log(logs, start_time)


def load_model(base: BaseModel, config: TrainConfig) -> Any:
    from transformers import AutoModelForImageTextToText

    model: Any = AutoModelForImageTextToText.from_pretrained(
        base.path, dtype=_DTYPES[config.model_dtype], attn_implementation=config.attn_implementation
    )
    model.config.use_cache = False
    if config.freeze_vision or config.method == "lora":
        for parameter in model.model.visual.parameters():
            parameter.requires_grad_(False)
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = config.lora
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, peft_config)
        # The registry resolves an adapter's base by this field: a registry name stays portable.
        model.peft_config["default"].base_model_name_or_path = base.reference
    return model


def training_arguments(config: TrainConfig, work_dir: Path) -> TrainingArguments:
    return TrainingArguments(
        output_dir=str(work_dir),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler_type,
        warmup_steps=config.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        bf16=config.bf16,
        activation_checkpointing=config.gradient_checkpointing,
        activation_checkpointing_kwargs={"use_reentrant": False} if config.gradient_checkpointing else None,
        seed=config.seed,
        data_seed=config.seed,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        remove_unused_columns=False,  # the collator's keys are the model's inputs
        dataloader_num_workers=config.dataloader_num_workers,
        report_to=config.report_to or "none",
        deepspeed=deepspeed_config_path(config.deepspeed),
        use_cpu=config.use_cpu,
        disable_tqdm=not config.progress,
        # "passive": every process keeps the verbosity obv-train set (transformers' default raises the
        # replicas to WARNING, and their library warnings would reach the terminal)
        log_level="passive",
        log_level_replica="passive",
        average_tokens_across_devices=True,
    )


@dataclass
class TrainResult:
    output_dir: Path
    manifest: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)


def train(
    config: TrainConfig,
    *,
    resume: str | bool | None = None,
    overwrite: bool = False,
    echo: Callable[[str], None] = print,
) -> TrainResult:
    """Check, measure, pack, train and write the checkpoint folder; returns where it went."""
    from transformers import AutoProcessor

    from obv_eval.data.overlap import check_overlap

    config.validate()
    base = resolve_base_model(config.model)
    output_dir = Path(config.output_dir).expanduser() if config.output_dir else default_output_dir(base)
    work_dir = (
        Path(config.work_dir).expanduser()
        if config.work_dir
        else output_dir.with_name(output_dir.name + ".work")
    )
    if output_dir.exists() and not overwrite:
        raise OutputExistsError(f"{output_dir} already exists; pass --overwrite or --output-dir DIR")
    if resume is True and not (work_dir.is_dir() and get_last_checkpoint(str(work_dir))):
        raise FileNotFoundError(f"--resume: no checkpoint-* folder in {work_dir} to resume from")
    args = training_arguments(config, work_dir)  # sets up the (distributed) accelerate state

    def say(line: str) -> None:
        if args.process_index == 0:
            echo(line)

    rows, media_root, data_description = load_train_rows(config.data, config.video_root)
    if config.limit is not None:
        rows = rows[: config.limit]
    sample_set = build_samples(rows)
    say(
        f"data {data_description}: {len(rows)} rows -> {sample_set.clips} clips, "
        f"{len(sample_set.samples)} samples"
        + (f" ({len(sample_set.invalid_rows)} rows unusable)" if sample_set.invalid_rows else "")
    )

    benchmark_data = config.benchmark_data or config.data
    overlap = check_overlap(rows, benchmark_data, level=config.overlap_level)
    say(overlap.summary())
    if not overlap.clean and not config.allow_overlap:
        raise OverlapError(
            "refusing to train: the training clips overlap a benchmark, or a benchmark could not be "
            "checked (see above); fix the split, point --benchmark-data at the benchmark rows, "
            "or pass --allow-overlap"
        )

    processor = AutoProcessor.from_pretrained(base.path)
    with args.main_process_first(desc="measuring samples"):
        plan = plan_samples(
            sample_set.samples, processor, media_root, config.video, config.max_tokens, config.progress
        )
    if not plan.kept:
        raise ValueError("no sample left to train on (all over the length limit or with unreadable media)")
    packs = (
        pack_lengths(plan.lengths, config.max_tokens) if config.packing else singleton_packs(len(plan.kept))
    )
    stats = packing_stats(packs, plan.lengths, config.max_tokens, config.per_device_train_batch_size)
    say(
        f"samples: {len(plan.kept)} kept, {len(plan.over_length)} over {config.max_tokens} tokens (skipped), "
        f"{len(plan.media_failed)} with unreadable video (skipped); {len(packs)} sequences, "
        f"fill {stats.fill:.1%}, padding efficiency {stats.padding_efficiency:.1%}"
    )

    model = load_model(base, config)
    dataset = PackedDataset(plan, packs, processor, media_root, config.video)
    trainer = ObvTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=PackCollator(pad_token_id=int(processor.tokenizer.pad_token_id)),
        processing_class=processor,
        max_tokens=config.max_tokens,
    )
    started = datetime.now(UTC)
    outcome = trainer.train(resume_from_checkpoint=resume or None)

    staging = output_dir.with_name(output_dir.name + ".partial")
    trainer.save_model(str(staging))  # every process takes part (DeepSpeed gathers); the main one writes
    manifest = _manifest(
        config, base, rows, sample_set, plan, packs, stats, overlap, outcome, trainer, started
    )
    if trainer.is_world_process_zero():
        processor.save_pretrained(staging)  # tokenizer, image/video processors and the chat template
        write_manifest(staging, manifest)
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
        say(f"wrote {output_dir}")
    trainer.accelerator.wait_for_everyone()
    return TrainResult(output_dir, manifest, list(trainer.state.log_history))


def _manifest(
    config: TrainConfig,
    base: BaseModel,
    rows: list[dict[str, Any]],
    sample_set: Any,
    plan: Plan,
    packs: list[list[int]],
    stats: Any,
    overlap: Any,
    outcome: Any,
    trainer: ObvTrainer,
    started: datetime,
) -> dict[str, Any]:
    kinds: dict[str, int] = {}
    for sample in plan.kept:
        kinds[sample.kind] = kinds.get(sample.kind, 0) + 1
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "base_model": {"name": base.name, "reference": base.reference, "path": str(base.path)},
        "method": config.method,
        "created": started.isoformat(timespec="seconds"),
        "versions": package_versions(),
        "config": config.to_dict(),
        "data": {
            "source": config.data,
            "fingerprint": data_fingerprint(rows, plan.media_hashes),
            "video_settings_fingerprint": config.video.fingerprint(),  # obv_eval.media's cache key
            "rows": len(rows),
            "clips": sample_set.clips,
            "invalid_rows": sample_set.invalid_rows,
            "samples": len(sample_set.samples),
            "samples_trained": len(plan.kept),
            "samples_by_kind": kinds,
            "tokens_trained": sum(plan.lengths),
            "over_length": {
                "count": len(plan.over_length),
                "max_tokens": plan.max_tokens,
                "items": plan.over_length,
            },
            "media_failed": {"count": len(plan.media_failed), "items": plan.media_failed},
        },
        "packing": {"enabled": config.packing, "max_tokens": config.max_tokens, **stats.to_dict()},
        "overlap": {"allowed": config.allow_overlap, **overlap.to_dict()},
        "training": {
            "global_steps": trainer.state.global_step,
            "epochs": trainer.state.epoch,
            "train_loss": outcome.training_loss,
            "first_logged_loss": losses[0] if losses else None,
            "last_logged_loss": losses[-1] if losses else None,
            "runtime_s": outcome.metrics.get("train_runtime"),
            "world_size": trainer.args.world_size,
        },
    }
