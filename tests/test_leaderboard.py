from __future__ import annotations

import base64
import csv
import json
import math
import re
import shutil
import struct
from pathlib import Path

import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from obv_eval.leaderboard import (
    BENCHMARKS,
    DEFAULT_REFERENCE,
    Run,
    base_model_of,
    benchmark_of,
    build_gains,
    build_table,
    display_table,
    headline_note,
    load_reference,
    load_runs,
    render_csv,
    render_markdown,
    render_terminal,
    write_leaderboard,
)
from obv_eval.results import paired_scores, read_results, read_samples, summarize_task
from obv_eval.stats import paired_test

FIXTURES = Path(__file__).parent / "fixtures" / "runs"
BASE_RUN = FIXTURES / "qwen2vl-2b" / "fixture-base"
OBV_RUN = FIXTURES / "qwen2vl-2b-obv" / "fixture-obv"

# FACTS.md section 1, typed in independently of the committed JSON.
FIGURE = {
    "Qwen2-VL-2B": [21.1, 10.3, 14.7, 17.6, 39.4, 34.9, 67.7],
    "Qwen2-VL-2B-biomed": [42.0, 20.4, 58.2, 53.5, 61.7, 34.6, 68.6],
    "Qwen2-VL-7B": [40.0, 16.5, 55.4, 28.5, 55.2, 52.6, 73.8],
    "Qwen2-VL-7B-biomed": [45.8, 25.1, 72.5, 64.6, 69.3, 47.4, 77.2],
    "Ref.": [41.6, 35.8, 78.1, 90.6, 91.6, 70.6, 80.6],
}


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return load_runs([FIXTURES])


def test_reference_file_holds_the_study_figure() -> None:
    ref = load_reference()
    assert "2504.14391" in ref["source"]
    assert "Ref." in ref["ref_row_note"] and "does not say" in ref["ref_row_note"]
    assert ref["benchmarks"] == list(BENCHMARKS)
    assert {name: [row[b] for b in BENCHMARKS] for name, row in ref["rows"].items()} == FIGURE


def test_names() -> None:
    assert benchmark_of("obv_slake") == "slake" and benchmark_of("slake") == "slake"
    assert base_model_of("qwen2vl-7b-obv") == "qwen2vl-7b"
    assert base_model_of("qwen2vl-7b") is None


def test_load_runs_finds_runs_under_a_folder(runs: list[Run]) -> None:
    assert sorted(r.model for r in runs) == ["qwen2vl-2b", "qwen2vl-2b-obv"]
    direct = load_runs([BASE_RUN, OBV_RUN / "results.json"])
    assert [r.run_dir for r in direct] == [BASE_RUN, OBV_RUN]


def test_table_values_from_results(runs: list[Run]) -> None:
    table = build_table(runs)
    assert list(table.index) == [
        "qwen2vl-2b",
        "qwen2vl-2b-obv",
        "study: Qwen2-VL-2B",
        "study: Qwen2-VL-2B-biomed",
        "study: Qwen2-VL-7B",
        "study: Qwen2-VL-7B-biomed",
        "study: Ref.",
    ]
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == [
        "mimicechoqa",
        "surgeryvqa",
        "video",
        "vqarad",
        "pathvqa",
        "slake",
        "image",
        "medqa",
        "pubmedqa",
        "text",
    ]
    base = read_results(BASE_RUN)["tasks"]
    est = base["mimicechoqa"]["metrics"]["accuracy"]
    row = table.loc["qwen2vl-2b"]
    assert row[("mimicechoqa", "mean")] == pytest.approx(est["mean"] * 100)
    assert row[("mimicechoqa", "ci_low")] == pytest.approx(est["ci_low"] * 100)
    assert row[("mimicechoqa", "n")] == est["n"]
    # SurgeryVideoQA's primary metric is the judge's verdict
    assert row[("surgeryvqa", "mean")] == pytest.approx(base["surgeryvqa"]["metrics"]["judge"]["mean"] * 100)
    # the video group is the plain mean of its two benchmarks; image and text are incomplete here
    video = (row[("mimicechoqa", "mean")] + row[("surgeryvqa", "mean")]) / 2
    assert row[("video", "mean")] == pytest.approx(video)
    assert math.isnan(row[("text", "mean")]) and math.isnan(row[("vqarad", "mean")])
    study = table.loc["study: Qwen2-VL-2B"]
    assert study[("video", "mean")] == pytest.approx(15.7)
    assert math.isnan(study[("video", "ci_low")])


