from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from statsmodels.stats.multitest import multipletests

from obv_eval.regress import NEW, OK, RegressReport, compare
from obv_eval.results import paired_scores, read_results, read_samples, summarize_task
from obv_eval.stats import clustered_pvalue, paired_difference

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
BASE_RUN = FIXTURES / "qwen2vl-2b" / "fixture-base"
OBV_RUN = FIXTURES / "qwen2vl-2b-obv" / "fixture-obv"


@pytest.fixture()
def baseline() -> dict[str, Any]:
    return read_results(OBV_RUN)


def failing(report: RegressReport) -> list[tuple[str, str]]:
    return [(row.task, row.check) for row in report.failures]


def with_mean(results: dict[str, Any], task: str, metric: str, mean: float | None) -> dict[str, Any]:
    out = copy.deepcopy(results)
    out["tasks"][task]["metrics"][metric]["mean"] = mean
    return out


def test_identical_run_passes(baseline: dict[str, Any]) -> None:
    samples = read_samples(OBV_RUN)
    report = compare(baseline, copy.deepcopy(baseline), baseline_samples=samples, run_samples=samples)
    assert not report.failed and report.exit_code == 0
    assert {row.status for row in report.rows} == {OK}
    text = report.render()
    assert text.splitlines()[-1].startswith("OK: ")
    assert "mimicechoqa" in text and "fingerprint:prompt" in text


def test_injected_drop_fails(baseline: dict[str, Any]) -> None:
    mean = baseline["tasks"]["mimicechoqa"]["metrics"]["accuracy"]["mean"]
    report = compare(baseline, with_mean(baseline, "mimicechoqa", "accuracy", mean - 0.05), tolerance=0.02)
    assert report.failed and report.exit_code == 1
    assert failing(report) == [("mimicechoqa", "accuracy")]
    row = report.failures[0]
    assert row.delta == pytest.approx(-0.05) and row.limit == -0.02
    assert "REGRESSION: 1 of" in report.render()


def test_drop_of_exactly_the_tolerance_passes(baseline: dict[str, Any]) -> None:
    run = with_mean(baseline, "pubmedqa", "accuracy", 0.5)
    base = with_mean(baseline, "pubmedqa", "accuracy", 0.52)  # 0.5 - 0.52 is -0.020000000000000018
    assert not compare(base, run, tolerance=0.02).failed
    assert compare(base, with_mean(baseline, "pubmedqa", "accuracy", 0.4999), tolerance=0.02).failed


def test_tolerance_overrides(baseline: dict[str, Any]) -> None:
    mean = baseline["tasks"]["mimicechoqa"]["metrics"]["accuracy"]["mean"]
    run = with_mean(baseline, "mimicechoqa", "accuracy", mean - 0.05)
    assert not compare(baseline, run, overrides={"mimicechoqa/accuracy": 0.1}).failed
    assert not compare(baseline, run, overrides={"accuracy": 0.1}).failed
    # the task-specific key wins over the metric-wide one
    assert compare(baseline, run, overrides={"accuracy": 0.1, "mimicechoqa/accuracy": 0.01}).failed


def test_paired_interval_decides_with_samples() -> None:
    # The base model as the "run" against the fine-tuned baseline: mimicechoqa drops far beyond its paired
    # interval; pubmedqa drops by 0.10 but its paired interval includes 0; surgeryvqa's drops are not
    # significant once the one-sided p-values are Holm-adjusted over the gate's metric checks.
    report = compare(
        read_results(OBV_RUN),
        read_results(BASE_RUN),
        baseline_samples=read_samples(OBV_RUN),
        run_samples=read_samples(BASE_RUN),
    )
    assert failing(report) == [("mimicechoqa", "accuracy"), ("mimicechoqa", "exact_match")]
    pubmed = next(r for r in report.rows if (r.task, r.check) == ("pubmedqa", "accuracy"))
    assert pubmed.status == OK and pubmed.delta == pytest.approx(-0.1)
    assert pubmed.interval is not None and pubmed.interval[0] < 0 < pubmed.interval[1]
    assert "not beyond" in pubmed.detail
    # the adjusted p-values are Holm's, within each family, over the raw one-sided clustered p-values: the
    # primary family holds each task's primary metric, the secondary family every other metric
    primaries = {task: summary["primary_metric"] for task, summary in read_results(OBV_RUN)["tasks"].items()}
    for family in ("primary", "secondary"):
        metric_rows = [r for r in report.rows if r.pvalue is not None and r.family == family]
        assert metric_rows
        assert all((primaries[r.task] == r.check) == (family == "primary") for r in metric_rows)
        raw = []
        for row in metric_rows:
            a, b, clusters = paired_scores(read_samples(OBV_RUN), read_samples(BASE_RUN), row.task, row.check)
            raw.append(clustered_pvalue(paired_difference(a, b, clusters), alternative="less"))
        expected = multipletests(raw, method="holm")[1]
        assert [r.pvalue for r in metric_rows] == pytest.approx(list(expected))
    mimic = {r.check: r for r in report.failures}
    assert "primary family" in mimic["accuracy"].detail and "secondary family" in mimic["exact_match"].detail
    assert (
        "< 0.04, primary" in mimic["accuracy"].detail and "< 0.01, secondary" in mimic["exact_match"].detail
    )
    # without samples the point estimate decides
    assert ("pubmedqa", "accuracy") in failing(compare(read_results(OBV_RUN), read_results(BASE_RUN)))


