"""obv-eval report and the leaderboard in a real browser: Debian's chromium, headless.

The report of a demo run and of a base-vs-fine-tuned pair of tiny runs (open-ended items judged by a local
fake judge, so some items flip) is loaded from a file:// URL with filters set in its URL hash (the page's
own filter code applies them); the rendered DOM is checked against counts computed here from
samples.jsonl, the page must log nothing to the console, and screenshots are saved (set
OBV_EVAL_ARTIFACTS=DIR to keep them; the test prints where they are).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from obv_eval.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="chromium not installed (scripts/test.sh installs it with apt-get when run as root)",
)
PAGE = 50


def browse(url: str, profile: Path, screenshot: Path | None = None) -> tuple[str, list[str], float]:
    """The DOM after the page's scripts ran (or a screenshot), the console lines, and the wall time."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    command += [f"--screenshot={screenshot}", "--window-size=1400,1800"] if screenshot else ["--dump-dom"]
    started = time.perf_counter()
    done = subprocess.run([*command, url], capture_output=True, text=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console, elapsed


def outcome_of(record: dict[str, Any], metric: str) -> str:
    # Written out here from the definitions in obv_eval.report's docstring, not imported from it.
    if record["status"] == "failed":
        return "failed"
    if record.get("unparsed"):
        return "unparsed"
    score = (record.get("scores") or {}).get(metric)
    if score is None:
        return "unscored"
    return "correct" if score >= 0.5 else "wrong"


@pytest.fixture(scope="module")
def runs(demo_runs: tuple[Path, Path], judged_pair: dict[str, Path]) -> dict[str, Path]:
    # The session's demo run (every benchmark, no judge) and its base-vs-fine-tuned pair whose open-ended
    # items a fake judge scored by hashing the whole request (tests/conftest.py).
    return {"demo": demo_runs[0], **judged_pair}


@pytest.fixture(scope="module")
def artifacts() -> Path:
    # Outside pytest's own temporary folders, which later sessions rotate away.
    folder = Path(os.environ.get("OBV_EVAL_ARTIFACTS") or Path(tempfile.gettempdir()) / "obv-eval-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def records_of(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines() if line.strip()]


def metrics_of(run: Path) -> dict[str, str]:
    results = json.loads((run / "results.json").read_text())
    return {task: summary["primary_metric"] for task, summary in results["tasks"].items()}


def rendered(dom: str) -> tuple[int, list[tuple[str, str]]]:
    match = re.search(r'<span id="match-count">(\d+)</span>', dom)
    assert match, "the page did not render its item count"
    items = re.findall(r'<article class="item [a-z]+" data-task="([^"]+)" data-doc="([^"]+)"', dom)
    return int(match.group(1)), items


def check_filter(page: Path, profile: Path, state: dict[str, str], expected: set[tuple[str, str]]) -> str:
    url = page.as_uri() + ("#" + urlencode(state) if state else "")
    dom, console, _ = browse(url, profile)
    assert console == [], console
    count, items = rendered(dom)
    assert count == len(expected), (state, count, len(expected))
    assert len(items) == min(len(expected), PAGE)
    assert set(items) <= expected, state
    return dom


def test_demo_report_in_chromium(runs: dict[str, Path], tmp_path: Path, artifacts: Path) -> None:
    run = runs["demo"]
    page = tmp_path / "demo.html"
    assert main(["report", str(run), "--out", str(page)]) == 0
    records, metrics = records_of(run), metrics_of(run)
    keys = {(r["task"], str(r["doc_id"])): r for r in records}
    profile = tmp_path / "profile"
    dom = check_filter(page, profile, {}, set(keys))
    assert "data:image/jpeg;base64," in dom, "no contact sheet rendered for the video and image items"
    for outcome in ("correct", "wrong", "unparsed", "unscored", "failed"):
        expected = {k for k, r in keys.items() if outcome_of(r, metrics[r["task"]]) == outcome}
        check_filter(page, profile, {"outcome": outcome}, expected)
    for task in sorted({r["task"] for r in records}):
        check_filter(page, profile, {"task": task}, {k for k in keys if k[0] == task})
    field, value = next((k, v) for r in records for k, v in sorted((r.get("categories") or {}).items()) if v)
    expected = {k for k, r in keys.items() if str((r.get("categories") or {}).get(field)) == str(value)}
    check_filter(page, profile, {"category": f"{field}={value}"}, expected)
    # search covers the question, gold, reply, extracted answer, reasons and category values
    last = records[-1]
    word = last["question"].split()[-1].lower()

    def searchable(r: dict[str, Any]) -> str:
        fields = [r["task"], r["doc_id"], r.get("question"), r.get("target"), r.get("prediction")]
        fields += [
            r.get("extracted"),
            r.get("reason"),
            r.get("judge_reason"),
            *(r.get("categories") or {}).values(),
        ]
        return "\n".join("" if f is None else str(f) for f in fields).lower()

    expected = {k for k, r in keys.items() if k[0] == last["task"] and word in searchable(r)}
    assert (last["task"], str(last["doc_id"])) in expected
    check_filter(page, profile, {"task": last["task"], "q": word}, expected)
    shot = artifacts / "report-demo.png"
    browse(page.as_uri() + "#task=mimicechoqa", profile, screenshot=shot)
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot of the demo report: {shot}")


def test_pair_report_shows_flips(runs: dict[str, Path], tmp_path: Path, artifacts: Path) -> None:
    page = tmp_path / "pair.html"
    assert main(["report", str(runs["tuned"]), "--against", str(runs["base"]), "--out", str(page)]) == 0
    base = {(r["task"], str(r["doc_id"])): r for r in records_of(runs["base"])}
    tuned = {(r["task"], str(r["doc_id"])): r for r in records_of(runs["tuned"])}
    metrics = metrics_of(runs["tuned"])

    def score(record: dict[str, Any]) -> float | None:
        if record["status"] == "failed":
            return 0.0
        value = (record.get("scores") or {}).get(metrics[record["task"]])
        return None if value is None else float(value)

    improved, regressed = set(), set()
    for key, record in tuned.items():
        now, then = score(record), score(base[key])
        if now is not None and then is not None and now != then:
            (improved if now > then else regressed).add(key)
    assert improved | regressed, "the fake judge should make some open-ended items flip"
    profile = tmp_path / "profile"
    dom = check_filter(page, profile, {}, set(tuned))
    assert 'id="pair-table"' in dom and "minus tiny-qwen2vl" in dom
    flips = re.search(r"Flipped items: <b>(\d+)</b> improved, <b>(\d+)</b> regressed", dom)
    assert flips and (int(flips.group(1)), int(flips.group(2))) == (len(improved), len(regressed))
    dom = check_filter(page, profile, {"flip": "flipped"}, improved | regressed)
    for key in improved | regressed:
        assert f'data-task="{key[0]}" data-doc="{key[1]}"' in dom
    check_filter(page, profile, {"flip": "improved"}, improved)
    check_filter(page, profile, {"flip": "regressed"}, regressed)
    shot = artifacts / "report-pair.png"
    browse(page.as_uri() + "#flip=flipped", profile, screenshot=shot)
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot of the pair report: {shot}")


def test_leaderboard_in_chromium(runs: dict[str, Path], tmp_path: Path, artifacts: Path) -> None:
    out = tmp_path / "lb"
    assert main(["leaderboard", str(runs["base"]), str(runs["tuned"]), "--out", str(out)]) == 0
    page = out / "leaderboard.html"
    profile = tmp_path / "profile"
    dom, console, _ = browse(page.as_uri(), profile)
    assert console == [], console
    assert "tiny-qwen2vl-obv" in dom and "study: Ref." in dom and 'src="data:image/png;base64,' in dom
    shot = artifacts / "leaderboard.png"
    browse(page.as_uri(), profile, screenshot=shot)
    assert shot.stat().st_size > 20_000
    print(f"\nscreenshot of the leaderboard: {shot}")


def test_3000_item_report_renders_quickly(tmp_path: Path) -> None:
    from test_report import synthetic_records, write_run

    run = write_run(tmp_path / "big", synthetic_records(3000))
    page = tmp_path / "big.html"
    assert main(["report", str(run), "--out", str(page), "--no-media"]) == 0
    assert page.stat().st_size < 4_000_000
    dom, console, elapsed = browse(page.as_uri() + "#outcome=wrong", tmp_path / "profile")
    assert console == []
    count, items = rendered(dom)
    expected = sum(outcome_of(r, "accuracy") == "wrong" for r in records_of(run))
    assert count == expected and len(items) == PAGE
    render_ms = int(re.search(r'data-render-ms="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert render_ms < 2000, render_ms
    assert elapsed < 30, elapsed


HOSTILE = {
    "comment": "before <!-- a comment that never closes",
    "script": "</script><script>document.body.setAttribute('data-pwned', 'script')</script>",
    "img": "<img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">",
    "entity": "&lt;b&gt; stays &amp; as typed \u2028 across a line separator",
}


def test_markup_in_every_field_renders_as_text(tmp_path: Path) -> None:
    # Issue 24: "<!--" in any field blanked the page (the embedded JSON stopped parsing); markup in the
    # items must show as the characters it is made of, never run or render.
    from test_report import synthetic_records, write_run

    records = synthetic_records(12)
    payloads = list(HOSTILE.values())
    for i, record in enumerate(records):
        text = payloads[i % len(payloads)]
        record.update(question=f"q{i} {text}", prediction=f"reply {text}", target=text, extracted=text)
        record["categories"] = {**record["categories"], "view": text}
        record["reason"] = text if record["status"] == "failed" else None
    run = write_run(tmp_path / "hostile", records, model="model <!-- x")
    page = tmp_path / "hostile.html"
    assert main(["report", str(run), "--out", str(page), "--no-media"]) == 0
    dom, console, _ = browse(page.as_uri(), tmp_path / "profile")
    assert console == [], console
    count, items = rendered(dom)
    assert count == len(records) and len(items) == len(records)
    assert "data-pwned" not in re.search(r"<body[^>]*>", dom).group(0)  # type: ignore[union-attr]
    assert not re.search(r"<img[^>]*src=\"?x", dom), "an item's <img> became an element"
    body = dom.split('<script id="report-data"')[0]
    for text in payloads:
        shown = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        assert body.count(shown) >= 3, (text, body.count(shown))  # question, reply, gold at least