def test_significance_is_clustered_and_holm_adjusted(runs: list[Run]) -> None:
    table = build_table(runs)
    raw = {}
    for task in ("mimicechoqa", "pubmedqa", "surgeryvqa"):
        metric = "judge" if task == "surgeryvqa" else "accuracy"
        a, b, clusters = paired_scores(read_samples(BASE_RUN), read_samples(OBV_RUN), task, metric)
        raw[task] = paired_test(a, b, clusters)
    # mimicechoqa's items share echo studies: the clustered t-test, not McNemar; pubmedqa's are independent
    assert raw["mimicechoqa"].method == "clustered-t" and raw["pubmedqa"].method == "mcnemar-exact"
    expected = multipletests([raw[t].pvalue for t in raw], method="holm")[1]
    for task, p in zip(raw, expected, strict=True):
        assert table.loc["qwen2vl-2b-obv", (task, "p_vs_base")] == pytest.approx(p)
    assert table.loc["qwen2vl-2b-obv", ("mimicechoqa", "p_vs_base")] < 0.05
    assert table.loc["qwen2vl-2b-obv", ("pubmedqa", "p_vs_base")] > 0.05
    assert math.isnan(table.loc["qwen2vl-2b", ("mimicechoqa", "p_vs_base")])  # the base row is not tested
    md = render_markdown(table)
    obv_line = next(line for line in md.splitlines() if line.startswith("| qwen2vl-2b-obv"))
    assert obv_line.count(" *") == 1


def test_no_samples_means_no_significance(tmp_path: Path) -> None:
    for src in (BASE_RUN, OBV_RUN):
        dst = tmp_path / src.name
        dst.mkdir()
        shutil.copy(src / "results.json", dst / "results.json")
    table = build_table(load_runs([tmp_path]), reference=False)
    assert table[("mimicechoqa", "p_vs_base")].isna().all()
    # without the reference only the benchmarks the runs have are shown
    assert list(dict.fromkeys(table.columns.get_level_values(0))) == [
        "mimicechoqa",
        "surgeryvqa",
        "video",
        "pubmedqa",
    ]


def test_plain_results_dicts_are_accepted_and_duplicates_refused() -> None:
    results = read_results(BASE_RUN)
    table = build_table([results], reference=False)
    assert list(table.index) == ["qwen2vl-2b"]
    with pytest.raises(ValueError, match="two runs for model qwen2vl-2b"):
        build_table([results, results])


def test_gains_both_definitions(runs: list[Run]) -> None:
    gains = build_gains(runs)
    study_2b = gains.loc["study: Qwen2-VL-2B-biomed vs Qwen2-VL-2B"]
    assert round(study_2b["video: gain of mean"], 1) == 98.7
    assert round(study_2b["text: mean of gains"], 1) == 0.2
    assert study_2b["mimicechoqa"] == pytest.approx((42.0 - 21.1) / 21.1 * 100)
    study_7b = gains.loc["study: Qwen2-VL-7B-biomed vs Qwen2-VL-7B"]
    assert study_7b["text: mean of gains"] == pytest.approx(-2.6394, abs=1e-4)
    table = build_table(runs)
    ours = gains.loc["qwen2vl-2b-obv vs qwen2vl-2b"]
    b, t = table.loc["qwen2vl-2b"], table.loc["qwen2vl-2b-obv"]
    assert ours["mimicechoqa"] == pytest.approx(
        (t[("mimicechoqa", "mean")] - b[("mimicechoqa", "mean")]) / b[("mimicechoqa", "mean")] * 100
    )
    assert ours["video: gain of mean"] == pytest.approx(
        (t[("video", "mean")] - b[("video", "mean")]) / b[("video", "mean")] * 100
    )
    assert math.isnan(ours["text: mean of gains"])  # MedQA was not run


