"""Chance and majority reference rows (issue 28): the exact expectations, computed by hand from the rows."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import run_obv_eval

from obv_eval.sources import SAMPLES_DIR

ASSETS = Path(__file__).resolve().parent.parent / "obv_eval" / "assets"

TASKS = ("mimicechoqa", "medqa", "pubmedqa", "vqarad")


def _rows(name: str) -> list[dict[str, Any]]:
    folder = SAMPLES_DIR / name
    jsonl = folder / "test.jsonl"
    if jsonl.exists():
        return [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    rows = json.loads((folder / "test.json").read_text())
    return list(rows.values()) if isinstance(rows, dict) else rows  # PubMedQA's release: keyed by pmid


def _yes_no(text: Any) -> bool:
    return str(text).strip().rstrip(".").lower() in ("yes", "no")


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("reference-runs")
    for model in ("chance", "majority"):
        run_obv_eval("--model", model, "--data", "samples", "--tasks", *TASKS, "--output-dir", str(out),
                 "--run-id", "ref", "--no-progress")  # fmt: skip
    return {m: json.loads((out / m / "ref" / "results.json").read_text()) for m in ("chance", "majority")}


def _accuracy(results: dict[str, Any], task: str, metric: str = "accuracy") -> float:
    return float(results["tasks"][task]["metrics"][metric]["mean"])


def test_chance_is_the_exact_expected_accuracy(reference_runs: dict[str, dict[str, Any]]) -> None:
    chance = reference_runs["chance"]
    assert chance["provenance"]["backend"]["backend"] == "reference"  # no model was loaded
    echo = [0.5 if _yes_no(r["answer"]) else 1 / sum(bool(r.get(f"option_{c}")) for c in "ABCD")
            for r in _rows("mimicechoqa")]  # fmt: skip
    assert _accuracy(chance, "mimicechoqa") == pytest.approx(sum(echo) / len(echo))
    medqa = [1 / len(r["options"]) for r in _rows("medqa")]
    assert _accuracy(chance, "medqa") == pytest.approx(sum(medqa) / len(medqa))
    assert _accuracy(chance, "pubmedqa") == pytest.approx(1 / 3)
    # VQA-RAD: closed yes/no items 1/2; open items (and closed ones with no answer set) not scored
    rows = _rows("vqarad")
    scored = [r for r in rows if r["answer_type"] == "CLOSED" and _yes_no(r["answer"])]
    assert _accuracy(chance, "vqarad", "accuracy_closed") == pytest.approx(0.5)
    assert chance["tasks"]["vqarad"]["unscored"] == len(rows) - len(scored) > 0


def _majority_share(labels: list[str]) -> tuple[int, int]:
    counts = Counter(labels)
    return max(counts.values()), len(labels)


def test_majority_is_the_share_of_the_most_frequent_gold_answer(
    reference_runs: dict[str, dict[str, Any]],
) -> None:
    majority = reference_runs["majority"]
    rows = _rows("mimicechoqa")  # yes/no items and lettered items are answered apart
    yes_no = _majority_share([r["answer"].lower() for r in rows if _yes_no(r["answer"])])
    lettered = _majority_share([r["correct_option"] for r in rows if not _yes_no(r["answer"])])
    assert _accuracy(majority, "mimicechoqa") == pytest.approx((yes_no[0] + lettered[0]) / len(rows))
    hits, n = _majority_share([r["answer_idx"] for r in _rows("medqa")])
    assert _accuracy(majority, "medqa") == pytest.approx(hits / n)
    # PubMedQA: the rows of its 500-item test split (the samples hold one training row too)
    test = {str(pmid) for pmid in json.loads((ASSETS / "pubmedqa_test_pmids.json").read_text())}
    rows = json.loads((SAMPLES_DIR / "pubmedqa" / "test.json").read_text())
    hits, n = _majority_share([row["final_decision"] for pmid, row in rows.items() if pmid in test])
    assert _accuracy(majority, "pubmedqa") == pytest.approx(hits / n)
