from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from obv_eval import results as results_mod
from obv_eval.results import (
    SCHEMA_VERSION,
    ResultsError,
    build_results,
    cluster_key,
    dumps_results,
    index_records,
    paired_scores,
    read_results,
    read_samples,
    record_score,
    summarize_task,
    summarize_tasks,
    write_results,
)

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
BASE_RUN = FIXTURES / "qwen2vl-2b" / "fixture-base"
OBV_RUN = FIXTURES / "qwen2vl-2b-obv" / "fixture-obv"


def rec(
    doc_id: int, cluster: str | None, acc: float | None, status: str = "ok", **extra: Any
) -> dict[str, Any]:
    scores: dict[str, float | None] = {} if status == "failed" else {"accuracy": acc, "judge": acc}
    return {"task": "t", "doc_id": doc_id, "cluster": cluster, "status": status, "scores": scores, **extra}


def small_records() -> list[dict[str, Any]]:
    return [
        rec(0, "v1", 1.0, categories={"view": "A4C"}),
        rec(1, "v1", 0.0, categories={"view": "A4C"}),
        rec(2, "v2", 1.0, categories={"view": "PLAX"}, unparsed=True),
        rec(3, "v2", None, categories={"view": "PLAX"}),  # unscored: out of the denominator
        rec(4, "v3", None, status="failed", reason="MediaError: bad file", categories={"view": "A4C"}),
    ]


def test_record_score_rules() -> None:
    assert record_score({"status": "failed", "scores": {"accuracy": 1.0}}, "accuracy") == 0.0
    assert record_score({"status": "ok", "scores": {"accuracy": None}}, "accuracy") is None
    assert record_score({"status": "ok", "scores": {}}, "accuracy") is None
    assert record_score({"status": "ok", "scores": {"accuracy": True}}, "accuracy") == 1.0


def test_cluster_key_falls_back_to_the_item() -> None:
    assert cluster_key({"cluster": "vid9"}) == "vid9"
    a = cluster_key({"task": "t", "doc_id": 1, "cluster": None})
    b = cluster_key({"task": "t", "doc_id": 2})
    assert a != b


def test_summarize_task_counts_and_estimates() -> None:
    summary = summarize_task(small_records(), "accuracy")
    assert summary["n"] == 5
    assert summary["failed"] == 1
    assert summary["unparsed"] == 1
    assert (summary["scored"], summary["unscored"]) == (4, 1)
    assert summary["unscored_by_metric"] == {"accuracy": 1, "judge": 1}
    acc = summary["metrics"]["accuracy"]
    # scored values 1, 0, 1 and the failed item's 0 -> mean 0.5 over 4 items in clusters v1, v2, v3;
    # residuals +.5 -.5 | +.5 | -.5 -> sums 0, .5, -.5 -> 0.5 / 16 * 3/2 = 3/64
    assert acc["mean"] == 0.5
    assert (acc["n"], acc["n_clusters"]) == (4, 3)
    assert acc["se"] == pytest.approx(math.sqrt(3 / 64))
    assert set(summary["metrics"]) == {"accuracy", "judge"}
    a4c = summary["categories"]["view"]["A4C"]
    assert a4c["n"] == 3
    assert a4c["accuracy"]["mean"] == pytest.approx(1 / 3)  # 1, 0 and the failed item's 0
    plax = summary["categories"]["view"]["PLAX"]
    assert plax["n"] == 2
    assert plax["accuracy"]["mean"] == 1.0 and plax["accuracy"]["n"] == 1 and plax["accuracy"]["se"] is None


def test_primary_metric_present_when_every_item_failed() -> None:
    summary = summarize_task(
        [rec(0, "a", None, status="failed"), rec(1, "b", None, status="failed")], "judge"
    )
    assert summary["metrics"]["judge"]["mean"] == 0.0
    assert summary["failed"] == 2 and summary["scored"] == 2


def test_empty_task_summarises_to_nulls() -> None:
    summary = summarize_task([], "accuracy")
    assert summary["n"] == 0
    assert summary["metrics"]["accuracy"]["mean"] is None
    build_results("r", "m", {"t": summary}, {})  # still valid


def test_summarize_tasks_rejects_unknown_task() -> None:
    with pytest.raises(ResultsError, match="no primary metric"):
        summarize_tasks([rec(0, "a", 1.0)], {"other": "accuracy"})


def make_results() -> dict[str, Any]:
    tasks = {"t": summarize_task(small_records(), "accuracy")}
    tasks["t"]["fingerprints"] = {"prompt": "sha256:abc"}
    return build_results("run-1", "qwen2vl-2b", tasks, {"git_revision": "deadbeef", "seed": 0})


def test_round_trip_is_deterministic(tmp_path: Path) -> None:
    results = make_results()
    path = write_results(tmp_path / "a" / "results.json", results)
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n")
    assert text == dumps_results(results)
    assert json.loads(text) == results
    assert read_results(path) == results
    assert read_results(tmp_path / "a") == results  # a run directory works too
    write_results(tmp_path / "b.json", json.loads(text))
    assert (tmp_path / "b.json").read_bytes() == path.read_bytes()
    assert list(tmp_path.joinpath("a").iterdir()) == [path]  # no temporary file left behind


def test_write_refuses_invalid_results(tmp_path: Path) -> None:
    bad = make_results()
    bad["tasks"]["t"]["scored"] = 99
    with pytest.raises(ResultsError, match=r"tasks\.t: scored \+ unscored must equal n"):
        write_results(tmp_path / "r.json", bad)
    bad = make_results()
    bad["tasks"]["t"]["metrics"]["accuracy"]["mean"] = float("nan")
    with pytest.raises(ResultsError, match=r"metrics\.accuracy\.mean: expected a finite number"):
        write_results(tmp_path / "r.json", bad)
    bad = make_results()
    del bad["tasks"]["t"]["metrics"]["accuracy"]
    with pytest.raises(ResultsError, match="primary metric 'accuracy'"):
        write_results(tmp_path / "r.json", bad)
    assert not (tmp_path / "r.json").exists()


