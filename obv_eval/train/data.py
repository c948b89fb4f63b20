"""OpenBiomedVid rows -> training samples -> token ids, labels and video tensors.

As in the study, every clip gives two samples: a caption sample (the video, one of 20 fixed "describe
the biomedical content" prompts, answered by the caption) and a multi-turn sample with all of the clip's
question/answer pairs. Both are rendered through obv_eval.conversation and the checkpoint's own chat
template, with frames from obv_eval.media, so training sees exactly what evaluation sends for the same
video settings. The loss covers the assistant turns only: each answer's tokens and its <|im_end|>.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from obv_eval.conversation import VisualKind, build_training_messages, render_prompt
from obv_eval.media import Video
from obv_eval.models import family_of_processor, family_processor_kwargs

IGNORE_INDEX = -100
DATASET_NAME = "openbiomedvid"
HUB_PATH = "connectthapa84/OpenBiomedVid"
HUB_SPLIT = "train"
REQUIRED_FIELDS = ("id", "video")

# The study's caption prompts (OpenBiomedVid, train/2_create_training_dataset.py), in its order. The study
# picked one at random per run; here the clip id picks one, so every run trains on the same text.
CAPTION_PROMPTS: tuple[str, ...] = (
    "Please describe the biomedical content shown in this video.",
    "What medical or clinical content can you observe in this video?",
    "Could you explain the medical aspects shown in this footage?",
    "Please provide a description of the medical content demonstrated in this video.",
    "What biomedical information is being presented in this video?",
    "Can you describe the medical content shown in this footage?",
    "Please explain what you observe in this medical video.",
    "What medical or clinical elements are demonstrated in this video?",
    "Could you describe the biomedical content presented here?",
    "Please detail the medical information shown in this video.",
    "What do you observe in this medical footage?",
    "Can you explain the biomedical content demonstrated here?",
    "Please describe what's being shown in this medical video.",
    "What medical content is being presented in this footage?",
    "Could you detail the biomedical aspects shown in this video?",
    "Please explain the medical elements demonstrated here.",
    "What clinical or medical content do you observe in this video?",
    "Can you describe the biomedical information shown in this footage?",
    "Please provide an explanation of the medical content in this video.",
    "What medical or clinical aspects are being demonstrated here?",
)

SampleKind = Literal["caption", "qa"]


def caption_prompt(clip_id: str) -> str:
    """The caption prompt for a clip: fixed by a hash of its id, the same on every machine."""
    digest = hashlib.sha256(clip_id.encode("utf-8")).digest()
    return CAPTION_PROMPTS[int.from_bytes(digest[:8], "big") % len(CAPTION_PROMPTS)]


@dataclass(frozen=True)
class TrainSample:
    sample_id: str  # "<clip id>:caption" or "<clip id>:qa"
    clip_id: str
    kind: SampleKind
    video: str  # path as the row names it, relative to the media root
    turns: tuple[tuple[str, str], ...]  # (question, answer) pairs; the video goes with the first

    @property
    def visual_kinds(self) -> tuple[VisualKind, ...]:
        return ("video",)


@dataclass
class SampleSet:
    """The samples built from the rows, and every row that gave none (with the reason)."""

    samples: list[TrainSample] = field(default_factory=list)
    invalid_rows: list[dict[str, str]] = field(default_factory=list)  # {"row": index or id, "reason": ...}
    clips: int = 0


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def _qa_pairs(value: Any) -> list[Any]:
    """The row's question/answer pairs; a CSV cell holds them as JSON text."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list(value) if isinstance(value, list | tuple) else []


