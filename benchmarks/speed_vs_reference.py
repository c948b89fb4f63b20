"""obv-eval vs a faithful per-item reference loop, each in its own fresh process, on realistic items.

Data (written once, deterministically, into a temporary folder, in the layout `obv-eval --data DIR`
reads):

- SurgeryVideoQA-shaped: 1 fps, 840x476, 60 s clips, 6 questions per clip (surgeryvqa rows);
- MIMICEchoQA-shaped: 30 fps, 640x480, 3 s clips, 4 questions per clip (mimicechoqa rows, four-option
  and Yes/No items).

The clips are H.264 with moving structured content (a panned tissue-like texture with instruments and
sensor noise; an echo sector with evolving speckle and a beating chamber), not flat colour.

Sides, each a fresh Python process with cold caches (its own empty datasets cache and run folder):

- obv: `obv-eval --model tiny-qwen2vl --tasks TASK --data DIR --no-progress` through a small driver
  (`python benchmarks/speed_vs_reference.py obv ...`) that only adds timestamps (model loaded, done);
- reference: the study's script's loop (`... reference ...`): a plain AutoProcessor and a plain
  AutoModelForImageTextToText (no obv-eval cache or wrapper), per item every frame of the clip decoded
  with PyAV, the same frame sampling and resize rule as obv-eval (obv_eval.media's pure functions), the
  prompt rendered through obv_eval.conversation, batch 1, model.generate with the same greedy settings,
  answers written out.

Runs alternate (reference, obv, reference, obv, ...); every run's whole-process wall time and its
generation phase (everything after the model is loaded) are printed, and the median ratio of each.
Answers and prompts must be identical item by item. Then, for obv-eval:

- a per-stage profile (OBV_EVAL_PROFILE): the stage names are read from the JSON it writes;
- the harness's own overhead per item: a run that records every item's generated token ids, then a run
  where HFBackend.compute_tokens returns the recorded ids without running the model.

    python benchmarks/speed_vs_reference.py                       # both shapes, 3 runs of each side
    python benchmarks/speed_vs_reference.py --tasks surgeryvqa --runs 5
    python benchmarks/speed_vs_reference.py --surgery-clips 1 --surgery-seconds 20 --runs 1   # quick

Defaults: 2 SurgeryVideoQA-shaped clips (12 items) and 2 MIMICEchoQA-shaped clips (8 items). On 2 CPU
cores shared with other work (load average 6-8) the default run took about 25 minutes, 18 of them
SurgeryVideoQA (a reference item costs about 10-12 s there); fewer clips or runs make it shorter.

Both sides decode with PyAV's frame/slice threading (`thread_type = "AUTO"`), as obv_eval.media does.

Target (issue 14): obv-eval >= 3x the reference on the SurgeryVideoQA-shaped items: each pair of runs
(reference i, obv-eval i) gives a ratio of whole-process wall times; the spread of the pairs is
printed, and the target is called met only when the median of at least three pairs meets it.
Identical answers are required. The exit code is 0 when answers are identical (the ratio is printed,
never tuned).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TARGET_RATIO = 3.0
BEFORE_LOAD = ("model_load",)  # profile stages that end before the "after model load" clock starts
MODEL = "tiny-qwen2vl"
HERE = Path(__file__).resolve()


# ---------------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Shape:
    task: str  # obv-eval's benchmark name
    clips: int
    questions: int  # per clip
    seconds: int
    fps: int
    width: int
    height: int

    def describe(self) -> str:
        return (
            f"{self.task}: {self.clips} clips x {self.questions} questions = {self.clips * self.questions} "
            f"items; {self.seconds} s at {self.fps} fps, {self.width}x{self.height}"
        )


SURGERY_QUESTIONS = (
    "Which instrument is used to grasp the tissue in this step?",
    "What anatomical structure is being dissected?",
    "What energy device is used here?",
    "Which organ is retracted to expose the operative field?",
    "What is the name of this surgical procedure?",
    "How is bleeding controlled in this step?",
    "What is divided after the clips are placed?",
    "Which approach is used: open or laparoscopic?",
)
SURGERY_ANSWERS = ("Grasper.", "Cystic duct.", "Monopolar hook.", "Liver.", "Cholecystectomy.", "Clips.")
ECHO_ITEMS: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    # question, options (empty: Yes/No), correct letter, structure
    (
        "How would you grade the left ventricular systolic function?",
        ("Normal", "Mildly reduced", "Moderately reduced", "Severely reduced"),
        "C",
        "Left Ventricle",
    ),
    ("Is there mitral regurgitation?", (), "A", "Mitral Valve"),
    ("What is the severity of aortic stenosis?", ("None", "Mild", "Moderate", "Severe"), "A", "Aortic Valve"),
    ("Is the right ventricle dilated?", (), "B", "Right Ventricle"),
    ("Which wall shows hypokinesis?", ("Inferior", "Anterior", "Lateral", "Septal"), "B", "Left Ventricle"),
    ("Is there a pericardial effusion?", (), "B", "Pericardium"),
)


def _smooth_noise(rng: Any, height: int, width: int, channels: int, scale: int) -> Any:
    """Low-frequency structure: seeded noise at 1/scale resolution, upsampled bicubically."""
    import numpy as np
    from PIL import Image

    small = rng.integers(0, 256, size=(height // scale + 2, width // scale + 2, channels), dtype=np.uint8)
    planes = [
        np.asarray(Image.fromarray(small[..., c]).resize((width, height), Image.Resampling.BICUBIC))
        for c in range(channels)
    ]
    return np.stack(planes, axis=-1).astype(np.float32)


def surgery_frames(count: int, width: int, height: int, seed: int) -> Any:
    """Frames 1 s apart of a laparoscopy-like scene: a panned reddish texture, two moving instrument
    shafts, a bright specular spot and sensor noise (every frame differs everywhere, as real video)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    pad = 160
    coarse = _smooth_noise(rng, height + 2 * pad, width + 2 * pad, 1, 24)[..., 0] / 255.0
    fine = _smooth_noise(rng, height + 2 * pad, width + 2 * pad, 1, 4)[..., 0] / 255.0
    tissue = 0.65 * coarse + 0.35 * fine
    palette = np.array([[120, 20, 25], [235, 150, 130]], dtype=np.float32)  # dark red .. pink
    texture = palette[0] + tissue[..., None] * (palette[1] - palette[0])
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    offset = np.array([pad, pad], dtype=np.float64)
    for index in range(count):
        offset = np.clip(offset + rng.normal(0, 18, size=2), 0, 2 * pad)  # camera drift
        oy, ox = int(offset[0]), int(offset[1])
        frame = texture[oy : oy + height, ox : ox + width].copy()
        for tool in range(2):  # grey shafts entering from the top corners, swinging over time
            angle = 0.6 + 0.35 * np.sin(0.21 * index + 2.1 * tool) + (1.9 if tool else 0.0)
            cx = (0.15 + 0.7 * tool) * width
            dist = np.abs((xx - cx) * np.cos(angle) - yy * np.sin(angle))
            frame[dist < 14 + 4 * tool] = (170 - 40 * tool, 170 - 40 * tool, 175 - 40 * tool)
        sy, sx = height * (0.5 + 0.3 * np.sin(0.13 * index)), width * (0.5 + 0.3 * np.cos(0.17 * index))
        frame += 90.0 * np.exp(-((yy - sy) ** 2 + (xx - sx) ** 2) / 600.0)[..., None]
        frame += rng.normal(0, 4, size=frame.shape).astype(np.float32)
        frames[index] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def echo_frames(count: int, width: int, height: int, fps: int, seed: int) -> Any:
    """An apical-view-like echo cine: a sector of evolving speckle with a chamber beating at 75 bpm."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    apex_x, apex_y = width / 2, 0.04 * height
    radius = np.hypot(xx - apex_x, yy - apex_y)
    angle = np.arctan2(xx - apex_x, yy - apex_y)
    sector = (np.abs(angle) < 0.75) & (radius < 0.94 * height)
    speckle = _smooth_noise(rng, height, width, 1, 3)[..., 0]
    frames = np.empty((count, height, width, 3), dtype=np.uint8)
    for index in range(count):
        phase = 2 * np.pi * 1.25 * index / fps
        speckle = 0.8 * speckle + 0.2 * _smooth_noise(rng, height, width, 1, 3)[..., 0]
        chamber_r = height * (0.15 + 0.04 * np.sin(phase))
        centre = np.hypot((xx - apex_x) / 0.75, yy - height * 0.55)
        chamber = centre < chamber_r
        wall = np.abs(centre - chamber_r - 0.025 * height) < 0.02 * height
        image = speckle * 0.55 * np.exp(-radius / (1.4 * height))
        image = np.where(chamber, image * 0.15, image)
        image = np.where(wall, np.minimum(image + 110, 255), image)
        image = np.where(sector, image, 0)
        grey = np.clip(image, 0, 255).astype(np.uint8)
        frames[index] = np.repeat(grey[..., None], 3, axis=-1)
    return frames


def encode_video(path: Path, frames: Any, fps: int) -> None:
    """H.264 (yuv420p) mp4 from RGB frames; one encoder thread so the bytes depend only on the frames."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    options = {"crf": "23", "preset": "veryfast", "threads": "1"} if codec == "libx264" else {"qscale": "4"}
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        assert isinstance(stream, av.video.stream.VideoStream)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for index, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_surgery(root: Path, shape: Shape) -> None:
    """DIR/surgeryvqa/test.jsonl and DIR/media/surgeryvqa/*.mp4, questions of a clip next to each other."""
    rows = []
    for clip in range(shape.clips):
        video_id = f"SyNtH{clip:03d}vid"
        start = 30 + 97 * clip
        name = f"{video_id}_{start}_{start + shape.seconds}.mp4"
        frames = surgery_frames(shape.seconds * shape.fps, shape.width, shape.height, seed=1000 + clip)
        encode_video(root / "media" / "surgeryvqa" / name, frames, shape.fps)
        for question in range(shape.questions):
            rows.append(
                {
                    "id": f"00000000-0000-4000-8000-{clip:06d}{question:06d}",
                    "video_id": video_id,
                    "video_url": f"https://www.youtube.com/watch?v={video_id}",
                    "video": name,
                    "timestamp": [start, start + shape.seconds],
                    "question": SURGERY_QUESTIONS[(clip + question) % len(SURGERY_QUESTIONS)],
                    "answer": SURGERY_ANSWERS[(clip * 3 + question) % len(SURGERY_ANSWERS)],
                    "video_metadata": {
                        "original": {
                            "duration": shape.seconds,
                            "fps": shape.fps,
                            "frame_count": shape.seconds * shape.fps,
                            "resolution": {"width": shape.width, "height": shape.height},
                        }
                    },
                }
            )
    _write_rows(root / "surgeryvqa" / "test.jsonl", rows)


