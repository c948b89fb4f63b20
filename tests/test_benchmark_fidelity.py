"""Benchmark fidelity: PubMedQA's official metrics, MIMICEchoQA's Yes/No items, VQA-RAD's release labels."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from sklearn.metrics import accuracy_score, f1_score
from task_utils import task_utils

from obv_eval.benchmarks import BENCHMARKS
from obv_eval.release_formats import pubmedqa_test_pmids
from obv_eval.results import summarize_task
from obv_eval.sources import parse_data_source
from obv_eval.tasking import load_rows


def _pubmedqa_records(golds: list[str], replies: list[str]) -> list[dict[str, Any]]:
    utils = task_utils("pubmedqa")
    records = []
    for number, (gold, reply) in enumerate(zip(golds, replies, strict=True)):
        doc = {"pubid": str(number), "question": "q?", "context": {"contexts": ["c"]}, "final_decision": gold}
        record = utils.process_results(doc, [reply])["accuracy"]
        records.append({**record, "task": "pubmedqa"})
    return records


def _official(golds: list[str], predictions: list[str]) -> tuple[float, float]:
    """PubMedQA's evaluation.py: accuracy_score and f1_score(average='macro') on the labels."""
    return accuracy_score(golds, predictions), f1_score(golds, predictions, average="macro")


def test_pubmedqa_accuracy_and_macro_f1_equal_the_official_script() -> None:
    rng = random.Random(7)
    labels = ["yes", "no", "maybe"]
    golds = [rng.choice(labels) for _ in range(300)]
    predictions = [g if rng.random() < 0.6 else rng.choice(labels) for g in golds]
    replies = [f"{p.capitalize()}." for p in predictions]
    summary = summarize_task(_pubmedqa_records(golds, replies), "accuracy")
    accuracy, macro_f1 = _official(golds, predictions)
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(accuracy, abs=1e-12)
    estimate = summary["metrics"]["macro_f1"]
    assert estimate["mean"] == pytest.approx(macro_f1, abs=1e-12)
    assert estimate["ci_low"] < estimate["mean"] < estimate["ci_high"]


def test_unparsed_replies_are_a_miss_for_their_class_in_macro_f1() -> None:
    golds = ["yes", "no", "maybe", "yes", "no", "yes"]
    replies = ["yes", "no", "maybe", "I cannot tell from this", "", "no"]
    summary = summarize_task(_pubmedqa_records(golds, replies), "accuracy")
    as_labels = ["yes", "no", "maybe", "unparsed", "unparsed", "no"]
    expected = f1_score(golds, as_labels, labels=["yes", "no", "maybe"], average="macro")
    assert summary["metrics"]["macro_f1"]["mean"] == pytest.approx(expected, abs=1e-12)
    assert summary["unparsed"] == 2


def test_pubmedqa_is_the_official_500_and_pubmedqa_all_keeps_every_row(samples_source: None) -> None:
    assert len(pubmedqa_test_pmids()) == 500
    test = load_rows(BENCHMARKS["pubmedqa"], parse_data_source("samples"))
    every = load_rows(BENCHMARKS["pubmedqa_all"], parse_data_source("samples"))
    assert len(every) == len(test) + 1  # the sample holds one labelled item outside the test split
    assert {str(p) for p in test["pubid"]} <= pubmedqa_test_pmids()


def test_a_copy_with_no_test_pmid_says_to_use_pubmedqa_all(tmp_path: Path) -> None:
    from obv_eval.sources import DataSourceError

    (tmp_path / "pubmedqa").mkdir()
    row = {"pubid": 1, "question": "q?", "context": {"contexts": ["c"]}, "final_decision": "yes"}
    (tmp_path / "pubmedqa" / "test.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataSourceError, match="pubmedqa_all"):
        load_rows(BENCHMARKS["pubmedqa"], parse_data_source(str(tmp_path)))
    assert len(load_rows(BENCHMARKS["pubmedqa_all"], parse_data_source(str(tmp_path)))) == 1


ECHO_ROW = {"video": "v.mp4", "question": "Is the left ventricle dilated?", "study": "s1", "messages_id": 1}


@pytest.mark.parametrize(
    "options",
    [
        {"option_A": "Yes", "option_B": "No", "option_C": None, "option_D": None},
        {"option_A": None, "option_B": None, "option_C": None, "option_D": None},
        {"option_A": "No", "option_B": "Yes", "option_C": "Unclear", "option_D": None},
    ],
    ids=["yes-no-options", "null-options", "other-options"],
)
@pytest.mark.parametrize(("answer", "reply", "correct"), [("Yes", "Yes.", 1.0), ("No", "yes", 0.0)])
def test_mimicechoqa_yes_no_items_are_decided_by_the_answer_text(
    options: dict[str, Any], answer: str, reply: str, correct: float
) -> None:
    utils = task_utils("mimicechoqa")
    letter = next((k[-1] for k, v in options.items() if v == answer), None)
    doc = {**ECHO_ROW, **options, "answer": answer, "correct_option": letter}
    assert utils.doc_to_text(doc).endswith("Choose Yes or No.")
    record = utils.process_results(doc, [reply])["accuracy"]
    assert record["status"] == "ok" and record["scores"]["accuracy"] == correct
    assert record["categories"]["question_type"] == "yes_no"


def test_mimicechoqa_multiple_choice_still_needs_its_letter() -> None:
    utils = task_utils("mimicechoqa")
    options = {"option_A": "Apical", "option_B": "Anterior", "option_C": "Septal", "option_D": "Lateral"}
    doc = {**ECHO_ROW, **options, "answer": "Anterior", "correct_option": None}
    record = utils.process_results(doc, ["B"])["accuracy"]
    assert record["status"] == "failed" and "not one of the options" in record["reason"]


def test_vqarad_uses_the_release_answer_type_and_strips_its_spaces() -> None:
    task = task_utils("vqarad")._TASK
    either_or = {"image": "x.jpg", "question": "Is this supratentorial or infratentorial?"}
    assert task.is_closed({**either_or, "answer": "supratentorial", "answer_type": "CLOSED "})
    assert not task.is_closed({**either_or, "answer": "yes", "answer_type": "OPEN"})
    # The hub copy has no answer_type: closed when the gold is yes/no.
    assert task.is_closed({"image": "x.jpg", "question": "q?", "answer": "Yes"})
    assert not task.is_closed({"image": "x.jpg", "question": "q?", "answer": "supratentorial"})
