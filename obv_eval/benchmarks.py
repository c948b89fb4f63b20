"""The seven benchmarks: names, sources, schemas and groups, in one place.

Task YAMLs under tasks/ hold the lmms-eval side (prompt functions, metrics); everything the CLI,
the data checks and the loaders need to know about a benchmark lives here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Modality = Literal["video", "image", "text"]
TASK_PREFIX = "obv_"


@dataclass(frozen=True)
class Benchmark:
    name: str  # short name used on the command line
    title: str
    modality: Modality
    hub_path: str
    hub_name: str | None
    split: str
    required_fields: tuple[str, ...]
    media_field: str | None  # the row field naming the video or image
    primary_metric: str
    hub_note: str = ""
    media_subdir: str = ""  # inside a local copy's media/<benchmark>/ (SLAKE's zip unpacks to imgs/)
    rows_from: str = ""  # another benchmark whose rows this one reads (a different selection of them)
    labels: tuple[str, ...] = ()  # a closed label set: macro-F1 over these labels is reported too

    @property
    def rows_name(self) -> str:
        """The folder of a local copy (and of the samples) that holds this benchmark's rows."""
        return self.rows_from or self.name

    @property
    def task(self) -> str:
        return f"{TASK_PREFIX}{self.name}"


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "mimicechoqa",
            "MIMICEchoQA",
            "video",
            "",  # not on the hub: the study's hub id has no public trace; PhysioNet publishes it
            None,
            "test",
            # correct_option is checked per item type: Yes/No items are scored by the answer text.
            ("video", "question", "answer", "study"),
            "video",
            "accuracy",
            "not on the Hugging Face hub: it is published on PhysioNet as MIMIC-IV-ECHO-Ext-MIMICEchoQA "
            "1.0.0 (credentialed access); download its MIMICEchoQA.json, make the clips with "
            "`obv-eval data prepare mimicechoqa` and pass --data DIR (docs/mimicechoqa.md)",
        ),
        Benchmark(
            "surgeryvqa",
            "SurgeryVideoQA",
            "video",
            "connectthapa84/SurgeryVideoQA",
            None,
            "test",
            ("id", "video_id", "video", "question", "answer"),
            "video",
            "accuracy",
            "clips are cut from YouTube videos at `timestamp` (obv-eval data prepare surgeryvqa)",
        ),
        Benchmark(
            "vqarad",
            "VQA-RAD",
            "image",
            "flaviagiammarino/vqa-rad",
            None,
            "test",
            ("image", "question", "answer"),
            "image",
            "accuracy",
        ),
        Benchmark(
            "pathvqa",
            "PathVQA",
            "image",
            "flaviagiammarino/path-vqa",
            None,
            "test",
            ("image", "question", "answer"),
            "image",
            "accuracy",
        ),
        Benchmark(
            "slake",
            "SLAKE",
            "image",
            "BoKelvin/SLAKE",
            None,
            "test",
            ("img_name", "question", "answer", "answer_type", "q_lang"),
            "img_name",
            "accuracy",
            "images ship as a zip (imgs.zip) in the same hub repository: unzip it and set --image-root "
            "to the imgs/ folder",
            media_subdir="imgs",
        ),
        Benchmark(
            "medqa",
            "MedQA (USMLE, 4 options)",
            "text",
            "GBaker/MedQA-USMLE-4-options",
            None,
            "test",
            ("question", "options", "answer_idx"),
            None,
            "accuracy",
        ),
        Benchmark(
            "pubmedqa",
            "PubMedQA (PQA-L)",
            "text",
            "qiaojin/PubMedQA",
            "pqa_labeled",
            "train",
            ("pubid", "question", "context", "final_decision"),
            None,
            "accuracy",
            "the hub's pqa_labeled has the 1,000 labelled items in one 'train' split; the benchmark is the "
            "500 of them in the original release's test ground truth",
            labels=("yes", "no", "maybe"),
        ),
    )
}
# The same rows, prompt and scoring as pubmedqa, without the official test-split selection.
BENCHMARKS["pubmedqa_all"] = replace(
    BENCHMARKS["pubmedqa"],
    name="pubmedqa_all",
    title="PubMedQA (PQA-L, all 1,000 labelled items)",
    hub_note="every labelled item, not only the official test split (not comparable with the literature)",
    rows_from="pubmedqa",
)

GROUPS: dict[str, tuple[str, ...]] = {
    "video": ("mimicechoqa", "surgeryvqa"),
    "image": ("vqarad", "pathvqa", "slake"),
    "text": ("medqa", "pubmedqa"),
}
GROUPS["all"] = GROUPS["video"] + GROUPS["image"] + GROUPS["text"]


class UnknownTaskError(ValueError):
    pass


def benchmark_for_task(task_name: str) -> Benchmark:
    name = task_name.removeprefix(TASK_PREFIX)
    if name not in BENCHMARKS:
        raise UnknownTaskError(f"unknown task {task_name!r}")
    return BENCHMARKS[name]


def resolve_task_names(names: list[str]) -> list[str]:
    """Expand short names, prefixed names and groups into benchmark names, in order, without repeats."""
    out: list[str] = []
    for raw in names:
        for part in raw.split(","):
            name = part.strip().removeprefix(TASK_PREFIX)
            if not name:
                continue
            if name in GROUPS:
                expanded: tuple[str, ...] = GROUPS[name]
            elif name in BENCHMARKS:
                expanded = (name,)
            else:
                valid = ", ".join([*BENCHMARKS, *GROUPS])
                raise UnknownTaskError(f"unknown task {part.strip()!r}; valid: {valid}")
            out.extend(b for b in expanded if b not in out)
    if not out:
        raise UnknownTaskError("no task given; valid: " + ", ".join([*BENCHMARKS, *GROUPS]))
    return out