def test_headline_note_says_which_definition_reproduces_each_claim() -> None:
    note = headline_note()
    assert "2B video group 98.7 = gain of mean" in note
    assert "2B text group 0.2 = mean of gains" in note
    assert "7B text group -2.7 = mean of gains after rounding each benchmark's gain to one decimal" in note
    assert "2B MIMICEchoQA 99.1 = per-benchmark gain" in note
    assert re.search(r"Not reproducible .*2B image group 71\.2.*7B MIMICEchoQA 22\.5", note)
    # issue 15: the three published 7B MIMICEchoQA gains, each with its source
    line = next(x for x in note.splitlines() if x.startswith("The study's 7B MIMICEchoQA gain"))
    assert "+22.5% (the study's repository README" in line
    assert "+29.3% (the paper's arXiv v2 abstract)" in line
    assert "+14.5% (recomputed from the figure, 40.0 -> 45.8)" in line


def test_csv_is_flat_with_counts(runs: list[Run]) -> None:
    lines = render_csv(build_table(runs)).splitlines()
    header = lines[0].split(",")
    assert header[:3] == ["model", "mimicechoqa.mean", "mimicechoqa.ci_low"]
    row = dict(zip(header, lines[1].split(","), strict=True))
    assert row["model"] == "qwen2vl-2b" and row["mimicechoqa.n"] == "40" and row["mimicechoqa.mean"] == "20"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_write_leaderboard_outputs(tmp_path: Path, runs: list[Run]) -> None:
    paths = write_leaderboard(tmp_path / "lb", runs)
    assert set(paths) == {"markdown", "csv", "gains_csv", "png", "html", "text"}
    assert max(map(len, paths["text"].read_text(encoding="utf-8").splitlines())) <= 100
    png = paths["png"].read_bytes()
    width, height = png_size(png)
    assert width >= 600 and height >= 300 and len(png) > 10_000

    page = paths["html"].read_text(encoding="utf-8")
    for text in (
        "qwen2vl-2b-obv",
        "study: Qwen2-VL-7B-biomed",
        "study: Ref.",
        "MIMICEchoQA",
        "SurgeryVideoQA",
        "PubMedQA",
        "Video (mean)",
        "77.5",
        "98.7",
        "gain of mean",
        "2504.14391",
    ):
        assert text in page, text
    # self-contained: the chart is embedded and nothing is fetched from elsewhere
    match = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert match and base64.b64decode(match.group(1)) == png
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page and "<script" not in page

    md = paths["markdown"].read_text(encoding="utf-8")
    assert "| qwen2vl-2b-obv" in md and "77.5 [" in md and "SLAKE" in md
    gains_csv = paths["gains_csv"].read_text(encoding="utf-8")
    assert gains_csv.startswith("pair,mimicechoqa,surgeryvqa")


def test_leaderboard_is_deterministic(tmp_path: Path, runs: list[Run]) -> None:
    first = write_leaderboard(tmp_path / "a", runs)
    second = write_leaderboard(tmp_path / "b", list(reversed(runs)))
    for kind, path in first.items():
        assert path.read_bytes() == second[kind].read_bytes(), kind


def test_empty_leaderboard_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to show"):
        write_leaderboard(tmp_path, [], reference=False)


def test_reference_path_override(tmp_path: Path) -> None:
    ref = json.loads(DEFAULT_REFERENCE.read_text(encoding="utf-8"))
    ref["rows"] = {"Only": ref["rows"]["Ref."]}
    ref["pairs"] = []
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(ref), encoding="utf-8")
    table = build_table([], reference_path=path)
    assert list(table.index) == ["study: Only"]
    with pytest.raises(FileNotFoundError, match="pass reference_path"):
        build_table([], reference_path=tmp_path / "nope.json")


