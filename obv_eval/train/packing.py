"""Sequence packing without cross-sample attention, for Qwen2-VL's 3-D (M-RoPE) positions.

Samples are measured first (their exact token count), those over the budget are counted and set aside,
and the rest are bin-packed best-fit-decreasing into sequences of at most ``max_tokens`` tokens. A packed
row is fed with no attention mask and with position ids of shape (4, batch, length): row 0 restarts at 0
for every sample (transformers turns those restarts into a block-diagonal causal mask for sdpa/eager and
into variable-length kernels for FlashAttention-2), rows 1-3 are each sample's own M-RoPE positions from
the model's ``get_rope_index``. The vision tower already attends within each video only. So a packed row
computes exactly what the samples would compute one by one (tested), without padding.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from obv_eval.media import MediaError, VideoSettings, load_video
from obv_eval.train.data import IGNORE_INDEX, EncodedSample, TrainSample, encode_sample, planned_length

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Plan:
    """Every sample's fate: kept with its length, over the budget, or failed on its media."""

    kept: list[TrainSample] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)  # parallel to kept
    over_length: list[dict[str, Any]] = field(default_factory=list)  # {"sample": id, "tokens": n}
    media_failed: list[dict[str, Any]] = field(default_factory=list)  # {"sample": id, "video": p, "error": e}
    media_hashes: dict[str, str] = field(default_factory=dict)  # video path -> sha256 of the file
    max_tokens: int = 0

    def counts(self) -> dict[str, int]:
        return {
            "kept": len(self.kept),
            "over_length": len(self.over_length),
            "media_failed": len(self.media_failed),
            "tokens_kept": sum(self.lengths),
        }


def plan_samples(
    samples: Sequence[TrainSample],
    processor: Any,
    media_root: str | Path | None,
    video_settings: VideoSettings,
    max_tokens: int,
    progress: bool = True,
) -> Plan:
    """Measure every sample with the frames it will train on; nothing is dropped without a record."""
    plan = Plan(max_tokens=max_tokens)
    root = str(media_root) if media_root is not None else None
    for sample in tqdm(samples, desc="measuring samples", disable=not progress, unit="sample"):
        try:
            video = load_video(sample.video, video_settings, root=root)
        except MediaError as error:
            plan.media_failed.append({"sample": sample.sample_id, "video": sample.video, "error": str(error)})
            continue
        plan.media_hashes[sample.video] = video.content_hash
        length = planned_length(processor, sample, video)
        if length > max_tokens:
            plan.over_length.append({"sample": sample.sample_id, "tokens": length})
            continue
        plan.kept.append(sample)
        plan.lengths.append(length)
    if plan.over_length:
        log.warning(
            "%d of %d samples are longer than max_tokens=%d and are skipped (listed in obv_manifest.json); "
            "the longest has %d tokens",
            len(plan.over_length),
            len(samples),
            max_tokens,
            max(item["tokens"] for item in plan.over_length),
        )
    if plan.media_failed:
        log.warning(
            "%d samples skipped: their video could not be loaded (listed in obv_manifest.json)",
            len(plan.media_failed),
        )
    return plan


# ---------------------------------------------------------------------------------------------------
# Bin packing


def pack_lengths(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Best-fit-decreasing bins of sample indices, each summing to at most ``budget`` tokens.

    Deterministic: ties break by index, and each bin lists its indices in ascending order.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, bin number), kept sorted
    for index in order:
        length = lengths[index]
        if length > budget:
            raise ValueError(f"sample {index} has {length} tokens, over the budget of {budget}")
        slot = bisect.bisect_left(free, (length, -1))  # the fullest bin that still fits
        if slot < len(free):
            left, number = free.pop(slot)
            bins[number].append(index)
        else:
            left, number = budget, len(bins)
            bins.append([index])
        bisect.insort(free, (left - length, number))
    return [sorted(b) for b in bins]


def singleton_packs(count: int) -> list[list[int]]:
    return [[i] for i in range(count)]