def build_samples(rows: Iterable[dict[str, Any]]) -> SampleSet:
    """The study's two samples per clip; a row that cannot give any is listed with its reason."""
    result = SampleSet()
    for index, row in enumerate(rows):
        clip_id = _text(row.get("id"))
        missing = [name for name in REQUIRED_FIELDS if not _text(row.get(name))]
        if missing:
            result.invalid_rows.append(
                {"row": clip_id or str(index), "reason": f"missing {', '.join(missing)}"}
            )
            continue
        video = _text(row["video"])
        caption = _text(row.get("caption"))
        pairs = [
            (_text(pair.get("question")), _text(pair.get("answer")))
            for pair in _qa_pairs(row.get("qa_pairs"))
            if isinstance(pair, dict)
        ]
        pairs = [(q, a) for q, a in pairs if q and a]
        if not caption and not pairs:
            result.invalid_rows.append({"row": clip_id, "reason": "no caption and no question/answer pairs"})
            continue
        result.clips += 1
        if caption:
            turn = ((caption_prompt(clip_id), caption),)
            result.samples.append(TrainSample(f"{clip_id}:caption", clip_id, "caption", video, turn))
        if pairs:
            result.samples.append(TrainSample(f"{clip_id}:qa", clip_id, "qa", video, tuple(pairs)))
    return result


# ---------------------------------------------------------------------------------------------------
# Rows


def load_train_rows(
    data: str, video_root: str | None = None
) -> tuple[list[dict[str, Any]], Path | None, str]:
    """Rows of the training set, the folder their video paths resolve under, and a description.

    ``data``: ``hub`` (the hub dataset; videos need ``video_root``), ``samples`` (the bundled clips),
    a local copy ``DIR`` laid out like the benchmarks' (``DIR/openbiomedvid/train.jsonl`` and
    ``DIR/media/openbiomedvid/``), or a rows file (.jsonl, .json, .parquet, .csv).
    """
    from obv_eval.sources import ROW_FILE_FORMATS, local_rows_location, media_root, parse_data_source

    path = Path(data).expanduser()
    if path.is_file():
        if path.suffix not in ROW_FILE_FORMATS:
            raise ValueError(f"{path}: rows must be one of {', '.join(ROW_FILE_FORMATS)}")
        rows = _read_rows(ROW_FILE_FORMATS[path.suffix], path)
        root = Path(video_root).expanduser() if video_root else path.parent
        return rows, root, f"file:{path.resolve()}"
    source = parse_data_source(data, video_root=video_root)
    if source.kind == "hub":
        if source.video_root is None:
            # The hub rows name clips by file; the clips themselves are cut from YouTube videos.
            raise ValueError(
                "--data hub needs --video-root: the folder holding the clips the rows name "
                "(<video_id>_<start>_<end>.mp4, cut from the YouTube videos at `timestamp`)"
            )
        import datasets

        rows = [dict(row) for row in datasets.load_dataset(HUB_PATH, split=HUB_SPLIT)]
    else:
        builder, kwargs = local_rows_location(DATASET_NAME, HUB_SPLIT, source)
        if builder == "load_from_disk":
            import datasets

            rows = [dict(row) for row in datasets.load_from_disk(str(kwargs["dataset_path"]))]
        else:
            files = kwargs["data_files"]
            assert isinstance(files, dict)
            rows = _read_rows(builder, Path(files[HUB_SPLIT]))
    return rows, media_root(DATASET_NAME, "video", source), source.describe()


def _read_rows(builder: str, path: Path) -> list[dict[str, Any]]:
    # utf-8-sig and the benchmarks' CSV reader: a BOM written by spreadsheet tools is not a row's text.
    if builder == "json":
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix == ".json" and text.lstrip().startswith("["):
            return [dict(row) for row in json.loads(text)]
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    if builder == "csv":
        from obv_eval.sources import read_csv_rows

        return read_csv_rows(path)
    import datasets

    return [dict(row) for row in datasets.load_dataset(builder, data_files=str(path), split="train")]


# ---------------------------------------------------------------------------------------------------
# Encoding