def _image_records(task: str, judged: bool) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(8):
        kind = "closed" if i < 4 else "open"
        acc = float(i % 2) if kind == "closed" or judged else None
        out.append(
            {
                "task": task,
                "doc_id": i,
                "cluster": f"{task}{i}",
                "status": "ok",
                "categories": {"answer_type": kind},
                "scores": {"accuracy": acc},
            }
        )
    return out


def test_unjudged_image_task_is_marked_not_scored_and_left_out_of_the_group() -> None:
    tasks = {
        "vqarad": summarize_task(_image_records("vqarad", judged=False), "accuracy"),
        "pathvqa": summarize_task(_image_records("pathvqa", judged=True), "accuracy"),
        "slake": summarize_task(_image_records("slake", judged=True), "accuracy"),
    }
    run = {"schema_version": 2, "run_id": "r", "model": "m", "tasks": tasks, "provenance": {}}
    table = build_table([run], reference=False)
    assert table.loc["m", ("vqarad", "not_scored")] == 1.0
    assert math.isnan(table.loc["m", ("vqarad", "mean")])
    # no group mean over a not-scored benchmark: the group is "not scored" too, in the same word
    assert math.isnan(table.loc["m", ("image", "mean")]) and table.loc["m", ("image", "not_scored")] == 1.0
    md = render_markdown(table)
    line = next(row for row in md.splitlines() if row.startswith("| m "))
    cells = [c.strip() for c in line.split("|")[2:-1]]
    assert cells[0] == "not scored"  # the VQA-RAD cell, first: never a 0.0
    assert cells[3] == "not scored" and cells[1].startswith("50.0 [")  # Image (mean); PathVQA scored
    assert "n/a" not in md


def test_judge_lines_name_the_preset_of_each_run() -> None:
    from obv_eval.leaderboard import Run, judge_lines

    judged = {
        "model": "m1",
        "run_id": "r1",
        "provenance": {
            "judge": {
                "configured": True,
                "settings": {"model": "gpt-4o", "preset": "v1", "prompt_version": "v1-r2"},
                "stats": {"response_models": {"gpt-4o-2024-08-06": 8}},
            }
        },
    }
    unjudged = {"model": "m2", "run_id": "r2", "provenance": {"judge": {"configured": False}}}
    lines = judge_lines([Run(judged), Run(unjudged)])
    expected = "- m1 (r1): open-ended items judged by gpt-4o (answered by gpt-4o-2024-08-06) with preset v1"
    assert expected in "\n".join(lines)
    assert lines[-1] == "- m2 (r2): no judge, open-ended items not scored"


def _write_run(folder: Path, model: str, records: list[dict[str, object]]) -> Path:
    tasks = {
        task: summarize_task([r for r in records if r["task"] == task], "accuracy")
        for task in sorted({str(r["task"]) for r in records})
    }
    folder.mkdir(parents=True)
    results = {"schema_version": 2, "run_id": folder.name, "model": model, "tasks": tasks, "provenance": {}}
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder


def _closed_flip_records(task: str, right: bool, judged: bool) -> list[dict[str, object]]:
    # 40 closed items, each its own image, all wrong (base) or all right (tuned); 10 open items
    out: list[dict[str, object]] = []
    for i in range(50):
        closed = i < 40
        acc = (float(right) if closed else 0.0) if closed or judged else None
        out.append(
            {
                "task": task,
                "doc_id": i,
                "cluster": f"{task}{i}",
                "status": "ok",
                "categories": {"answer_type": "closed" if closed else "open"},
                "scores": {"accuracy": acc},
            }
        )
    return out