def test_read_refuses_other_schema_version(tmp_path: Path) -> None:
    data = make_results()
    data["schema_version"] = SCHEMA_VERSION + 1
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ResultsError) as err:
        read_results(path)
    message = str(err.value)
    assert "\n" not in message
    assert f"schema_version {SCHEMA_VERSION + 1} is not supported" in message
    assert str(path) in message


def test_read_refuses_non_results_files(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text('{"tasks": {}}', encoding="utf-8")
    with pytest.raises(ResultsError, match="not an obv-eval results file"):
        read_results(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{", encoding="utf-8")
    with pytest.raises(ResultsError, match="not valid JSON"):
        read_results(tmp_path / "y.json")
    with pytest.raises(ResultsError, match="no such results file"):
        read_results(tmp_path / "missing.json")


def test_read_upgrades_a_known_older_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No older version exists yet; this exercises the upgrade path with a stand-in version 0.
    current = make_results()
    old = copy.deepcopy(current)
    old["schema_version"] = 0
    old["name"] = old.pop("model")
    monkeypatch.setitem(
        results_mod._UPGRADERS,
        0,
        lambda d: {**{k: v for k, v in d.items() if k != "name"}, "model": d["name"], "schema_version": 1},
    )
    path = tmp_path / "results.json"
    path.write_text(json.dumps(old), encoding="utf-8")
    assert read_results(path) == current


def test_read_samples(tmp_path: Path) -> None:
    records = read_samples(BASE_RUN)
    assert len(records) == 100
    assert records[0]["task"] == "mimicechoqa"
    (tmp_path / "samples.jsonl").write_text('{"task": "t", "doc_id": 0}\n\n{"task": \n', encoding="utf-8")
    with pytest.raises(ResultsError, match=r"samples\.jsonl:3: not valid JSON"):
        read_samples(tmp_path)
    with pytest.raises(ResultsError, match="no samples file"):
        read_samples(tmp_path / "nowhere")


def test_paired_scores_match_items_by_doc_id() -> None:
    base = [rec(2, "c", 1.0), rec(10, "c", 0.0), rec(1, "d", 1.0), rec(5, "e", None)]
    run = [
        {**rec(10, "c", 1.0), "doc_id": "10"},  # doc ids match as text
        rec(1, "d", 0.0),
        rec(5, "e", 1.0),  # unscored in base: dropped from the pairs
        rec(7, "f", 1.0),  # only in run
    ]
    a, b, clusters = paired_scores(base, run, "t", "accuracy")
    assert (a, b, clusters) == ([1.0, 0.0], [0.0, 1.0], ["d", "c"])


def test_duplicate_items_are_refused() -> None:
    with pytest.raises(ResultsError, match="duplicate item task=t doc_id=1"):
        index_records([rec(1, "a", 1.0), rec(1, "a", 0.0)])


@pytest.mark.parametrize("run_dir", [BASE_RUN, OBV_RUN])
def test_fixture_results_match_their_samples(run_dir: Path) -> None:
    """The committed fixtures stay in step with the code (regenerate with make_fixture_runs.py)."""
    results = read_results(run_dir)
    primary = {task: summary["primary_metric"] for task, summary in results["tasks"].items()}
    recomputed = summarize_tasks(read_samples(run_dir), primary)
    for task, summary in recomputed.items():
        stored = {k: v for k, v in results["tasks"][task].items() if k != "fingerprints"}
        assert stored == summary


def test_v1_results_are_read_and_name_the_wald_method(tmp_path: Path) -> None:
    data = json.loads((OBV_RUN / "results.json").read_text(encoding="utf-8"))
    data["schema_version"] = 1
    for task in data["tasks"].values():
        for estimate in task["metrics"].values():
            estimate.pop("method", None)
    (tmp_path / "results.json").write_text(json.dumps(data), encoding="utf-8")
    upgraded = read_results(tmp_path)
    assert upgraded["schema_version"] == SCHEMA_VERSION
    methods = {e["method"] for t in upgraded["tasks"].values() for e in t["metrics"].values()}
    assert methods == {"wald"}


def _vqa(doc: int, answer_type: str, accuracy: float | None) -> dict[str, Any]:
    scores: dict[str, float | None] = {"accuracy": accuracy, "token_f1": 0.5}
    return {
        "task": "vqarad",
        "doc_id": doc,
        "cluster": f"img{doc}",
        "status": "ok",
        "categories": {"answer_type": answer_type},
        "scores": scores,
    }


def test_unjudged_open_items_make_the_primary_metric_not_scored() -> None:
    records = [_vqa(i, "closed", float(i % 2)) for i in range(4)] + [
        _vqa(i, "open", None) for i in range(4, 8)
    ]
    summary = summarize_task(records, "accuracy")
    assert summary["metrics"]["accuracy"]["mean"] is None and summary["metrics"]["accuracy"]["n"] == 0
    assert "accuracy" in summary["not_scored"] and "4 of 8" in summary["not_scored"]["accuracy"]
    closed = summary["metrics"]["accuracy_closed"]
    assert closed["mean"] == pytest.approx(0.5) and closed["n"] == 4
    # one verdict among the open items: the primary metric is scored again (partially, with counts)
    judged = [*records[:-1], _vqa(7, "open", 1.0)]
    again = summarize_task(judged, "accuracy")
    assert again["not_scored"] == {} and again["metrics"]["accuracy"]["n"] == 5
    assert "accuracy_closed" not in again["metrics"]