@dataclass
class EncodedSample:
    """One sample as the model takes it (no batch dimension on the token tensors)."""

    sample_id: str
    input_ids: torch.Tensor  # (L,)
    labels: torch.Tensor  # (L,), IGNORE_INDEX outside assistant turns
    mm_token_type_ids: torch.Tensor  # (L,)
    pixel_values_videos: torch.Tensor | None  # (patches, dim)
    video_grid_thw: torch.Tensor | None  # (videos, 3)
    second_per_grid_ts: torch.Tensor | None = None  # (videos,): absolute-time families (Qwen2.5-VL)

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


def render_sample(processor: Any, sample: TrainSample) -> str:
    messages = build_training_messages(sample.turns, sample.visual_kinds)
    return render_prompt(processor, messages, add_generation_prompt=False)


def assistant_header_ids(tokenizer: Any) -> list[int]:
    """Token ids that open an assistant turn in the rendered conversation."""
    return list(tokenizer.encode("<|im_start|>assistant\n", add_special_tokens=False))


def assistant_labels(input_ids: Sequence[int], tokenizer: Any, expected_turns: int) -> list[int]:
    """Labels that keep the assistant turns' tokens (answer + <|im_end|>) and mask everything else.

    Raises ValueError when the number of assistant turns found differs from ``expected_turns``: an
    answer whose first token merged into the turn header would otherwise train on nothing, silently.
    """
    header = assistant_header_ids(tokenizer)
    end_id = int(tokenizer.convert_tokens_to_ids("<|im_end|>"))
    ids = list(input_ids)
    labels = [IGNORE_INDEX] * len(ids)
    found = 0
    position = 0
    while position <= len(ids) - len(header):
        if ids[position : position + len(header)] != header:
            position += 1
            continue
        start = position + len(header)
        try:
            end = ids.index(end_id, start)
        except ValueError:
            raise ValueError(
                "an assistant turn has no <|im_end|>; the chat template is not Qwen2-VL's"
            ) from None
        labels[start : end + 1] = ids[start : end + 1]
        found += 1
        position = end + 1
    if found != expected_turns:
        raise ValueError(
            f"found {found} assistant turns in the rendered conversation, expected {expected_turns}; "
            "the chat template or tokenizer splits the assistant header differently"
        )
    return labels


def planned_length(processor: Any, sample: TrainSample, video: Video) -> int:
    """The sample's token count, from its text and its frames' shape, without running the vision processor."""
    text = render_sample(processor, sample)
    text_ids = processor.tokenizer.encode(text, add_special_tokens=False)
    video_token = processor.tokenizer.convert_tokens_to_ids(processor.video_token)
    frames, height, width = video.frames.shape[:3]
    merge = processor.video_processor.merge_size
    patches = processor.video_processor.get_num_of_video_patches(frames, height, width, {})
    return len(text_ids) - text_ids.count(video_token) + patches // (merge * merge)


def encode_sample(processor: Any, sample: TrainSample, video: Video) -> EncodedSample:
    """Tokens, labels and video tensors for one sample, through the processor as evaluation calls it."""
    text = render_sample(processor, sample)
    # The same call as obv_eval.backends.hf: frames already sampled and sized by obv_eval.media, and
    # (absolute-time families) each clip's fps.
    timing = family_processor_kwargs(family_of_processor(processor), [video])
    inputs = processor(text=[text], videos=[video.frames], return_tensors="pt", **timing)
    input_ids = inputs["input_ids"][0]
    labels = assistant_labels(input_ids.tolist(), processor.tokenizer, expected_turns=len(sample.turns))
    return EncodedSample(
        sample_id=sample.sample_id,
        input_ids=input_ids,
        labels=torch.tensor(labels, dtype=input_ids.dtype),
        mm_token_type_ids=inputs["mm_token_type_ids"][0],
        pixel_values_videos=inputs.get("pixel_values_videos"),
        video_grid_thw=inputs.get("video_grid_thw"),
        second_per_grid_ts=inputs.get("second_per_grid_ts"),
    )
