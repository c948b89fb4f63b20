"""Golden prompt snapshots: any change to a task's rendered prompt must come with a snapshot update.

Regenerate after an intended change with: OBV_EVAL_UPDATE_GOLDEN=1 pytest tests/test_prompt_snapshots.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from task_utils import task_utils

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.sources import media_refs, parse_data_source
from obv_eval.tasking import load_rows

GOLDEN = Path(__file__).parent / "golden" / "prompts"


def rendered_prompts(benchmark: str) -> list[dict[str, object]]:
    utils = task_utils(benchmark)
    rows = load_rows(BENCHMARKS[benchmark], parse_data_source("samples"))
    if hasattr(utils, "english_only"):
        rows = utils.english_only(rows)
    with media_refs():  # the files obv's backends load (lmms-eval's own models get PIL images)
        return [
            {"text": utils.doc_to_text(row), "visuals": [str(v) for v in utils.doc_to_visual(row)]}
            for row in rows
        ]


@pytest.mark.parametrize("benchmark", list(BENCHMARKS))
def test_prompts_match_snapshot(benchmark: str, samples_source: None) -> None:
    current = rendered_prompts(benchmark)
    for entry in current:  # visuals are shown relative to the samples folder, not this machine
        entry["visuals"] = [v.split("/tasks/samples/", 1)[-1] for v in entry["visuals"]]  # type: ignore[attr-defined]
    path = GOLDEN / f"{benchmark}.json"
    text = json.dumps(current, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("OBV_EVAL_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; create it with OBV_EVAL_UPDATE_GOLDEN=1"
    assert json.loads(path.read_text(encoding="utf-8")) == current, (
        f"{benchmark}: the rendered prompts changed; if intended, update with OBV_EVAL_UPDATE_GOLDEN=1"
    )


def test_mimicechoqa_shows_the_options_and_the_instruction(samples_source: None) -> None:
    # The study's released script never showed the options (FACTS.md defect 1).
    prompts = [entry["text"] for entry in rendered_prompts("mimicechoqa")]
    multiple = [p for p in prompts if isinstance(p, str) and p.endswith("Choose A, B, C, or D.")]
    yes_no = [p for p in prompts if isinstance(p, str) and p.endswith("Choose Yes or No.")]
    assert multiple and yes_no and len(multiple) + len(yes_no) == len(prompts)
    assert all("\nA. " in p and "\nD. " in p for p in multiple)