def test_missing_items_fail(baseline: dict[str, Any]) -> None:
    samples = read_samples(OBV_RUN)
    fewer = [r for r in samples if not (r["task"] == "pubmedqa" and r["doc_id"] in (4, 9))]
    report = compare(baseline, copy.deepcopy(baseline), baseline_samples=samples, run_samples=fewer)
    assert failing(report) == [("pubmedqa", "items")]
    assert "2 baseline doc_ids missing: 4, 9" in report.failures[0].detail

    run = copy.deepcopy(baseline)
    run["tasks"]["pubmedqa"]["n"] -= 1
    assert failing(compare(baseline, run)) == [("pubmedqa", "n")]


def test_missing_task_and_metric_fail_new_ones_do_not(baseline: dict[str, Any]) -> None:
    run = copy.deepcopy(baseline)
    del run["tasks"]["surgeryvqa"]
    del run["tasks"]["pubmedqa"]["metrics"]["exact_match"]
    run["tasks"]["pubmedqa"]["metrics"]["brier"] = {"mean": 0.2}
    run["tasks"]["medqa"] = copy.deepcopy(run["tasks"]["pubmedqa"])
    report = compare(baseline, run)
    assert failing(report) == [("pubmedqa", "exact_match"), ("surgeryvqa", "task")]
    assert {(r.task, r.check) for r in report.rows if r.status == NEW} == {
        ("pubmedqa", "brier"),
        ("medqa", "task"),
    }


def test_changed_fingerprint_fails(baseline: dict[str, Any]) -> None:
    run = copy.deepcopy(baseline)
    run["tasks"]["surgeryvqa"]["fingerprints"]["prompt"] = "sha256:changed"
    del run["tasks"]["pubmedqa"]["fingerprints"]["task"]
    report = compare(baseline, run)
    assert failing(report) == [("pubmedqa", "fingerprint:task"), ("surgeryvqa", "fingerprint:prompt")]
    assert report.failures[0].detail == "absent in run"


def test_samples_for_one_side_only_is_a_usage_error(baseline: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="both"):
        compare(baseline, baseline, baseline_samples=read_samples(OBV_RUN))


def test_unscored_metric_in_run_fails(baseline: dict[str, Any]) -> None:
    run = with_mean(baseline, "surgeryvqa", "judge", None)
    assert failing(compare(baseline, run)) == [("surgeryvqa", "judge")]


