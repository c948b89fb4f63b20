"""Training settings: one dataclass, filled from a YAML file in configs/ and then from the command line.

The YAML keys are the field names below (``video`` and ``lora`` are nested mappings). Unknown keys are
refused, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from obv_eval.media import IMAGE_FACTOR, VIDEO_MAX_PIXELS, VideoSettings

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# The study's frames (released 1_process_videos.py): 1 fps, at most 420 frames, frames downscaled until
# the clip costs at most 16,384 visual tokens (tokens per frame = ceil(W/28) * ceil(H/28) / 2), never
# below 56 x 56 pixels. In obv_eval.media terms the per-frame budget is total_pixels / nframes * 2, so a
# clip costs at most total_pixels / 28^2 tokens.
STUDY_VISUAL_TOKENS = 16384
STUDY_TRAIN_VIDEO = VideoSettings(
    fps=1.0,
    min_frames=4,
    max_frames=420,
    min_pixels=2 * IMAGE_FACTOR * 2 * IMAGE_FACTOR,
    max_pixels=VIDEO_MAX_PIXELS,
    total_pixels=STUDY_VISUAL_TOKENS * IMAGE_FACTOR**2,
)

Method = Literal["full", "lora"]


@dataclass
class LoraSettings:
    r: int = 64
    alpha: int = 128
    dropout: float = 0.05
    # The language model's projections only; the vision tower's layers are named qkv/proj/fc1/fc2.
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )


@dataclass
class TrainConfig:
    # What to train and on what.
    model: str = "qwen2vl-2b"  # registry name or checkpoint folder
    method: Method = "full"
    freeze_vision: bool = False  # the study trains the vision tower too
    data: str = "hub"  # hub | samples | DIR (DIR/openbiomedvid/train.jsonl) | a .jsonl/.json/.parquet file
    video_root: str | None = None
    limit: int | None = None  # only the first N clips (smoke runs)
    output_dir: str | None = None  # default: checkpoint_dir()/<model>-obv
    work_dir: str | None = None  # Trainer checkpoints for --resume; default: <output_dir>.work
    # Contamination guard.
    benchmark_data: str | None = None  # where benchmark rows come from; default: the same as `data`
    overlap_level: Literal["clip", "video"] = "video"
    allow_overlap: bool = False
    # Optimisation (the study's values are in configs/study_full_ft.yaml).
    learning_rate: float = 1.0e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 8
    bf16: bool = True
    model_dtype: Literal["float32", "bfloat16"] = "float32"
    gradient_checkpointing: bool = True
    attn_implementation: str = "sdpa"
    seed: int = 42
    deepspeed: str | None = None  # a DeepSpeed JSON file, or "zero2" for the shipped one
    # Sequences.
    max_tokens: int = 16384  # token budget of one packed sequence; longer samples are skipped and counted
    packing: bool = True
    video: VideoSettings = field(default_factory=lambda: STUDY_TRAIN_VIDEO)
    lora: LoraSettings = field(default_factory=LoraSettings)
    # Bookkeeping.
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int = 2
    dataloader_num_workers: int = 0
    report_to: list[str] = field(default_factory=list)
    use_cpu: bool = False
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        if self.method not in ("full", "lora"):
            raise ValueError(f"method must be 'full' or 'lora', got {self.method!r}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {self.max_tokens}")
        if self.packing and self.per_device_train_batch_size != 1:
            # With several rows, FlashAttention-2 cannot see the sample boundaries inside a row.
            raise ValueError(
                "packing needs per_device_train_batch_size 1 (one packed sequence per device step); "
                "raise gradient_accumulation_steps instead, or set packing: false"
            )
        if self.overlap_level not in ("clip", "video"):
            raise ValueError(f"overlap_level must be 'clip' or 'video', got {self.overlap_level!r}")


def _build(cls: type[Any], values: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
    return cls(**values)


def config_from_dict(values: dict[str, Any], where: str = "config") -> TrainConfig:
    values = dict(values)
    video = values.pop("video", None)
    lora = values.pop("lora", None)
    config: TrainConfig = _build(TrainConfig, values, where)
    if video is not None:
        defaults = dataclasses.asdict(STUDY_TRAIN_VIDEO)
        config.video = _build(VideoSettings, {**defaults, **video}, f"{where}: video")
    if lora is not None:
        config.lora = _build(LoraSettings, {**dataclasses.asdict(LoraSettings()), **lora}, f"{where}: lora")
    config.validate()
    return config


def resolve_config_path(name: str) -> Path:
    """A YAML path, or the name of a shipped config (``study_full_ft``, ``lora``, ``tiny_cpu``)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = CONFIG_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    choices = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"no config {name!r}: not a file, and not a shipped config ({choices})")


def load_config(name: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    path = resolve_config_path(name)
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    for key, value in (overrides or {}).items():
        _set_dotted(values, key, value)
    return config_from_dict(values, str(path))


def _set_dotted(values: dict[str, Any], key: str, value: Any) -> None:
    """`video.fps=2` style keys reach into the nested mappings."""
    parts = key.split(".")
    target = values
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def deepspeed_config_path(value: str | None) -> str | None:
    if value is None:
        return None
    if value == "zero2":
        return str(CONFIG_DIR / "accelerate" / "ds_zero2.json")
    if not Path(value).is_file():
        raise FileNotFoundError(f"deepspeed config {value!r} not found (a JSON file, or 'zero2')")
    return value