@dataclass(frozen=True)
class PackingStats:
    real_tokens: int
    processed_tokens: int  # rows x padded length, summed over device batches
    sequences: int  # packed rows (or single samples without packing)
    budget_tokens: int  # sequences x max_tokens

    @property
    def padding_efficiency(self) -> float:
        """Real tokens / tokens computed (padding is the waste)."""
        return self.real_tokens / self.processed_tokens if self.processed_tokens else 0.0

    @property
    def fill(self) -> float:
        """Real tokens / (rows x budget): how full each sequence is, i.e. the steps it saves."""
        return self.real_tokens / self.budget_tokens if self.budget_tokens else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "real_tokens": self.real_tokens,
            "processed_tokens": self.processed_tokens,
            "sequences": self.sequences,
            "padding_efficiency": round(self.padding_efficiency, 6),
            "fill": round(self.fill, 6),
        }


def packing_stats(
    packs: Sequence[Sequence[int]], lengths: Sequence[int], budget: int, batch_size: int = 1
) -> PackingStats:
    """Efficiency of ``packs`` in order, ``batch_size`` rows per device step, padded to the longest."""
    row_lengths = [sum(lengths[i] for i in pack) for pack in packs]
    processed = 0
    for start in range(0, len(row_lengths), batch_size):
        batch = row_lengths[start : start + batch_size]
        processed += len(batch) * max(batch)
    return PackingStats(sum(row_lengths), processed, len(packs), len(packs) * budget)


# ---------------------------------------------------------------------------------------------------
# Dataset and collator


class PackedDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Item i is pack i: its samples' tokens, labels and videos concatenated into one row."""

    def __init__(
        self,
        plan: Plan,
        packs: list[list[int]],
        processor: Any,
        media_root: str | Path | None,
        video_settings: VideoSettings,
    ) -> None:
        self.plan = plan
        self.packs = packs
        self.processor = processor
        self.media_root = str(media_root) if media_root is not None else None
        self.video_settings = video_settings

    def __len__(self) -> int:
        return len(self.packs)

    def encode(self, index: int) -> EncodedSample:
        sample = self.plan.kept[index]
        video = load_video(sample.video, self.video_settings, root=self.media_root)
        encoded = encode_sample(self.processor, sample, video)
        if encoded.length != self.plan.lengths[index]:
            # The plan decided what fits; a different length here would break the budget.
            raise RuntimeError(
                f"{sample.sample_id}: encoded to {encoded.length} tokens, measured {self.plan.lengths[index]}"
            )
        return encoded

    def __getitem__(self, index: int) -> dict[str, Any]:
        return concat_samples([self.encode(i) for i in self.packs[index]])


def concat_samples(samples: Sequence[EncodedSample]) -> dict[str, Any]:
    """One packed row (no batch dimension) and the lengths of the samples in it."""
    videos = [s.pixel_values_videos for s in samples if s.pixel_values_videos is not None]
    grids = [s.video_grid_thw for s in samples if s.video_grid_thw is not None]
    seconds = [s.second_per_grid_ts for s in samples if s.second_per_grid_ts is not None]
    return {
        "input_ids": torch.cat([s.input_ids for s in samples]),
        "labels": torch.cat([s.labels for s in samples]),
        "mm_token_type_ids": torch.cat([s.mm_token_type_ids for s in samples]),
        "pixel_values_videos": torch.cat(videos) if videos else None,
        "video_grid_thw": torch.cat(grids) if grids else None,
        "second_per_grid_ts": torch.cat(seconds) if seconds else None,
        "seq_lens": [s.length for s in samples],
    }


