"""obv-eval report: the page's data comes from the run folder's files; large runs stay small; media sheets."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from record_factories import unjudged_vqarad_records

from obv_eval.cli import main
from obv_eval.report import (
    MAX_SHEET_FRAMES,
    OUTCOMES,
    options_from_prompt,
    outcome,
    report_data,
    write_report,
)
from obv_eval.results import build_results, summarize_task
from obv_eval.runner import write_samples
from obv_eval.sources import SAMPLES_DIR

PRIMARY = {"vqarad": "accuracy", "surgeryvqa": "accuracy", "medqa": "accuracy"}


def synthetic_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Items of three tasks covering every outcome; `seed` shifts which items are correct."""
    records = []
    tasks = list(PRIMARY)
    for i in range(n):
        task = tasks[i % 3]
        kind = (i // 3 + seed) % 7
        failed = kind == 6
        unparsed = kind == 5
        score: float | None = None if kind == 4 else (1.0 if kind in (0, 1) else 0.0)
        options = "\nA. alpha\nB. beta\nC. gamma\nD. delta" if task == "medqa" else ""
        records.append(
            {
                "task": task,
                "doc_id": i // 3,
                "cluster": f"c{i // 6}",
                "categories": {"answer_type": "open" if kind == 4 else "closed", "view": f"v{i % 4}"},
                "question": f"question {i} about the liver and its <b>size</b>?",
                "prompt": f"<|im_start|>user\nquestion {i}{options}\nAnswer.<|im_end|>\n"
                "<|im_start|>assistant\n",
                "prediction": "" if failed else f"the model's reply number {i}",
                "target": "B" if task == "medqa" else "liver",
                "extracted": None if unparsed or failed else "B",
                "status": "failed" if failed else "ok",
                "reason": "generation failed: out of memory" if failed else None,
                "unparsed": unparsed,
                "scores": {"accuracy": 0.0 if failed else (0.0 if unparsed else score)},
                "tokens": {"prompt": 100 + i % 50, "output": 7},
                "frames": [],
                **({"judge_reason": "not scored: no judge configured"} if kind == 4 else {}),
            }
        )
    return records


def write_run(
    folder: Path,
    records: list[dict[str, Any]],
    model: str = "tiny-qwen2vl",
    primary: dict[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tasks = {
        t: summarize_task([r for r in records if r["task"] == t], m)
        for t, m in (primary or PRIMARY).items()
        if any(r["task"] == t for r in records)
    }
    provenance = {"data_source": "hub", "media": {}, "judge": {"configured": False, "note": "no judge"}}
    results = build_results(folder.name, model, tasks, provenance)
    write_samples(folder / "samples.jsonl", records)
    (folder / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return folder


def embedded(page: str) -> dict[str, Any]:
    match = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    assert match, "no embedded data"
    data: dict[str, Any] = json.loads(match.group(1))
    return data


def test_outcomes_and_options() -> None:
    assert outcome({"status": "failed", "scores": {"accuracy": 1.0}}, "accuracy") == "failed"
    assert outcome({"status": "ok", "unparsed": True, "scores": {"accuracy": 0.0}}, "accuracy") == "unparsed"
    assert outcome({"status": "ok", "scores": {"accuracy": None}}, "accuracy") == "unscored"
    assert outcome({"status": "ok", "scores": {}}, "accuracy") == "unscored"
    assert outcome({"status": "ok", "scores": {"accuracy": 1.0}}, "accuracy") == "correct"
    assert outcome({"status": "ok", "scores": {"accuracy": 0.0}}, "accuracy") == "wrong"
    prompt = (
        "<|im_start|>user\nWhich?\nA. one\nB. two\nAnswer with A or B.<|im_end|>\n<|im_start|>assistant\nA. x"
    )
    assert options_from_prompt(prompt) == [["A", "one"], ["B", "two"]]
    assert options_from_prompt("<|im_start|>user\nA. lone line<|im_end|>") == []


def test_large_run_is_bounded_and_fast(tmp_path: Path) -> None:
    records = synthetic_records(3000)
    run = write_run(tmp_path / "big", records)
    started = time.perf_counter()
    path = write_report(run)
    elapsed = time.perf_counter() - started
    page = path.read_text(encoding="utf-8")
    assert elapsed < 10, elapsed
    raw = (run / "samples.jsonl").stat().st_size
    assert len(page.encode()) < 1.5 * raw + 200_000, (len(page), raw)
    data = embedded(page)
    assert len(data["items"]) == 3000
    counts = {o: sum(outcome(r, "accuracy") == o for r in records) for o in OUTCOMES}
    assert all(counts.values())
    assert {o: sum(i["o"] == o for i in data["items"]) for o in OUTCOMES} == counts
    # no markup from the items leaks into the page outside the JSON (escaped at render time in the page)
    assert "<b>size</b>" not in page.split('id="report-data"')[0]
    assert "</script>" not in re.search(r'id="report-data"[^>]*>(.*?)</script>', page, re.S).group(1)
    assert not re.search(r"(src|href)=[\"'](https?:)?//", page)
    assert data["media"] == {} or all("missing" in m for m in data["media"].values())


def test_pair_flips_and_paired_difference(tmp_path: Path) -> None:
    from obv_eval.results import paired_scores
    from obv_eval.stats import paired_difference

    base_records, run_records = synthetic_records(60, seed=0), synthetic_records(60, seed=1)
    base = write_run(tmp_path / "base", base_records)
    run = write_run(tmp_path / "tuned", run_records, model="tiny-qwen2vl-obv")
    data = report_data(run, against=base, media=False)
    by_key = {(i["t"], i["d"]): i for i in data["items"]}
    improved = regressed = 0
    for new, old in zip(run_records, base_records, strict=True):
        a, b = old["scores"]["accuracy"], new["scores"]["accuracy"]
        if old["status"] == "failed":
            a = 0.0
        if new["status"] == "failed":
            b = 0.0
        flip = (
            "unpaired"
            if a is None or b is None
            else "improved"
            if b > a
            else "regressed"
            if b < a
            else "same"
        )
        improved += flip == "improved"
        regressed += flip == "regressed"
        assert by_key[(new["task"], str(new["doc_id"]))]["f"] == flip
    assert improved and regressed
    for task in PRIMARY:
        a, b, clusters = paired_scores(base_records, run_records, task, "accuracy")
        expected = paired_difference(a, b, clusters)
        assert data["pair"][task]["mean"] == pytest.approx(expected.mean)
        assert data["pair"][task]["ci_low"] == pytest.approx(expected.ci_low)
        assert data["pair"][task]["n"] == len(a)


def test_cli_report_with_hub_run_shows_media_placeholder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = synthetic_records(9)
    for record in records:
        record["prompt"] = record["prompt"].replace(
            "user\n", "user\n<|vision_start|><|image_pad|><|vision_end|>"
        )
    run = write_run(tmp_path / "hubrun", records)
    out = tmp_path / "page.html"
    assert main(["report", str(run), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = embedded(out.read_text(encoding="utf-8"))
    sheets = [data["media"][k] for item in data["items"] for k in item["m"]]
    assert len(sheets) == 9 and all("Hugging Face hub" in s["missing"] for s in sheets)
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_contact_sheets_from_the_samples(tmp_path: Path) -> None:
    """Video and image items of the bundled samples get the frames the sampler gives, as JPEG thumbnails."""
    from obv_eval.benchmarks import BENCHMARKS
    from obv_eval.media import VideoSettings, load_video
    from obv_eval.sources import parse_data_source, set_data_source
    from obv_eval.tasking import load_rows, text_field

    settings = VideoSettings(nframes=4)
    set_data_source(parse_data_source("samples"))
    try:
        rows = {
            name: load_rows(BENCHMARKS[name], parse_data_source("samples"))
            for name in ("mimicechoqa", "vqarad")
        }
    finally:
        set_data_source(None)
    records = []
    for name, dataset in rows.items():
        for doc_id in range(2):
            records.append(
                {
                    "task": name,
                    "doc_id": doc_id,
                    "question": text_field(dataset[doc_id], "question"),
                    "prompt": "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>q<|im_end|>",
                    "status": "ok",
                    "scores": {"accuracy": 0.0},
                    "frames": [4] if name == "mimicechoqa" else [],
                }
            )
    records.append({**records[0], "doc_id": 1, "question": "a question the row does not hold"})
    records.pop(1)
    run = write_run(
        tmp_path / "samplesrun", records, primary={"mimicechoqa": "accuracy", "vqarad": "accuracy"}
    )
    results = json.loads((run / "results.json").read_text())
    results["provenance"].update(data_source=f"samples:{SAMPLES_DIR}", media={"video": {"nframes": 4}})
    (run / "results.json").write_text(json.dumps(results))
    data = report_data(run)
    items = {(i["t"], i["d"]): i for i in data["items"]}
    video = data["media"][items[("mimicechoqa", "0")]["m"][0]]
    clip = text_field(rows["mimicechoqa"][0], "video")
    expected = load_video(clip, settings, root=SAMPLES_DIR / "media" / "mimicechoqa")
    assert video["kind"] == "video" and video["indices"] == list(expected.indices)[:MAX_SHEET_FRAMES]
    assert video["sampled"] == expected.num_frames and all(
        f.startswith("data:image/jpeg;base64,") for f in video["frames"]
    )
    image = data["media"][items[("vqarad", "0")]["m"][0]]
    assert image["kind"] == "image" and len(image["frames"]) == 1
    mismatch = data["media"][items[("mimicechoqa", "1")]["m"][0]]
    assert "no longer matches" in mismatch["missing"]


def test_pair_view_of_an_unjudged_primary_names_the_closed_accuracy() -> None:
    from obv_eval.report import _pair_stats
    from obv_eval.results import summarize_task

    base, run = unjudged_vqarad_records(0), unjudged_vqarad_records(1)
    stats = _pair_stats(
        {"tasks": {"vqarad": summarize_task(run, "accuracy")}},
        run,
        {"tasks": {"vqarad": summarize_task(base, "accuracy")}},
        base,
    )
    assert stats["vqarad"]["metric"] == "accuracy_closed" and stats["vqarad"]["n"] == 30
    assert -1 <= stats["vqarad"]["ci_low"] <= stats["vqarad"]["mean"] <= stats["vqarad"]["ci_high"] <= 1
