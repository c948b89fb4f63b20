"""The leaderboard chart: 95% intervals as error bars for runs, none for the study's rows, a mark on
runs whose primary metric was not fully scored, and no two texts overlapping however many models."""

from __future__ import annotations

import copy
import html
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox
from PIL import Image

from obv_eval.leaderboard import (
    CHART_DPI,
    NOT_FULLY_SCORED_MARK,
    STUDY_PREFIX,
    Run,
    build_table,
    chart_figure,
    chart_series,
    load_runs,
    render_bar_chart,
    unscored_counts,
)

FIXTURES = Path(__file__).parent / "fixtures" / "runs"


@pytest.fixture(scope="module")
def runs() -> list[Run]:
    return load_runs([FIXTURES])


def test_runs_have_interval_error_bars_and_study_rows_none(runs: list[Run]) -> None:
    table = build_table(runs)
    benches, series = chart_series(table, unscored_counts(runs))
    by_model = {s.model: s for s in series}
    for run in runs:
        item = by_model[run.model]
        assert item.yerr is not None and not item.study
        for task, summary in run.results["tasks"].items():
            estimate = summary["metrics"][summary["primary_metric"]]
            j = benches.index(task)
            assert item.means[j] == pytest.approx(100 * estimate["mean"])
            assert item.yerr[0][j] == pytest.approx(100 * (estimate["mean"] - estimate["ci_low"]))
            assert item.yerr[1][j] == pytest.approx(100 * (estimate["ci_high"] - estimate["mean"]))
            assert item.yerr[1][j] > 0
    study = [s for s in series if s.model.startswith(STUDY_PREFIX)]
    assert study and all(s.yerr is None and s.study and not any(s.not_fully_scored) for s in study)


def test_not_fully_scored_runs_are_marked(runs: list[Run]) -> None:
    counts = unscored_counts(runs)
    expected = {run.model: {t for t, s in run.results["tasks"].items() if s["unscored"] > 0} for run in runs}
    assert any(expected.values()), "the fixtures should hold a task with unscored items"
    benches, series = chart_series(build_table(runs), counts)
    for item in series:
        flagged = {b for b, f in zip(benches, item.not_fully_scored, strict=True) if f}
        assert flagged == expected.get(item.model, set())


def _unscored_everywhere(run: Run, tasks: list[str]) -> Run:
    """The run with nothing scored on these tasks (as an unjudged image task leaves its primary metric)."""
    edited = copy.deepcopy(run.results)
    for task in tasks:
        summary = edited["tasks"][task]
        primary = summary["primary_metric"]
        summary["metrics"][primary] = {**summary["metrics"][primary], "mean": None, "se": None}
        summary["metrics"][primary].update(ci_low=None, ci_high=None)
        summary["unscored"], summary["scored"] = summary["n"], 0
    return Run(edited, run.run_dir)


def test_chart_draws_error_bars_and_marks(tmp_path: Path, runs: list[Run]) -> None:
    # An all-unscored benchmark: drawn as "not scored", not as a zero bar.
    task = next(iter(runs[0].results["tasks"]))
    changed = [_unscored_everywhere(runs[0], [task]), *runs[1:]]
    table = build_table(changed, reference=False)
    assert math.isnan(table.loc[changed[0].model, (task, "mean")])

    from matplotlib.container import BarContainer

    fig = chart_figure(table, unscored_counts(changed))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts.count("not scored") == 1
    assert sum(t == NOT_FULLY_SCORED_MARK for t in texts) >= 2
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(label.endswith(NOT_FULLY_SCORED_MARK) for label in legend)
    # one error-bar line collection per run (bar containers keep their errorbar)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert sum(c.errorbar is not None for c in bars) == len(changed)
    assert any("95% interval" in t.get_text() for t in fig.texts)
    path = render_bar_chart(table, tmp_path / "chart.png", unscored_counts(changed))
    with Image.open(path) as image:
        assert np.asarray(image.convert("L")).std() > 10