def write_echo(root: Path, shape: Shape) -> None:
    """DIR/mimicechoqa/test.jsonl and DIR/media/mimicechoqa/mimic-iv-echo/..., a still per clip."""
    from PIL import Image

    rows: list[dict[str, Any]] = []
    for clip in range(shape.clips):
        patient, study = 10_100_000 + 7919 * clip, 90_000_000 + 104_729 * clip
        stem = f"mimic-iv-echo/0.1/files/p{str(patient)[:2]}/p{patient}/s{study}/{study}_{clip:04d}"
        frames = echo_frames(
            shape.seconds * shape.fps, shape.width, shape.height, shape.fps, seed=2000 + clip
        )
        media = root / "media" / "mimicechoqa"
        encode_video(media / f"{stem}.mp4", frames, shape.fps)
        Image.fromarray(frames[0]).save(media / f"{stem}.png")
        for question in range(shape.questions):
            text, options, letter, structure = ECHO_ITEMS[(clip + question) % len(ECHO_ITEMS)]
            choices = options or ("Yes", "No")
            rows.append(
                {
                    "messages_id": len(rows),
                    "video": f"{stem}.mp4",
                    "question": text,
                    "answer": choices["ABCD".index(letter)],
                    **{
                        f"option_{c}": (choices[i] if i < len(choices) else None)
                        for i, c in enumerate("ABCD")
                    },
                    "correct_option": letter,
                    "structure": structure,
                    "view": "A4C",
                    "report": "Synthetic report.",
                    "study": str(study),
                    "image": f"{stem}.png",
                }
            )
    _write_rows(root / "mimicechoqa" / "test.jsonl", rows)


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


