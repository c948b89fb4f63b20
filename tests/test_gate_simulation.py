"""The gate simulation (benchmarks/gate_simulation.py) simulates the test regress runs, and its comparators
are what they say: the SE is the model's, the t bound is the t test's power on normal cluster sums."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from scipy.stats import norm

from obv_eval.stats import clustered_pvalue, paired_difference

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gate_simulation.py"


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gate_simulation", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gate_simulation"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def items_of(sums: np.ndarray, sizes: np.ndarray) -> tuple[list[float], list[float], list[str]]:
    """Baseline and run 0/1 scores whose per-cluster differences add up to the simulated sums."""
    a: list[float] = []
    b: list[float] = []
    clusters: list[str] = []
    for k, (total, size) in enumerate(zip(sums.astype(int), sizes, strict=True)):
        moved = abs(int(total))
        assert moved <= size
        for i in range(int(size)):
            lost, gained = i < moved and total < 0, i < moved and total > 0
            a.append(1.0 if lost else 0.0)
            b.append(1.0 if gained else 0.0)
            clusters.append(f"c{k}")
    return a, b, clusters


@pytest.mark.parametrize("n,cluster", [(100, 10), (300, 5), (200, 1)])
def test_the_simulated_gate_is_the_test_regress_runs(sim: ModuleType, n: int, cluster: int) -> None:
    rng = np.random.default_rng(3)
    sizes = sim.grid_shape(n, cluster).sizes
    level = 0.04 / 7
    sums = sim.cluster_sums(rng, 200, sizes, 0.2, 0.06)
    stats = sim.clustered_stat(sums, sizes)
    rejects = sim.gate_rejects(sums, sizes, level)
    assert 0 < rejects.sum() < len(rejects)  # both outcomes are exercised
    for replicate in range(len(sums)):
        a, b, clusters = items_of(sums[replicate], sizes)
        estimate = paired_difference(a, b, None if cluster == 1 else clusters)
        if math.isfinite(stats[replicate]) and estimate.se > 0:
            assert estimate.mean / estimate.se == pytest.approx(stats[replicate], rel=1e-9)
        assert (clustered_pvalue(estimate, alternative="less") < level) == rejects[replicate]


def test_true_se_is_the_spread_of_the_simulated_paired_mean(sim: ModuleType) -> None:
    rng = np.random.default_rng(4)
    sizes = sim.grid_shape(300, 10).sizes
    means = sim.cluster_sums(rng, 100_000, sizes, 0.2, 0.04).sum(axis=1) / sizes.sum()
    assert float(means.mean()) == pytest.approx(-0.04, abs=4 * float(means.std()) / math.sqrt(means.size))
    assert float(means.std()) == pytest.approx(sim.true_se(sizes, 0.2, 0.04), rel=0.01)


@pytest.mark.parametrize("groups", [10, 30])
def test_t_bound_is_the_t_tests_power_on_normal_cluster_sums(sim: ModuleType, groups: int) -> None:
    rng = np.random.default_rng(5)
    sizes = np.full(groups, 10)
    churn, drop, level, reps = 0.2, 0.08, 0.05, 100_000
    sd = sim.true_se(sizes, churn, drop) * sizes.sum() / math.sqrt(groups)  # per cluster sum
    sums = rng.normal(-drop * 10, sd, size=(reps, groups))
    simulated = float(sim.gate_rejects(sums, sizes, level).mean())
    bound = sim.t_bound(sizes, churn, drop, level)
    assert 0.1 < bound < 0.9
    assert simulated == pytest.approx(bound, abs=4 * math.sqrt(bound * (1 - bound) / reps))
    # The oracle (known SE) is stronger than any test that estimates the SE, most with few clusters.
    oracle = float(sim.oracle_rejects(sums, sizes, sim.true_se(sizes, churn, drop), level).mean())
    assert oracle > bound


def test_the_gate_keeps_its_level_on_the_models_null(sim: ModuleType) -> None:
    rng = np.random.default_rng(6)
    sizes = sim.grid_shape(300, 5).sizes
    reps, level = 100_000, 0.05
    rate = float(sim.gate_rejects(sim.cluster_sums(rng, reps, sizes, 0.2, 0.0), sizes, level).mean())
    assert rate == pytest.approx(level, abs=4 * math.sqrt(level * (1 - level) / reps))


def test_vqarad_and_slake_are_simulated_with_their_real_cluster_sizes(
    sim: ModuleType, realdata: Path
) -> None:
    shapes = {shape.name: shape for shape in sim.benchmark_shapes(realdata)}
    for name, n, images, smallest, largest in (("VQA-RAD", 451, 203, 1, 7), ("SLAKE", 1061, 96, 5, 20)):
        sizes = shapes[name].sizes
        assert (int(sizes.sum()), sizes.size) == (n, images)  # the published test split
        assert (int(sizes.min()), int(sizes.max())) == (smallest, largest)  # unequal, as released
    # Without the releases the shapes fall back to equal clusters of the same totals.
    fallback = {shape.name: shape for shape in sim.benchmark_shapes(realdata / "absent")}
    assert int(np.ptp(fallback["SLAKE"].sizes)) <= 1 and int(fallback["SLAKE"].sizes.sum()) == 1061


@pytest.mark.parametrize("n,churn,level", [(60, 0.1, 0.05), (200, 0.2, 0.01)])
def test_exact_false_alarm_on_independent_items_is_the_simulated_gates(
    sim: ModuleType, n: int, churn: float, level: float
) -> None:
    rng = np.random.default_rng(7)
    sizes = sim.grid_shape(n, 1).sizes
    reps = 200_000
    simulated = float(sim.gate_rejects(sim.cluster_sums(rng, reps, sizes, churn, 0.0), sizes, level).mean())
    exact = sim.exact_independent_false_alarm(n, churn, level)
    assert exact == pytest.approx(simulated, abs=4 * math.sqrt(exact * (1 - exact) / reps))
    # Discreteness: few changed items leave part of the level unused, which is why the comparator is
    # taken at the actual rate rather than the nominal one.
    assert exact != pytest.approx(level, rel=1e-3)


def test_gate_levels_measure_the_gates_false_alarms_and_feed_the_t_bound(sim: ModuleType) -> None:
    sizes = sim.grid_shape(100, 10).sizes
    loose, tight = sim.gate_levels(np.random.default_rng(8), sizes, 0.1, (0.05, 0.01))
    assert (loose.nominal, tight.nominal) == (0.05, 0.01)
    check = sim.cluster_sums(np.random.default_rng(9), 100_000, sizes, 0.1, 0.0)
    for measured in (loose, tight):
        expected = float(sim.gate_rejects(check, sizes, measured.nominal).mean())
        assert measured.actual == pytest.approx(expected, abs=4 * measured.se + 4 * math.sqrt(expected / 1e5))
    assert tight.actual < loose.actual
    # The matched comparator is the t bound at the measured rate; the nominal one is returned beside it.
    gate, matched, oracle, nominal = sim.rates(np.random.default_rng(10), 2000, sizes, 0.1, 0.06, tight)
    assert matched == sim.t_bound(sizes, 0.1, 0.06, tight.actual)
    assert nominal == sim.t_bound(sizes, 0.1, 0.06, 0.01)
    assert (matched < nominal) == (tight.actual < 0.01)
    assert abs(gate - matched) < 0.05 and oracle > matched  # the target, at this point; the envelope above it
    # Independent items: computed exactly, no Monte Carlo error.
    (exact,) = sim.gate_levels(np.random.default_rng(11), sim.grid_shape(100, 1).sizes, 0.1, (0.01,))
    assert exact.se == 0 and exact.actual == sim.exact_independent_false_alarm(100, 0.1, 0.01)


def test_independent_items_are_tested_on_n_minus_1_df_because_the_normal_quantile_exceeds_the_level(
    sim: ModuleType,
) -> None:
    # 100 independent items at the other metrics' level (0.01/21): with few changed items the z test's
    # false alarms exceed the level by more than a third; the paired t-test on 99 df (the gate's) keeps it.
    level = 0.01 / 21
    with_z = sim.exact_independent_false_alarm(100, 0.3, level, crit=float(norm.ppf(level)))
    assert with_z > 1.3 * level
    for churn in sim.CHURNS:
        assert sim.exact_independent_false_alarm(100, churn, level) <= 1.02 * level
