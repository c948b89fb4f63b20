"""The real benchmark files (../shared/realdata) through the local-copy path, at full size.

They load with the published counts, every rendered prompt is complete, and (marked realdata_full,
a few minutes) a tiny-model run over each full set accounts for every item. Skipped with a reason
where the real-data folder is absent (a user's clone).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from task_utils import task_utils

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.sources import parse_data_source
from obv_eval.tasking import load_rows


@pytest.fixture(scope="module")
def real_copy(realdata: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local copy laid out as `--data DIR` expects, made of links to the release files as published."""
    root = tmp_path_factory.mktemp("real")
    links = {
        "vqarad/test.json": "vqarad/VQA_RAD Dataset Public.json",
        "media/vqarad": "vqarad/VQA_RAD Image Folder",
        "slake/test.json": "slake/test.json",
        "media/slake/imgs": "slake/imgs",
        "medqa/test.jsonl": "medqa/test.jsonl",
        "pubmedqa/test.json": "pubmedqa/ori_pqal.json",
        "surgeryvqa/test.jsonl": "surgeryvqa/surgeryvideoqa_processed.jsonl",
    }
    for link, target in links.items():
        (root / link).parent.mkdir(parents=True, exist_ok=True)
        (root / link).symlink_to(realdata / target)
    return root


def _rows(benchmark: str, root: Path) -> list[dict[str, Any]]:
    dataset = load_rows(BENCHMARKS[benchmark], parse_data_source(str(root)))
    utils = task_utils(benchmark)
    if hasattr(utils, "english_only"):
        dataset = utils.english_only(dataset)
    rows = [dict(row) for row in dataset]
    assert not [r for r in rows if r.get("_obv_error")], benchmark
    return rows


def test_vqarad_release_gives_451_test_items_272_closed(real_copy: Path) -> None:
    rows = _rows("vqarad", real_copy)
    task = task_utils("vqarad")._TASK
    kinds = Counter("closed" if task.is_closed(r) else "open" for r in rows)
    assert len(rows) == 451 and kinds == {"closed": 272, "open": 179}
    # The release's own label decides: "X or Y?" questions with a non-yes/no gold are closed.
    either_or = [r for r in rows if task.is_closed(r) and r["answer"].strip().lower() not in ("yes", "no")]
    assert len(either_or) == 21


def test_slake_english_gives_1061_items_416_closed(real_copy: Path) -> None:
    rows = _rows("slake", real_copy)
    assert len(rows) == 1061
    assert Counter(r["answer_type"] for r in rows) == {"CLOSED": 416, "OPEN": 645}
    assert len({r["img_name"] for r in rows}) == 96


def test_medqa_gives_1273_items_with_every_option_shown(real_copy: Path) -> None:
    rows = _rows("medqa", real_copy)
    utils = task_utils("medqa")
    assert len(rows) == 1273
    for row in rows:
        prompt = utils.doc_to_text(row)
        assert row["question"].strip() in prompt
        for letter, text in row["options"].items():
            assert f"{letter}. {str(text).strip()}" in prompt, (letter, text)


def test_pubmedqa_gives_the_official_500_with_every_context(real_copy: Path, realdata: Path) -> None:
    rows = _rows("pubmedqa", real_copy)
    truth = json.loads((realdata / "pubmedqa" / "test_ground_truth.json").read_text())
    assert len(rows) == 500 and {str(r["pubid"]) for r in rows} == set(truth)
    assert Counter(r["final_decision"] for r in rows) == {"yes": 276, "no": 169, "maybe": 55}
    assert all(r["final_decision"] == truth[str(r["pubid"])] for r in rows)
    utils = task_utils("pubmedqa")
    for row in rows:
        prompt = utils.doc_to_text(row)
        contexts = row["context"]["contexts"]
        assert contexts and all(c in prompt for c in contexts)
        assert row["question"].strip() in prompt
    assert len(_rows("pubmedqa_all", real_copy)) == 1000


def test_surgeryvqa_rows_load_with_210_video_clusters(real_copy: Path) -> None:
    rows = _rows("surgeryvqa", real_copy)
    assert len(rows) == 470
    assert len({r["video_id"] for r in rows}) == 210
    assert all(isinstance(r["timestamp"][0], float) for r in rows)
    assert all(r["question"].strip() == task_utils("surgeryvqa").doc_to_text(r).strip() for r in rows)


@pytest.mark.parametrize("benchmark", ["vqarad", "slake", "medqa", "pubmedqa", "surgeryvqa"])
def test_no_character_is_lost_on_the_way_to_the_tokenizer(
    benchmark: str, real_copy: Path, tiny_model_path: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_path)
    utils = task_utils(benchmark)
    prompts = [utils.doc_to_text(row) for row in _rows(benchmark, real_copy)]
    ids = tokenizer(prompts)["input_ids"]
    for prompt, encoded in zip(prompts, ids, strict=True):
        assert tokenizer.decode(encoded) == prompt


@pytest.mark.realdata_full
def test_a_tiny_model_run_over_every_full_set_accounts_for_every_item(
    real_copy: Path, tmp_path: Path
) -> None:
    from obv_eval.cli import main

    expected = {"vqarad": 451, "slake": 1061, "medqa": 1273, "pubmedqa": 500, "surgeryvqa": 470}
    code = main(
        ["--model", "tiny-qwen2vl", "--data", str(real_copy), "--tasks", *expected, "--max-new-tokens", "2",
         "--batch-size", "16", "--output-dir", str(tmp_path), "--run-id", "real", "--no-progress"]
    )  # fmt: skip
    run = tmp_path / "tiny-qwen2vl" / "real"
    results = json.loads((run / "results.json").read_text())
    for name, n in expected.items():
        task = results["tasks"][name]
        assert task["n"] == n, name
        assert task["scored"] + task["unscored"] == n, name
    # No SurgeryVideoQA clip is here (YouTube): every item fails alone, with its reason, and counts.
    assert results["tasks"]["surgeryvqa"]["failed"] == 470
    assert results["tasks"]["medqa"]["failed"] == 0 and results["tasks"]["pubmedqa"]["failed"] == 0
    assert "macro_f1" in results["tasks"]["pubmedqa"]["metrics"]
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert Counter(r["task"] for r in records) == expected
    assert code in (0, 1)  # 1: the failed-items budget (all SurgeryVideoQA clips are missing)