WRITERS: dict[str, Callable[[Path, Shape], None]] = {"surgeryvqa": write_surgery, "mimicechoqa": write_echo}


# ---------------------------------------------------------------------------------------------------
# The reference: the study's per-item loop (runs in its own process)


def question_text(task: str, row: dict[str, Any]) -> str:
    """The task's question text (tasks/<task>/utils.py doc_to_text, written out: importing the task
    would import lmms-eval, which the reference script does not load)."""

    def field(name: str) -> str:
        value = row.get(name)
        return "" if value is None else str(value)

    if task == "surgeryvqa":
        return field("question")
    if task == "mimicechoqa":
        question = field("question").strip()
        if field("answer").strip().rstrip(".").lower() in ("yes", "no"):
            return f"{question}\nChoose Yes or No."
        lines = [f"{c}. {field(f'option_{c}').strip()}" for c in "ABCD" if field(f"option_{c}").strip()]
        return "\n".join([question, *lines, "Choose A, B, C, or D."])
    raise ValueError(f"no reference prompt for task {task!r}")


def reference_main(data: Path, task: str, out: Path, max_new_tokens: int) -> None:
    """One item at a time, everything redone per item, as the released evaluation script does."""
    import av
    import numpy as np
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

    from obv_eval.conversation import build_messages, render_prompt
    from obv_eval.media import VideoSettings, sample_frame_indices, video_frame_size
    from obv_eval.tiny_model import tiny_model_dir

    model_dir = tiny_model_dir()
    processor = AutoProcessor.from_pretrained(model_dir)
    if hasattr(processor.video_processor, "cap_pixels_per_frame"):
        # qwen-vl-utils' per-frame pixel cap, as obv-eval sets it (transformers' switch to its behaviour)
        processor.video_processor.cap_pixels_per_frame = True
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    loaded = time.time()
    tokenizer = processor.tokenizer
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = GenerationConfig(  # the harness's greedy settings, every field explicit
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        repetition_penalty=1.0,
        eos_token_id=end_of_turn,
        pad_token_id=tokenizer.pad_token_id,
        temperature=None,
        top_p=None,
        top_k=None,
    )
    settings = VideoSettings()  # qwen-vl-utils' defaults, as the study's script uses them
    rows = [json.loads(line) for line in (data / task / "test.jsonl").read_text().splitlines() if line]
    media = data / "media" / task
    answers = []
    clock = {"frames": 0.0, "processor": 0.0, "generate": 0.0}  # seconds, summed over items
    for doc_id, row in enumerate(rows):
        started = time.perf_counter()
        with av.open(str(media / row["video"])) as container:  # every frame decoded, for every item
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"  # the decoder threading obv-eval uses: a fair comparison
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            decoded = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(stream)])
        indices = sample_frame_indices(len(decoded), fps, settings)
        height, width = video_frame_size(decoded.shape[1], decoded.shape[2], len(indices), settings)
        video = np.stack(
            [
                decoded[i]
                if decoded[i].shape[:2] == (height, width)
                else np.asarray(Image.fromarray(decoded[i]).resize((width, height), Image.Resampling.BICUBIC))
                for i in indices
            ]
        )
        prompt = render_prompt(processor, build_messages(question_text(task, row), ["video"]))
        framed = time.perf_counter()
        inputs = processor(text=[prompt], videos=[video], return_tensors="pt")
        processed = time.perf_counter()
        with torch.inference_mode():
            generated = model.generate(**inputs, generation_config=config)
        clock["frames"] += framed - started
        clock["processor"] += processed - framed
        clock["generate"] += time.perf_counter() - processed
        tokens = generated[0, inputs["input_ids"].shape[1] :].tolist()
        if end_of_turn in tokens:
            tokens = tokens[: tokens.index(end_of_turn) + 1]
        text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
        answers.append({"doc_id": doc_id, "prompt": prompt, "prediction": text})
    stamps = {"answers": answers, "loaded": loaded, "done": time.time(), "stages": clock}
    out.write_text(json.dumps(stamps), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# The obv-eval side: the CLI in-process, with timestamps and (optionally) recorded model outputs


def obv_main(
    data: Path,
    task: str,
    out: Path,
    marks: Path,
    max_new_tokens: int = 32,
    record: Path | None = None,
    replay: Path | None = None,
) -> int:
    """`obv-eval --model tiny-qwen2vl --tasks TASK --data DATA --no-progress`, timestamps in `marks`.

    record: write every item's generated token ids by key; replay: return those ids from
    HFBackend.compute_tokens without running the model (the harness alone).
    """
    from contextlib import ExitStack
    from unittest import mock

    from obv_eval import profiling
    from obv_eval.backends.hf import HFBackend
    from obv_eval.cli import entry_point  # the `obv-eval` command's own entry

    stamps: dict[str, Any] = {}
    init = HFBackend.__init__

    def timed_init(self: HFBackend, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        stamps["loaded"] = time.time()

    recorded: dict[str, list[int]] = json.loads(replay.read_text()) if replay else {}

    def compute_tokens(
        self: HFBackend, keys: list[tuple[str, int]], run: Callable[[], list[list[int]]]
    ) -> list[list[int]]:
        if replay is not None:  # the model is never called: no vision tower, prefill or decoding
            return [recorded[f"{key[0]}:{key[1]}"] for key in keys]
        tokens = run()
        recorded.update({f"{key[0]}:{key[1]}": row for key, row in zip(keys, tokens, strict=True)})
        return tokens

    if os.environ.get(profiling.PROFILE_ENV):  # already on in a fresh process; in-process (tests) too
        profiling.reset()
        profiling.enable()
    argv = ["--model", MODEL, "--tasks", task, "--data", str(data), "--no-progress"]
    argv += ["--max-new-tokens", str(max_new_tokens)]  # the tasks' own budget unless changed
    with ExitStack() as patches:  # undone afterwards, so the driver can also run inside a test
        patches.enter_context(mock.patch.object(HFBackend, "__init__", timed_init))
        if record is not None or replay is not None:
            patches.enter_context(mock.patch.object(HFBackend, "compute_tokens", compute_tokens))
        code = entry_point([*argv, "--output-dir", str(out), "--run-id", "run"])
    stamps["done"] = time.time()
    if record is not None:
        record.write_text(json.dumps(recorded), encoding="utf-8")
    marks.write_text(json.dumps(stamps), encoding="utf-8")
    return code


def obv_answers(out: Path) -> list[dict[str, Any]]:
    samples = out / MODEL / "run" / "samples.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines() if line]
    return [{"doc_id": r["doc_id"], "prompt": r["prompt"], "prediction": r["prediction"]} for r in records]


# ---------------------------------------------------------------------------------------------------
# The parent: interleaved fresh processes


@dataclass
class Run:
    side: str
    wall_s: float
    generation_s: float  # after the model is loaded, to the end of writing
    answers: list[dict[str, Any]]
    stages: dict[str, float]  # the reference's own clock (obv-eval's profile is a run of its own)


def _fresh_env(work: Path, profile: Path | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OBV_EVAL_PROFILE")}
    env["HF_DATASETS_CACHE"] = str(work / "datasets-cache")  # cold: rows parsed again every run
    env.pop("OBV_EVAL_FRAME_CACHE", None)  # no on-disk frame cache
    if profile is not None:
        env["OBV_EVAL_PROFILE"] = str(profile)
    return env


def run_side(
    side: str,
    data: Path,
    task: str,
    work: Path,
    max_new_tokens: int,
    extra: Sequence[str] = (),
    profile: Path | None = None,
) -> Run:
    work.mkdir(parents=True)
    marks = work / "marks.json"
    command = [sys.executable, str(HERE), side, "--data", str(data), "--task", task]
    command += ["--max-new-tokens", str(max_new_tokens)]
    if side == "reference":
        command += ["--out", str(marks)]
    else:
        command += ["--out", str(work / "runs"), "--marks", str(marks), *extra]
    started = time.time()
    done = subprocess.run(command, env=_fresh_env(work, profile), capture_output=True, text=True)
    wall = time.time() - started
    if done.returncode not in (0, 1):  # obv-eval exits 1 when open-ended items are left unjudged
        raise RuntimeError(f"{side} run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    stamps = json.loads(marks.read_text())
    answers = stamps.pop("answers") if side == "reference" else obv_answers(work / "runs")
    return Run(side, wall, stamps["done"] - stamps["loaded"], answers, stamps.get("stages", {}))


def compare(reference: list[dict[str, Any]], obv: list[dict[str, Any]]) -> tuple[int, int, list[str]]:
    """(identical answers, identical prompts, the first few differences)."""
    by_id = {a["doc_id"]: a for a in obv}
    same_answer = same_prompt = 0
    diffs: list[str] = []
    for ref in reference:
        got = by_id.get(ref["doc_id"], {})
        same_answer += got.get("prediction") == ref["prediction"]
        same_prompt += got.get("prompt") == ref["prompt"]
        if got.get("prediction") != ref["prediction"] and len(diffs) < 3:
            diffs.append(
                f"doc {ref['doc_id']}: reference {ref['prediction']!r}, obv {got.get('prediction')!r}"
            )
    if len(obv) != len(reference):
        diffs.append(f"{len(reference)} reference answers, {len(obv)} obv-eval answers")
    return same_answer, same_prompt, diffs


def benchmark_task(shape: Shape, data: Path, work: Path, runs: int, max_new_tokens: int) -> dict[str, Any]:
    print(f"\n== {shape.describe()}", flush=True)
    items = shape.clips * shape.questions
    timed: dict[str, list[Run]] = {"reference": [], "obv": []}
    for repeat in range(runs):
        for side in ("reference", "obv"):
            result = run_side(side, data, shape.task, work / f"{side}-{repeat}", max_new_tokens)
            timed[side].append(result)
            print(
                f"  run {repeat + 1} {side:9s}: wall {result.wall_s:7.2f} s = start-up and model load "
                f"{result.wall_s - result.generation_s:6.2f} s + after model load "
                f"{result.generation_s:7.2f} s",
                flush=True,
            )
    checks = [compare(timed["reference"][0].answers, r.answers) for r in timed["obv"]]
    checks += [compare(timed["reference"][0].answers, r.answers) for r in timed["reference"][1:]]
    identical = all(a == items and p == items and not d for a, p, d in checks)
    for _, _, diffs in checks:
        for line in diffs:
            print(f"  DIFFERENT: {line}")

    def median(side: str, attribute: str) -> float:
        return statistics.median(getattr(r, attribute) for r in timed[side])

    wall_ratio = median("reference", "wall_s") / median("obv", "wall_s")
    pairs = [r.wall_s / o.wall_s for r, o in zip(timed["reference"], timed["obv"], strict=True)]
    pair_median = statistics.median(pairs)
    gen_ratio = median("reference", "generation_s") / median("obv", "generation_s")
    ref_wall, obv_wall = median("reference", "wall_s"), median("obv", "wall_s")
    ref_gen, obv_gen = median("reference", "generation_s"), median("obv", "generation_s")
    print(
        f"  median wall: reference {ref_wall:.2f} s, obv-eval {obv_wall:.2f} s -> {wall_ratio:.2f}x; "
        f"after model load: reference {ref_gen:.2f} s, obv-eval {obv_gen:.2f} s -> {gen_ratio:.2f}x"
    )
    print(
        f"  wall ratio per pair (reference i / obv-eval i): {', '.join(f'{p:.2f}x' for p in pairs)}; "
        f"median {pair_median:.2f}x, spread {min(pairs):.2f}x to {max(pairs):.2f}x"
    )
    print(
        f"  identical answers and prompts, item by item, every run: {'yes' if identical else 'NO'} "
        f"({items} items)"
    )

    per_item = {
        name: statistics.median(r.stages[name] for r in timed["reference"]) / items
        for name in timed["reference"][0].stages
    }
    print(
        "  reference per item (median run): "
        + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in per_item.items())
        + " (frames: decode every frame, sample, resize)"
    )

    # Profile and recorded outputs (one run), then the harness alone (model compute replaced by them).
    tokens = work / "recorded-tokens.json"
    profiled = run_side(
        "obv", data, shape.task, work / "obv-profile", max_new_tokens,
        ["--record", str(tokens)], profile=work / "profile.json",
    )  # fmt: skip
    stub = run_side(
        "obv", data, shape.task, work / "obv-stub", max_new_tokens,
        ["--replay", str(tokens)], profile=work / "profile-stub.json",
    )  # fmt: skip
    stub_same = compare(profiled.answers, stub.answers)[0] == items
    profile = json.loads((work / "profile.json").read_text())
    stub_profile = json.loads((work / "profile-stub.json").read_text())
    print(
        f"  obv-eval per-stage profile (one run; wall {profiled.wall_s:.2f} s, "
        f"after model load {profiled.generation_s:.2f} s):"
    )
    for name, entry in profile.items():
        print(f"    {name:14s} {entry['seconds']:8.3f} s  {int(entry['calls']):6d} calls")
    staged = sum(e["seconds"] for name, e in profile.items() if name not in BEFORE_LOAD)
    print(
        f"    {'(no stage)':14s} {profiled.generation_s - staged:8.3f} s  after model load, outside every "
        "stage (the media loader thread's stages overlap the model's, so this can be below 0)"
    )
    print(
        f"  harness alone (model compute replaced by the recorded token ids; answers identical: "
        f"{'yes' if stub_same else 'NO'}): wall {stub.wall_s:.2f} s, "
        f"after model load {stub.generation_s:.2f} s for {items} items = {stub.generation_s / items:.3f} s "
        f"per item (start-up before model load: {stub.wall_s - stub.generation_s:.2f} s)"
    )
    return {
        "task": shape.task,
        "shape": shape.__dict__,
        "items": items,
        "runs": runs,
        "reference_wall_s": [round(r.wall_s, 2) for r in timed["reference"]],
        "obv_wall_s": [round(r.wall_s, 2) for r in timed["obv"]],
        "reference_after_load_s": [round(r.generation_s, 2) for r in timed["reference"]],
        "obv_after_load_s": [round(r.generation_s, 2) for r in timed["obv"]],
        "median_wall_ratio": round(wall_ratio, 2),
        "pair_wall_ratios": [round(p, 2) for p in pairs],
        "median_pair_ratio": round(pair_median, 2),
        "median_after_load_ratio": round(gen_ratio, 2),
        "reference_per_item_s": {name: round(seconds, 3) for name, seconds in per_item.items()},
        "identical": identical,
        "profile_s": {name: round(entry["seconds"], 3) for name, entry in profile.items()},
        "stub_profile_s": {name: round(entry["seconds"], 3) for name, entry in stub_profile.items()},
        "harness_s_per_item": round(stub.generation_s / items, 4),
        "stub_answers_identical": stub_same,
    }


def code_state() -> dict[str, Any]:
    """The commit measured and whether the backend's files differed from it (work in progress)."""
    root = HERE.parents[1]

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    backend = ["obv_eval/backends/hf.py", "obv_eval/backends/base.py", "obv_eval/backends/streaming.py"]
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "uncommitted": git("diff", "--name-only", "HEAD", "--", *backend).split(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("reference", "obv"):
        return _child(argv)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=["surgeryvqa", "mimicechoqa"], choices=sorted(WRITERS))
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side, interleaved")
    parser.add_argument("--surgery-clips", type=int, default=2)
    parser.add_argument("--surgery-questions", type=int, default=6)
    parser.add_argument("--surgery-seconds", type=int, default=60)
    parser.add_argument("--echo-clips", type=int, default=2)
    parser.add_argument("--echo-questions", type=int, default=4)
    parser.add_argument("--echo-seconds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=32, help="the tasks' own budget (their YAML)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    shapes = {
        "surgeryvqa": Shape(
            "surgeryvqa", args.surgery_clips, args.surgery_questions, args.surgery_seconds, 1, 840, 476
        ),
        "mimicechoqa": Shape(
            "mimicechoqa", args.echo_clips, args.echo_questions, args.echo_seconds, 30, 640, 480
        ),
    }
    import torch

    print(f"torch threads {torch.get_num_threads()}, CPUs {os.cpu_count()}, {args.runs} runs of each side")
    code_before = code_state()
    results = []
    with tempfile.TemporaryDirectory(prefix="obv-speed-") as tmp:
        data = Path(tmp) / "data"
        for task in args.tasks:
            started = time.time()
            WRITERS[task](data, shapes[task])
            print(f"wrote {shapes[task].describe()} in {time.time() - started:.1f} s")
        for task in args.tasks:
            results.append(
                benchmark_task(shapes[task], data, Path(tmp) / task, args.runs, args.max_new_tokens)
            )
    code = code_state()
    if code != code_before:
        code["changed_during_run"] = code_before
    print(f"measured code: {code}")
    results = [{**result, "code": code} for result in results]
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    for result in results:
        if result["task"] == "surgeryvqa":
            pairs, ratio = result["pair_wall_ratios"], result["median_pair_ratio"]
            if len(pairs) < 3:
                verdict = f"not judged against the {TARGET_RATIO:g}x target ({len(pairs)} pair(s); 3 needed)"
            elif ratio >= TARGET_RATIO:
                verdict = f"meets the {TARGET_RATIO:g}x target (median of {len(pairs)} pairs)"
            else:
                verdict = f"below the {TARGET_RATIO:g}x target (median of {len(pairs)} pairs)"
            print(f"surgeryvqa: {ratio:.2f}x (pairs {min(pairs):.2f}x to {max(pairs):.2f}x), {verdict}")
    return 0 if all(r["identical"] and r["stub_answers_identical"] for r in results) else 1


def _child(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"speed_vs_reference.py {argv[0]}")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--marks", type=Path)
    parser.add_argument("--record", type=Path)
    parser.add_argument("--replay", type=Path)
    args = parser.parse_args(argv[1:])
    if argv[0] == "reference":
        reference_main(args.data, args.task, args.out, args.max_new_tokens)
        return 0
    return obv_main(args.data, args.task, args.out, args.marks, args.max_new_tokens, args.record, args.replay)


if __name__ == "__main__":
    sys.exit(main())