def test_not_scored_cell_gets_no_significance_mark(tmp_path: Path) -> None:
    base = [*_closed_flip_records("vqarad", False, False), *_closed_flip_records("slake", False, True)]
    tuned = [*_closed_flip_records("vqarad", True, False), *_closed_flip_records("slake", True, True)]
    runs = load_runs([_write_run(tmp_path / "b", "m", base), _write_run(tmp_path / "t", "m-obv", tuned)])
    table = build_table(runs, reference=False)
    # the judged task's flip is marked; the unjudged one's closed items alone are not tested under its name
    assert table.loc["m-obv", ("slake", "p_vs_base")] < 0.05
    assert not table.loc["m-obv", ("vqarad", "p_vs_base")] < 0.05
    line = next(row for row in render_markdown(table).splitlines() if row.startswith("| m-obv "))
    assert line.split("|")[2].strip() == "not scored"


def test_group_interval_stays_on_the_score_scale_and_keeps_a_width() -> None:
    # three image benchmarks at 1 of 4 (25 +/- 25 each: mean - 1.96 SE of the group is below 0) and two
    # text benchmarks at 0 of 6 (SE 0: a Wald interval collapses to [0, 0])
    def records(task: str, n: int, right: int) -> list[dict[str, object]]:
        return [
            {"task": task, "doc_id": i, "status": "ok", "scores": {"accuracy": float(i < right)}}
            for i in range(n)
        ]

    shapes = {"vqarad": (4, 1), "pathvqa": (4, 1), "slake": (4, 1), "medqa": (6, 0), "pubmedqa": (6, 0)}
    tasks = {t: summarize_task(records(t, n, k), "accuracy") for t, (n, k) in shapes.items()}
    run = {"schema_version": 2, "run_id": "r", "model": "m", "tasks": tasks, "provenance": {}}
    row = build_table([run], reference=False).loc["m"]
    # image: Wilson at 0.25 on 3^2 / (3 / 4) = 12 effective items; text: Wilson at 0 on 2^2 / (2 / 6) = 12
    # (statsmodels' quantile is 1.95996, the leaderboard's 1.96: equal to 0.01 points)
    image = proportion_confint(3, 12, method="wilson")
    assert row[("image", "mean")] == pytest.approx(25.0)
    assert (row[("image", "ci_low")], row[("image", "ci_high")]) == pytest.approx(
        (100 * image[0], 100 * image[1]), abs=0.01
    )
    assert 0 < row[("image", "ci_low")] < 25 < row[("image", "ci_high")] < 100
    text = proportion_confint(0, 12, method="wilson")
    assert row[("text", "ci_low")] == pytest.approx(0.0, abs=1e-9)
    assert (
        row[("text", "ci_high")] == pytest.approx(100 * text[1], abs=0.01) and row[("text", "ci_high")] > 10
    )


def _one_task_run(
    model: str, task: str, records: list[dict[str, object]], run_id: str = "r"
) -> dict[str, object]:
    summary = summarize_task(records, "accuracy")
    return {"schema_version": 2, "run_id": run_id, "model": model, "tasks": {task: summary}, "provenance": {}}


def test_one_word_for_a_missing_score_in_every_format(tmp_path: Path) -> None:
    # "not scored": run but no score (an unjudged image task, and its group); "-": not run; "base 0": a
    # relative gain over a base of 0. No "n/a" anywhere, in any format.
    zero = [{**r, "scores": {"accuracy": 0.0}} for r in _image_records("pathvqa", judged=True)]
    runs = [
        _one_task_run("m", "vqarad", _image_records("vqarad", judged=False)),
        _one_task_run("z", "pathvqa", zero),
        _one_task_run("z-obv", "pathvqa", _image_records("pathvqa", judged=True)),
    ]
    paths = write_leaderboard(tmp_path / "lb", runs, reference=False)
    table = build_table(runs, reference=False)
    shown = display_table(table)
    assert shown.loc["m", "VQA-RAD"] == "not scored" and shown.loc["m", "PathVQA"] == "-"
    assert shown.loc["z", "VQA-RAD"] == "-" and shown.loc["z", "PathVQA"].startswith("0.0 [")
    gains = build_gains(runs, reference=False)
    assert gains.attrs["blank"] == {("z-obv vs z", "pathvqa"): "base 0"}
    terminal = render_terminal(table, gains)
    for text in (*(p.read_text(encoding="utf-8") for p in paths.values() if p.suffix != ".png"), terminal):
        assert "n/a" not in text
    assert "base 0" in paths["markdown"].read_text(encoding="utf-8") and "base 0" in terminal
    assert "not scored" in paths["html"].read_text(encoding="utf-8") and "not scored" in terminal