def _vqa_records(closed_right: int, judged_open: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for i in range(100):
        closed = i < 50
        if closed:
            acc: float | None = 1.0 if i < closed_right else 0.0
        else:
            acc = (1.0 if i % 2 else 0.0) if i - 50 < judged_open else None
        scores = {"accuracy": acc, "token_f1": 0.5}
        if not closed:
            scores["judge"] = acc
        records.append(
            {"task": "vqarad", "doc_id": i, "cluster": f"img{i // 2}", "status": "ok", "scores": scores}
        )
    return records


def _results(records: list[dict[str, Any]], judge_model: str = "gpt-4o") -> dict[str, Any]:
    judge = {"configured": True, "settings": {"model": judge_model, "prompt_version": "v1"}}
    return {
        "run_id": "r",
        "model": "m",
        "tasks": {"vqarad": summarize_task(records, "accuracy")},
        "provenance": {"judge": judge},
    }


def test_population_mismatch_fails_the_gate() -> None:
    # the case: the judge scored 10 of 50 open items (baseline: 50 of 50) while closed accuracy
    # fell 40/50 -> 28/50; the unpaired means of the old gate hid it.
    base_records, run_records = _vqa_records(40, 50), _vqa_records(28, 10)
    report = compare(
        _results(base_records), _results(run_records), baseline_samples=base_records, run_samples=run_records
    )
    failed = failing(report)
    assert ("vqarad", "unscored") in failed and ("vqarad", "scored") in failed
    assert ("vqarad", "unscored:accuracy") in failed and ("vqarad", "unscored:judge") in failed
    assert ("vqarad", "accuracy") in failed  # paired on the 60 items scored in both
    row = next(r for r in report.rows if (r.task, r.check) == ("vqarad", "accuracy"))
    assert row.delta == pytest.approx(-12 / 60)
    # the same population and no drop passes; a count change within the tolerance passes
    assert not compare(
        _results(base_records),
        _results(base_records),
        baseline_samples=base_records,
        run_samples=base_records,
    ).failed
    one_less = _vqa_records(40, 49)
    report = compare(
        _results(base_records), _results(one_less), baseline_samples=base_records, run_samples=one_less
    )
    assert not report.failed
    assert next(r for r in report.rows if r.check == "unscored").run == 1


def test_judge_setting_change_fails_unless_allowed() -> None:
    records = _vqa_records(40, 50)
    base, run = _results(records), _results(records, judge_model="gpt-4o-mini")
    report = compare(base, run)
    assert failing(report) == [("*", "judge settings")]
    assert "gpt-4o-mini" in report.failures[0].detail
    assert not compare(base, run, allow_judge_change=True).failed


def _toy_records(run: bool, n: int = 100) -> list[dict[str, Any]]:
    """n independent items whose four metrics agree; between baseline and run items 0-9 are lost (1 -> 0)
    and items 10-12 gained (0 -> 1), the others unchanged."""
    records = []
    for i in range(n):
        score = float((i >= 10) == run) if i < 13 else float(i % 2)
        scores = dict.fromkeys(("accuracy", "exact_match", "token_f1", "answer_recall"), score)
        records.append({"task": "toy", "doc_id": i, "status": "ok", "scores": scores})
    return records


def test_primary_metric_is_its_own_family() -> None:
    # 10 items lost, 3 gained of 100 independent items: one-sided p = 0.026 (paired t, 99 df) for every
    # metric. In one Holm family of 4 checks at 0.05 nothing fails (4 p = 0.10); with the primary family at
    # 0.04 the primary metric fails, and the three other metrics (3 p = 0.078 against 0.01) pass.
    base, run = _toy_records(run=False), _toy_records(run=True)
    report = compare(
        {"tasks": {"toy": summarize_task(base, "accuracy")}},
        {"tasks": {"toy": summarize_task(run, "accuracy")}},
        baseline_samples=base,
        run_samples=run,
    )
    assert failing(report) == [("toy", "accuracy")]
    rows = {r.check: r for r in report.rows if r.pvalue is not None}
    a, b, clusters = paired_scores(base, run, "toy", "accuracy")
    raw = clustered_pvalue(paired_difference(a, b, clusters), alternative="less")
    assert 0.0125 < raw < 0.04 and rows["accuracy"].pvalue == pytest.approx(raw)
    assert {r.family for r in rows.values()} == {"primary", "secondary"}
    assert rows["token_f1"].pvalue == pytest.approx(3 * raw) and rows["token_f1"].status == OK
    # The printed p names the family it was adjusted in.
    text = report.render()
    assert f"{rows['accuracy'].pvalue:.3g} (primary)" in text
    assert f"{rows['token_f1'].pvalue:.3g} (secondary)" in text


def _unjudged_records(closed_right: int) -> list[dict[str, Any]]:
    """An image task without a judge: 60 closed items (accuracy scored) and 40 open ones (accuracy None),
    two questions an image."""
    records: list[dict[str, Any]] = []
    for i in range(100):
        closed = i < 60
        acc = (1.0 if i < closed_right else 0.0) if closed else None
        records.append(
            {
                "task": "vqarad",
                "doc_id": i,
                "cluster": f"img{i // 2}",
                "status": "ok",
                "categories": {"answer_type": "closed" if closed else "open"},
                "scores": {"accuracy": acc, "token_f1": 0.5},
            }
        )
    return records


def test_not_scored_primary_gates_the_closed_accuracy_paired() -> None:
    base_records = _unjudged_records(45)
    base = {"tasks": {"vqarad": summarize_task(base_records, "accuracy")}}
    assert "accuracy" in base["tasks"]["vqarad"]["not_scored"]

    def gate(closed_right: int) -> RegressReport:
        run_records = _unjudged_records(closed_right)
        run = {"tasks": {"vqarad": summarize_task(run_records, "accuracy")}}
        return compare(base, run, baseline_samples=base_records, run_samples=run_records)

    # one closed item lost: the point estimate alone would fail it; paired on the 60 closed items (30
    # images) it is no evidence of a drop
    report = gate(44)
    row = next(r for r in report.rows if r.check == "accuracy_closed")
    assert row.family == "primary" and row.status == OK
    assert row.delta == pytest.approx(-1 / 60) and row.interval is not None
    assert row.interval[0] < row.delta < row.interval[1]
    # fifteen lost: a drop the paired test sees
    report = gate(30)
    assert failing(report) == [("vqarad", "accuracy_closed")]
    assert "primary family" in report.failures[0].detail
