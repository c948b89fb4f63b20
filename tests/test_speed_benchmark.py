"""benchmarks/speed_vs_reference.py does not rot: on a tiny generated input its reference loop and its
obv-eval side give identical prompts and answers item by item, the obv-eval run writes a per-stage
profile, and the recorded-output double really replaces model compute."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
from task_utils import task_utils

from obv_eval import profiling

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speed_vs_reference.py"
HARNESS_STAGES = {"decode", "resize", "processor", "scoring", "writing"}


def load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("speed_vs_reference", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark()


def test_reference_prompt_text_is_the_tasks_own(bench: ModuleType, tmp_path: Path) -> None:
    """The reference writes the tasks' doc_to_text out (it must not import lmms-eval): same text."""
    shapes = {
        "surgeryvqa": bench.Shape("surgeryvqa", 2, 3, 2, 1, 56, 28),
        "mimicechoqa": bench.Shape("mimicechoqa", 2, 4, 1, 4, 56, 28),
    }
    for task, shape in shapes.items():
        bench.WRITERS[task](tmp_path, shape)
        rows = [json.loads(line) for line in (tmp_path / task / "test.jsonl").read_text().splitlines()]
        assert len(rows) == shape.clips * shape.questions
        texts = [bench.question_text(task, row) for row in rows]
        assert texts == [task_utils(task).doc_to_text(row) for row in rows]
    echo = [json.loads(line) for line in (tmp_path / "mimicechoqa" / "test.jsonl").read_text().splitlines()]
    assert {bench.question_text("mimicechoqa", row).splitlines()[-1] for row in echo} == {
        "Choose Yes or No.",
        "Choose A, B, C, or D.",
    }


def test_generated_clips_move_and_are_not_flat(bench: ModuleType) -> None:
    frames = bench.surgery_frames(3, 84, 56, seed=1)
    assert frames.shape == (3, 56, 84, 3)
    assert frames.std() > 20  # structure, not a flat colour
    assert (frames[1].astype(int) - frames[0]).__abs__().mean() > 5  # consecutive frames differ
    echo = bench.echo_frames(2, 64, 48, fps=30, seed=1)
    assert echo[0].std() > 5 and not (echo[0] == echo[1]).all()


def test_reference_and_obv_eval_agree_and_obv_eval_profiles(
    bench: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    # 2 clips x 2 questions, 4 s; small frames (the sampler scales them up to Qwen2-VL's minimum).
    bench.write_surgery(data, bench.Shape("surgeryvqa", 2, 2, 4, 1, 112, 84))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets-cache"))

    reference_out = tmp_path / "reference.json"
    bench.reference_main(data, "surgeryvqa", reference_out, max_new_tokens=4)
    reference = json.loads(reference_out.read_text())
    assert reference["done"] >= reference["loaded"] and len(reference["answers"]) == 4

    profile, tokens = tmp_path / "profile.json", tmp_path / "tokens.json"
    monkeypatch.setenv(profiling.PROFILE_ENV, str(profile))
    try:
        code = bench.obv_main(data, "surgeryvqa", tmp_path / "obv", tmp_path / "marks.json", 4, record=tokens)
        assert code in (0, 1)  # 1: open-ended items left unjudged (no judge here)
        stages = json.loads(profile.read_text())
        monkeypatch.setenv(profiling.PROFILE_ENV, str(tmp_path / "profile-stub.json"))
        code = bench.obv_main(
            data, "surgeryvqa", tmp_path / "stub", tmp_path / "marks-stub.json", 4, replay=tokens
        )
        assert code in (0, 1)
        stub_stages = json.loads((tmp_path / "profile-stub.json").read_text())
    finally:
        profiling.enable(False)
        profiling.reset()

    obv = bench.obv_answers(tmp_path / "obv")
    same_answers, same_prompts, diffs = bench.compare(reference["answers"], obv)
    assert (same_answers, same_prompts, diffs) == (4, 4, [])
    marks = json.loads((tmp_path / "marks.json").read_text())
    assert marks["done"] >= marks["loaded"]

    assert set(stages) >= HARNESS_STAGES, stages
    assert all(entry["seconds"] >= 0 and entry["calls"] >= 1 for entry in stages.values())
    model_stages = set(stages) - set(stub_stages)  # whatever hf.py calls them: generate, prefill, ...
    assert model_stages, (stages, stub_stages)
    assert set(stub_stages) >= HARNESS_STAGES

    recorded = json.loads(tokens.read_text())
    assert sorted(recorded) == [f"obv_surgeryvqa:{i}" for i in range(4)]
    assert bench.compare(obv, bench.obv_answers(tmp_path / "stub"))[:2] == (4, 4)
