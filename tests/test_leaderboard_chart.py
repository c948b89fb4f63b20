"""The leaderboard chart: 95% intervals as error bars for runs, none for the study's rows, a mark on
runs whose primary metric was not fully scored, and no two texts overlapping however many models."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.axes import Axes
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
    out = []
    for text in fig.findobj(Text):
        if text.get_visible() and text.get_text().strip() and text.get_figure() is not None:
            if (
                isinstance(text.axes, Axes)
                and text in text.axes.get_xticklabels() + text.axes.get_yticklabels()
            ):
                lo, hi = sorted(
                    text.axes.get_xlim() if text in text.axes.get_xticklabels() else text.axes.get_ylim()
                )
                at = text.get_position()[0 if text in text.axes.get_xticklabels() else 1]
                if not lo <= at <= hi:
                    continue  # a tick outside the view is not drawn
            out.append((text.get_text(), text.get_window_extent(renderer)))
    return out


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


@pytest.mark.parametrize("n_models", [1, 2, 6, 13, 24])
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