@dataclass
class PackCollator:
    """Pads packed rows to a batch. There is deliberately no attention_mask: the position ids carry the
    sample boundaries, and padding sits at the end of a row as its own segment, seen by no real token."""

    pad_token_id: int

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        width = max(int(row["input_ids"].shape[0]) for row in rows)
        segments = max(len(row["seq_lens"]) for row in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        token_types = torch.zeros((len(rows), width), dtype=torch.long)
        seq_lens = torch.zeros((len(rows), segments), dtype=torch.long)
        for r, row in enumerate(rows):
            n = int(row["input_ids"].shape[0])
            input_ids[r, :n] = row["input_ids"]
            labels[r, :n] = row["labels"]
            token_types[r, :n] = row["mm_token_type_ids"]
            seq_lens[r, : len(row["seq_lens"])] = torch.tensor(row["seq_lens"])
        batch: dict[str, Any] = {
            "input_ids": input_ids,
            "labels": labels,
            "mm_token_type_ids": token_types,
            "seq_lens": seq_lens,  # each row's sample lengths, zero-filled; the rest of a row is padding
            # A KV cache would switch off the packed-sequence mask in transformers: never build one here.
            "use_cache": False,
        }
        videos = [row["pixel_values_videos"] for row in rows if row["pixel_values_videos"] is not None]
        if videos:
            batch["pixel_values_videos"] = torch.cat(videos)
            batch["video_grid_thw"] = torch.cat(
                [row["video_grid_thw"] for row in rows if row["video_grid_thw"] is not None]
            )
        seconds = [row["second_per_grid_ts"] for row in rows if row.get("second_per_grid_ts") is not None]
        if seconds:  # absolute-time families: each video's seconds per frame pair
            batch["second_per_grid_ts"] = torch.cat(seconds)
        return batch


# ---------------------------------------------------------------------------------------------------
# Position ids


def rope_module(model: torch.nn.Module) -> Any:
    """The submodule that owns Qwen2-VL's ``get_rope_index`` (through PEFT, DDP or DeepSpeed wrappers)."""
    for module in model.modules():
        if callable(getattr(module, "get_rope_index", None)):
            return module
    raise TypeError(f"{type(model).__name__} has no get_rope_index: packing needs a Qwen2-VL model")


def _video_runs(token_types: torch.Tensor, kind: int) -> int:
    """How many separate visual items of ``kind`` (1 image, 2 video) a segment holds."""
    hits = token_types == kind
    if not bool(hits.any()):
        return 0
    starts = hits[1:] & ~hits[:-1]
    return int(starts.sum()) + int(hits[0])


def packed_position_ids(
    rope: Any,
    input_ids: torch.Tensor,
    mm_token_type_ids: torch.Tensor,
    seq_lens: torch.Tensor,
    video_grid_thw: torch.Tensor | None = None,
    image_grid_thw: torch.Tensor | None = None,
    second_per_grid_ts: torch.Tensor | None = None,
) -> torch.Tensor:
    """(4, batch, length) position ids: per-sample text positions, then per-sample M-RoPE positions.

    ``seq_lens`` (batch, segments) holds each row's sample lengths, zero-filled; what follows the last
    sample in a row is padding.
    """
    batch, width = input_ids.shape
    # Padding after the last sample is a segment of its own: positions restart there too.
    positions = torch.zeros((4, batch, width), dtype=torch.long, device=input_ids.device)
    grids = {1: image_grid_thw, 2: video_grid_thw}
    used = {1: 0, 2: 0}
    for r in range(batch):
        start = 0
        for length in seq_lens[r].tolist():
            if length == 0:
                continue
            end = start + length
            types = mm_token_type_ids[r, start:end]
            text = torch.arange(length, device=input_ids.device)
            positions[0, r, start:end] = text
            counts = {kind: _video_runs(types, kind) for kind in (1, 2)}
            if counts[1] or counts[2]:
                segment_grids: dict[int, torch.Tensor | None] = {}
                for kind in (1, 2):
                    source = grids[kind]
                    segment_grids[kind] = (
                        source[used[kind] : used[kind] + counts[kind]]
                        if counts[kind] and source is not None
                        else None
                    )
                    used[kind] += counts[kind]
                timing = {}
                if second_per_grid_ts is not None and counts[2]:  # absolute time: this segment's videos
                    first = used[2] - counts[2]
                    timing["second_per_grid_ts"] = second_per_grid_ts[first : used[2]]
                mrope, _ = rope.get_rope_index(
                    input_ids[r : r + 1, start:end],
                    mm_token_type_ids=types[None],
                    image_grid_thw=segment_grids[1],
                    video_grid_thw=segment_grids[2],
                    **timing,
                )
                positions[1:, r, start:end] = mrope[:, 0]
            else:
                positions[1:, r, start:end] = text
            start = end
        if start < width:
            positions[:, r, start:] = torch.arange(width - start, device=input_ids.device)
    return positions


def prepare_packed_inputs(model: torch.nn.Module, batch: dict[str, Any]) -> dict[str, Any]:
    """The collator's batch as the model's forward takes it: seq_lens turned into position ids."""
    inputs = dict(batch)
    seq_lens = inputs.pop("seq_lens")
    inputs["position_ids"] = packed_position_ids(
        rope_module(model),
        inputs["input_ids"],
        inputs["mm_token_type_ids"],
        seq_lens,
        video_grid_thw=inputs.get("video_grid_thw"),
        image_grid_thw=inputs.get("image_grid_thw"),
        second_per_grid_ts=inputs.get("second_per_grid_ts"),
    )
    return inputs
