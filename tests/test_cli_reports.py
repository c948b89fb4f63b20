"""leaderboard, regress and rescore from the command line, on committed fixture runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from record_factories import unjudged_vqarad_records

from obv_eval.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
BASE = FIXTURES / "qwen2vl-2b" / "fixture-base"
TUNED = FIXTURES / "qwen2vl-2b-obv" / "fixture-obv"


def test_leaderboard_writes_every_format(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["leaderboard", str(BASE), str(TUNED), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "qwen2vl-2b-obv" in out and "study: Qwen2-VL-7B-biomed" in out
    html = (tmp_path / "leaderboard.html").read_text()
    assert "qwen2vl-2b" in html and "MIMICEchoQA" in html and "data:image/png;base64," in html
    assert (tmp_path / "leaderboard.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "98.7" in (tmp_path / "leaderboard.md").read_text()  # the study's 2B video headline, reproduced


def test_regress_passes_on_itself_and_fails_on_an_injected_drop(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["regress", "--baseline", str(BASE), str(BASE)]) == 0
    dropped = tmp_path / "dropped"
    shutil.copytree(TUNED, dropped)  # 0.775 -> 0: significant after clustering and Holm (0.2 -> 0 is not)
    lines = (dropped / "samples.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:  # every mimicechoqa item now wrong
        if record["task"] == "mimicechoqa":
            record["scores"]["accuracy"] = 0.0
    (dropped / "samples.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    results = json.loads((dropped / "results.json").read_text())
    results["tasks"]["mimicechoqa"]["metrics"]["accuracy"].update(mean=0.0, ci_low=0.0, ci_high=0.0, se=0.0)
    (dropped / "results.json").write_text(json.dumps(results))
    capsys.readouterr()
    assert main(["regress", "--baseline", str(TUNED), str(dropped)]) == 1
    assert "mimicechoqa" in capsys.readouterr().out


def test_regress_fails_when_items_go_missing(tmp_path: Path) -> None:
    fewer = tmp_path / "fewer"
    shutil.copytree(BASE, fewer)
    from obv_eval.results import read_results, read_samples, summarize_tasks, write_results

    records = [r for r in read_samples(fewer) if not (r["task"] == "pubmedqa" and r["doc_id"] < 5)]
    (fewer / "samples.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    results = read_results(fewer / "results.json")
    primaries = {name: task["primary_metric"] for name, task in results["tasks"].items()}
    results["tasks"] = summarize_tasks(records, primaries)
    write_results(fewer / "results.json", results)
    assert main(["regress", "--baseline", str(BASE), str(fewer)]) == 1


def test_not_a_run_folder_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["regress", "--baseline", str(tmp_path), str(BASE)]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_compare_reports_paired_differences_and_clustered_tests(capsys: pytest.CaptureFixture[str]) -> None:
    import numpy as np
    import statsmodels.api as sm
    from scipy.stats import binomtest

    from obv_eval.results import paired_scores, read_samples

    assert main(["compare", str(BASE), str(TUNED)]) == 0
    out = capsys.readouterr().out
    checked = set()
    for task in ("mimicechoqa", "surgeryvqa", "vqarad", "pathvqa", "slake", "medqa", "pubmedqa"):
        a, b, clusters = paired_scores(read_samples(BASE), read_samples(TUNED), task, "accuracy")
        diff = np.asarray(b) - np.asarray(a)
        if not np.any(diff) or np.all(diff == diff[0]):
            continue  # no discordant pair, or no spread: nothing to check a test against
        if len(set(clusters)) == len(clusters):  # independent items: McNemar's exact test
            gained, lost = int(np.sum(diff > 0)), int(np.sum(diff < 0))
            expected = f"{binomtest(lost, gained + lost, 0.5).pvalue:.3g} (mcnemar-exact)"
            checked.add("mcnemar")
        else:  # items share a source: cluster-robust t on G - 1 degrees of freedom (statsmodels)
            groups = np.unique(np.asarray(clusters), return_inverse=True)[1]
            fit = sm.OLS(diff, np.ones_like(diff)).fit(
                cov_type="cluster", cov_kwds={"groups": groups}, use_t=True
            )
            expected = f"{float(fit.pvalues[0]):.3g} (clustered-t)"
            checked.add("clustered")
        line = next(line for line in out.splitlines() if line.startswith(task))
        assert expected in line, (task, line)
        assert f"{100 * diff.mean():+.1f}" in line
    assert checked == {"mcnemar", "clustered"} and "Holm p" in out


def test_leaderboard_shows_the_newest_run_of_each_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(BASE, runs / "qwen2vl-2b" / "old")
    shutil.copytree(BASE, runs / "qwen2vl-2b" / "new")
    results = json.loads((runs / "qwen2vl-2b" / "new" / "results.json").read_text())
    results["run_id"] = "new"
    results["provenance"]["created"] = "2999-01-01T00:00:00+00:00"
    (runs / "qwen2vl-2b" / "new" / "results.json").write_text(json.dumps(results))
    assert main(["leaderboard", str(runs), "--out", str(tmp_path / "board"), "--no-reference"]) == 0
    err = capsys.readouterr().err
    assert "leaving out qwen2vl-2b run fixture-base" in err


def test_compare_of_unjudged_runs_names_the_closed_accuracy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # without verdicts on VQA-RAD's open items its primary accuracy is "not scored": compare pairs the
    # closed items under their own name rather than showing them as the task's accuracy
    from obv_eval.results import read_samples, summarize_task

    folders = []
    for name, src, shift in (("base", BASE, 0), ("tuned", TUNED, 1)):
        folder = tmp_path / name
        shutil.copytree(src, folder)
        vqarad = unjudged_vqarad_records(shift)
        results = json.loads((folder / "results.json").read_text())
        results["tasks"]["vqarad"] = summarize_task(vqarad, "accuracy")
        assert "accuracy" in results["tasks"]["vqarad"]["not_scored"]
        (folder / "results.json").write_text(json.dumps(results))
        records = [*read_samples(folder), *vqarad]
        (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        folders.append(folder)
    assert main(["compare", *map(str, folders)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("vqarad"))
    assert line.split()[1:3] == ["accuracy_closed", "30"]
