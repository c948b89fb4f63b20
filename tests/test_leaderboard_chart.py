"""The leaderboard chart: 95% intervals as error bars for runs, none for the study's rows, and a mark on
runs whose primary metric was not fully scored."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from obv_eval.leaderboard import (
    NOT_FULLY_SCORED_MARK,
    STUDY_PREFIX,
    Run,
    build_table,
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


def test_chart_draws_error_bars_and_marks(tmp_path: Path, runs: list[Run]) -> None:
    # An all-unscored benchmark: drawn as "not scored", not as a zero bar.
    edited = copy.deepcopy(runs[0].results)
    task = next(iter(edited["tasks"]))
    summary = edited["tasks"][task]
    primary = summary["primary_metric"]
    summary["metrics"][primary] = {**summary["metrics"][primary], "mean": None, "se": None}
    summary["metrics"][primary].update(ci_low=None, ci_high=None)
    summary["unscored"], summary["scored"] = summary["n"], 0
    changed = [Run(edited, runs[0].run_dir), *runs[1:]]
    table = build_table(changed, reference=False)
    assert math.isnan(table.loc[edited["model"], (task, "mean")])

    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

    captured: list[Figure] = []
    original = Figure.savefig

    def keep(self: Figure, *args: object, **kwargs: object) -> None:
        captured.append(self)
        original(self, *args, **kwargs)

    Figure.savefig = keep  # type: ignore[method-assign]
    try:
        path = render_bar_chart(table, tmp_path / "chart.png", unscored_counts(changed))
    finally:
        Figure.savefig = original  # type: ignore[method-assign]
    ax = captured[0].axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert any("not scored" in t for t in texts)
    assert sum(t.startswith(NOT_FULLY_SCORED_MARK) for t in texts) >= 2
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(label.endswith(NOT_FULLY_SCORED_MARK) for label in legend)
    # one error-bar line collection per run (bar containers keep their errorbar)
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert sum(c.errorbar is not None for c in bars) == len(changed)
    assert any("95% interval" in t.get_text() for t in captured[0].texts)
    with Image.open(path) as image:
        assert np.asarray(image.convert("L")).std() > 10