# -- no two texts overlap, every text inside the image and readable ------------------------------------


def text_boxes(fig: Figure) -> list[tuple[str, Bbox]]:
    """Every visible, non-empty text the figure draws (tick labels, legend, labels on bars, footnote), with
    its box in pixels as drawn."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    hidden = set()  # tick labels outside the view are not drawn
    for ax in fig.axes:
        for labels, (lo, hi), k in (
            (ax.get_xticklabels(), ax.get_xlim(), 0),
            (ax.get_yticklabels(), ax.get_ylim(), 1),
        ):
            hidden.update(id(t) for t in labels if not min(lo, hi) <= t.get_position()[k] <= max(lo, hi))
    return [
        (text.get_text(), text.get_window_extent(renderer))
        for text in fig.findobj(Text)
        if text.get_visible() and text.get_text().strip() and id(text) not in hidden
    ]


def overlaps(fig: Figure) -> list[tuple[str, str]]:
    boxes = text_boxes(fig)
    hits = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1 :]:
            # touching edges are fine; half a pixel of ink into another text is not
            if min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0) > 0.5 and (
                min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0) > 0.5
            ):
                hits.append((a, b))
    return hits


def assert_readable(fig: Figure) -> None:
    assert overlaps(fig) == []
    width, height = fig.canvas.get_width_height()
    for text, box in text_boxes(fig):
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height, f"{text!r} is cut off"
    footnote = fig.texts[-1]
    assert footnote.get_fontsize() >= 10 and "95% interval" in footnote.get_text()
    assert all(t.get_fontsize() >= 8 for t in fig.findobj(Text) if t.get_text().strip())


def test_the_overlap_check_sees_overlapping_texts() -> None:
    fig = Figure(figsize=(4, 3), dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    fig.text(0.5, 0.5, "not scored")
    fig.text(0.52, 0.5, "not scored")
    fig.text(0.1, 0.1, "apart")
    assert overlaps(fig) == [("not scored", "not scored")]


def test_two_runs_not_scored_side_by_side_do_not_overlap(runs: list[Run]) -> None:
    # The demo's case: two runs with nothing scored on the same benchmarks ("notnotscored" before).
    tasks = sorted(set(runs[0].results["tasks"]) & set(runs[1].results["tasks"]))
    both = [_unscored_everywhere(run, tasks) for run in runs]
    table = build_table(both)
    fig = chart_figure(table, unscored_counts(both))
    labels = [t for ax in fig.axes for t in ax.texts if t.get_text() == "not scored"]
    assert len(labels) == 2 * len(tasks)
    assert_readable(fig)


@pytest.mark.parametrize("n_models", [1, 13, 24])
def test_any_number_of_models_keeps_every_text_apart(runs: list[Run], n_models: int) -> None:
    # Models alternate between fully scored and nothing scored on one benchmark; names long and short.
    many = []
    for i in range(n_models):
        source = runs[i % len(runs)]
        results = copy.deepcopy(source.results)
        results["model"] = f"org-{i:02d}/" + ("a-rather-long-model-name-" * (i % 4)) + "model"
        results["run_id"] = f"run-{i}"
        run = Run(results, None)
        many.append(_unscored_everywhere(run, [next(iter(results["tasks"]))]) if i % 2 else run)
    table = build_table(many)
    fig = chart_figure(table, unscored_counts(many))
    assert_readable(fig)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert len(legend) == n_models + 5  # every run and the study's five rows, labelled
    assert sum(label.startswith(STUDY_PREFIX) for label in legend) == 5
    shown = {t.get_text().replace("\n", " ") for ax in fig.axes for t in ax.get_xticklabels()}
    assert len([s for s in shown if s]) == len(chart_series(table)[0])  # every benchmark on some panel
    assert fig.get_figwidth() <= 12.5 or n_models > 40  # fits the HTML page unscaled


def test_the_fixture_chart_is_readable(runs: list[Run]) -> None:
    assert_readable(chart_figure(build_table(runs), unscored_counts(runs)))


# -- the HTML page in a real browser: no two pieces of text overlap -------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

# Appended to a copy of the page (the page itself runs no script): after layout, the box of every line of
# every text node; any two from different nodes that overlap by more than half a pixel are reported.
LAYOUT_CHECK = """<script>
addEventListener("load", () => {
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(), k = 0; node; node = walker.nextNode(), k++) {
    if (!node.textContent.trim()) continue;
    const range = document.createRange();
    range.selectNodeContents(node);
    for (const r of range.getClientRects()) {
      if (r.width > 0 && r.height > 0) boxes.push([k, node.textContent.trim().slice(0, 40), r]);
    }
  }
  const hits = [];
  for (let i = 0; i < boxes.length; i++) {
    for (let j = i + 1; j < boxes.length; j++) {
      const [ka, ta, a] = boxes[i], [kb, tb, b] = boxes[j];
      if (ka !== kb && Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5
          && Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5) hits.push([ta, tb]);
    }
  }
  const img = document.querySelector("img");
  const out = document.createElement("pre");
  out.id = "layout-check";
  out.textContent = JSON.stringify({
    hits, texts: boxes.length, page_width: document.documentElement.scrollWidth,
    img_scale: img ? img.clientWidth / img.naturalWidth : null,
  });
  document.body.appendChild(out);
});
</script>"""


def layout_in_chromium(page: Path, tmp_path: Path, width: int = 1400) -> dict[str, object]:
    assert CHROMIUM is not None
    checked = tmp_path / f"checked-{page.name}"
    checked.write_text(page.read_text(encoding="utf-8").replace("</body>", LAYOUT_CHECK + "</body>"))
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    command += [f"--user-data-dir={tmp_path / 'profile'}", f"--window-size={width},1800"]
    command += ["--virtual-time-budget=5000", "--dump-dom", checked.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    match = re.search(r'<pre id="layout-check">(.*?)</pre>', done.stdout, re.S)
    assert match, "the layout check did not run"
    result: dict[str, object] = json.loads(html.unescape(match.group(1)))
    if os.environ.get("OBV_EVAL_ARTIFACTS"):  # a screenshot to look at
        shot = Path(os.environ["OBV_EVAL_ARTIFACTS"]) / f"leaderboard-{page.parent.name}.png"
        subprocess.run(
            [*command[:-3], f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120
        )
    return result


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (scripts/test.sh installs it as root)")
@pytest.mark.parametrize("case", ["fixtures", "two-not-scored", "many-hostile-names"])
def test_the_leaderboard_page_has_no_overlapping_text_in_chromium(
    runs: list[Run], tmp_path: Path, case: str
) -> None:
    from obv_eval.leaderboard import write_leaderboard

    chosen = list(runs)
    if case == "two-not-scored":
        tasks = sorted(set(runs[0].results["tasks"]) & set(runs[1].results["tasks"]))
        chosen = [_unscored_everywhere(run, tasks) for run in runs]
    elif case == "many-hostile-names":
        names = ["=1+1", "a|b", "<b>bold</b>", "x" * 80, *(f"org/some-model-{i}" for i in range(8))]
        chosen = []
        for i, name in enumerate(names):
            results = copy.deepcopy(runs[i % 2].results)
            results["model"], results["run_id"] = name, f"r{i}"
            chosen.append(Run(results))
    paths = write_leaderboard(tmp_path / case, chosen)
    layout = layout_in_chromium(paths["html"], tmp_path)
    assert layout["hits"] == [], layout["hits"]
    assert isinstance(layout["texts"], int) and layout["texts"] > 100
    assert layout["img_scale"] == 1.0  # the chart at its own size: its 10 pt footnote reads as 10 pt
    assert isinstance(layout["page_width"], int) and layout["page_width"] <= 1400  # wide tables scroll