def test_terminal_table_fits_100_columns_for_the_demo_and_for_many_models(runs: list[Run]) -> None:
    table = build_table(runs)
    text = render_terminal(table, build_gains(runs))
    assert max(map(len, text.splitlines())) <= 100
    # every model and every benchmark appears, with its interval on the line below the score
    for label in ("qwen2vl-2b-obv", "study: Ref.", "MIMICEchoQA", "PubMedQA", "Text (mean)", "[60.0, 88.8]"):
        assert label in text, label
    many = []
    for i in range(30):
        results = json.loads(json.dumps(runs[i % 2].results))
        results["model"], results["run_id"] = f"vendor/a-model-with-a-long-name-number-{i:02d}", f"r{i}"
        many.append(Run(results))
    wide = render_terminal(build_table(many))
    assert max(map(len, wide.splitlines())) <= 100
    assert all(f"number-{i:02d}" in wide for i in range(30))
    narrow = render_terminal(table, width=60)
    assert max(map(len, narrow.splitlines())) <= 60


def test_names_are_escaped_in_every_format(tmp_path: Path) -> None:
    # Names come from results files: a | must not split a Markdown cell, < must not open a tag in HTML,
    # = must not start a spreadsheet formula, an escape sequence must not drive the terminal.
    names = ["a|b", "<img src=x onerror=alert(1)>", "=1+1", "x\x1b[2Jy", "\r@1"]
    runs = [
        _one_task_run(name, "pathvqa", _image_records("pathvqa", judged=True), f"r{i}")
        for i, name in enumerate(names)
    ]
    paths = write_leaderboard(tmp_path / "lb", runs, reference=False)
    markdown_it = pytest.importorskip("markdown_it")
    rendered = markdown_it.MarkdownIt("commonmark").enable("table").render(paths["markdown"].read_text())
    rows = re.findall(r"<tr>\n<td>(.*?)</td>", rendered)
    assert set(rows) == {"a|b", "&lt;img src=x onerror=alert(1)&gt;", "=1+1", "x [2Jy", "@1"}
    with paths["csv"].open(newline="", encoding="utf-8") as handle:
        labels = [row[0] for row in csv.reader(handle)][1:]
    assert sorted(labels) == sorted(["a|b", "<img src=x onerror=alert(1)>", "'=1+1", "x [2Jy", "' @1"])
    page = paths["html"].read_text(encoding="utf-8")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    terminal = render_terminal(build_table(runs, reference=False))
    assert "\x1b" not in terminal and "x\\x1b[2Jy" in terminal


def test_the_run_summary_fits_100_columns_and_keeps_every_metric() -> None:
    # The table the demo prints after its run (the committed baseline is a demo run of all seven tasks).
    from obv_eval.cli.summary import render_summary

    baselines = Path(__file__).parents[1] / "results" / "baselines" / "tiny-qwen2vl"
    results = read_results(next(baselines.glob("*/results.json")))
    text = render_summary(results)
    assert max(map(len, text.splitlines())) <= 100
    lines = text.splitlines()
    for task, summary in results["tasks"].items():
        first = next(i for i, line in enumerate(lines) if line.startswith(f"{task} "))
        block = lines[first : first + 2 + len(summary["metrics"]) + 2]
        # counts on the task's first row, then one row per metric, the primary first
        assert block[0].split()[1:5] == [str(summary[k]) for k in ("n", "failed", "unparsed", "unscored")]
        assert f"{summary['primary_metric']} (primary)" in block[0]
        for metric in summary["metrics"]:
            assert any(line.split()[:1] == [metric] or f" {metric} " in line for line in block), (
                task,
                metric,
            )
    assert "n/a" not in text and "not scored" in text
