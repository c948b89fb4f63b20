from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy.stats import binomtest
from scipy.stats import t as student_t
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from obv_eval.stats import (
    Estimate,
    group_gains,
    holm,
    mcnemar_exact,
    mean_estimate,
    normal_pvalue,
    paired_difference,
    paired_test,
    relative_gain,
    round_half_up,
    wilson_interval,
)

# The study's main-results figure, as in FACTS.md section 1 (accuracy %), typed in independently of the
# committed results/reference/study_figure.json.
STUDY = {
    "2B": {
        "mimicechoqa": 21.1,
        "surgeryvqa": 10.3,
        "vqarad": 14.7,
        "pathvqa": 17.6,
        "slake": 39.4,
        "medqa": 34.9,
        "pubmedqa": 67.7,
    },
    "2B-biomed": {
        "mimicechoqa": 42.0,
        "surgeryvqa": 20.4,
        "vqarad": 58.2,
        "pathvqa": 53.5,
        "slake": 61.7,
        "medqa": 34.6,
        "pubmedqa": 68.6,
    },
    "7B": {
        "mimicechoqa": 40.0,
        "surgeryvqa": 16.5,
        "vqarad": 55.4,
        "pathvqa": 28.5,
        "slake": 55.2,
        "medqa": 52.6,
        "pubmedqa": 73.8,
    },
    "7B-biomed": {
        "mimicechoqa": 45.8,
        "surgeryvqa": 25.1,
        "vqarad": 72.5,
        "pathvqa": 64.6,
        "slake": 69.3,
        "medqa": 47.4,
        "pubmedqa": 77.2,
    },
}
VIDEO = ("mimicechoqa", "surgeryvqa")
TEXT = ("medqa", "pubmedqa")


def test_unclustered_estimate_by_hand() -> None:
    # mean 0.5; sample variance = 6 * 0.25 / 5 = 0.3; SE = sqrt(0.3 / 6) = sqrt(0.05)
    est = mean_estimate([1, 0, 1, 1, 0, 0])
    assert est.mean == 0.5
    assert est.se == pytest.approx(math.sqrt(0.05))
    # 0/1 scores without clusters: exactly statsmodels' Wilson interval
    low, high = proportion_confint(3, 6, alpha=0.05, method="wilson")
    assert (est.ci_low, est.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert (est.n, est.n_clusters, est.method) == (6, 6, "wilson")


def test_clustered_estimate_by_hand() -> None:
    # residuals +.5 -.5 | +.5 +.5 | -.5 -.5 -> cluster sums 0, 1, -1; Σ sums² = 2;
    # 2 / n² = 2/36, times G/(G-1) = 3/2 -> 1/12
    est = mean_estimate([1, 0, 1, 1, 0, 0], ["a", "a", "b", "b", "c", "c"])
    assert est.mean == 0.5
    assert est.se == pytest.approx(math.sqrt(1 / 12))
    # Wilson on n / deff with deff = (1/12) / (0.3/6) = 5/3, and t(2) for 3 clusters
    low, high = wilson_interval(0.5, 6 / (5 / 3), float(student_t.isf(0.025, 2)))
    assert (est.ci_low, est.ci_high) == (pytest.approx(low), pytest.approx(high))
    assert (est.n, est.n_clusters, est.method) == (6, 3, "wilson-cluster")


def test_clustered_se_matches_statsmodels_cluster_robust_ols() -> None:
    rng = np.random.default_rng(0)
    clusters = np.repeat([f"c{i}" for i in range(12)], rng.integers(1, 6, size=12))
    values = (rng.random(clusters.size) < 0.4).astype(float)
    fit = sm.OLS(values, np.ones((values.size, 1))).fit(
        cov_type="cluster", cov_kwds={"groups": np.unique(clusters, return_inverse=True)[1]}
    )
    est = mean_estimate(values.tolist(), clusters.tolist())
    assert est.mean == pytest.approx(fit.params[0])
    assert est.se == pytest.approx(fit.bse[0], rel=1e-12)


def test_one_item_per_cluster_equals_unclustered() -> None:
    values = [0.2, 0.9, 0.4, 0.4, 1.0]
    clustered = mean_estimate(values, ["a", "b", "c", "d", "e"])
    plain = mean_estimate(values)
    assert clustered.se == pytest.approx(plain.se)


def test_degenerate_samples() -> None:
    empty = mean_estimate([])
    assert math.isnan(empty.mean) and math.isnan(empty.se) and empty.n == 0
    one = mean_estimate([1.0])
    assert one.mean == 1.0 and math.isnan(one.se) and math.isnan(one.ci_low)
    one_cluster = mean_estimate([1.0, 0.0], ["x", "x"])
    assert one_cluster.mean == 0.5 and math.isnan(one_cluster.se) and one_cluster.n_clusters == 1
    with pytest.raises(ValueError, match="cluster keys"):
        mean_estimate([1.0, 0.0], ["x"])


def test_estimate_dict_is_json_safe_and_round_trips() -> None:
    d = mean_estimate([1.0]).to_dict()
    assert d == {
        "mean": 1.0,
        "se": None,
        "ci_low": None,
        "ci_high": None,
        "n": 1,
        "n_clusters": 1,
        "method": "",
    }
    est = mean_estimate([1, 0, 1])
    assert Estimate.from_dict(est.to_dict()) == est


def test_paired_difference_is_mean_of_b_minus_a() -> None:
    # differences 1, 0, 0, -1: mean 0, sample variance 2/3, SE sqrt(2/3 / 4)
    est = paired_difference([0, 1, 0, 1], [1, 1, 0, 0])
    assert est.mean == 0.0
    assert est.se == pytest.approx(math.sqrt(1 / 6))
    est = paired_difference([0, 0, 0], [1, 1, 0])
    assert est.mean == pytest.approx(2 / 3)
    # differences are not proportions: mean ± q · SE clipped to [-1, 1] (2/3 + 1.96 · 0.333 is past 1), and
    # no change at all is a zero-width interval at 0
    assert est.method == "normal-clipped" and est.ci_high == 1.0
    assert est.ci_low == pytest.approx(est.mean - 1.96 * est.se, abs=1e-3)
    same = paired_difference([0, 1, 1, 0], [0, 1, 1, 0])
    assert (same.ci_low, same.ci_high) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same items"):
        paired_difference([0, 1], [1])


@pytest.mark.parametrize(
    ("b01", "b10", "same"), [(7, 2, 10), (0, 5, 3), (12, 12, 0), (1, 0, 4), (30, 14, 50)]
)
def test_mcnemar_matches_binomial_test_on_discordant_pairs(b01: int, b10: int, same: int) -> None:
    a = [0] * b01 + [1] * b10 + [1] * same + [0] * same
    b = [1] * b01 + [0] * b10 + [1] * same + [0] * same
    result = mcnemar_exact(a, b)
    assert (result.b01, result.b10) == (b01, b10)
    assert result.statistic == min(b01, b10)
    assert result.pvalue == pytest.approx(binomtest(b01, b01 + b10, 0.5).pvalue)


def test_mcnemar_without_discordant_pairs_and_bad_input() -> None:
    result = mcnemar_exact([0, 1, 1], [0, 1, 1])
    assert (result.b01, result.b10, result.pvalue) == (0, 0, 1.0)
    with pytest.raises(ValueError, match="0/1"):
        mcnemar_exact([0, 0.5], [1, 1])
    with pytest.raises(ValueError, match="same items"):
        mcnemar_exact([0, 1], [1])


def test_normal_pvalue() -> None:
    est = Estimate(mean=-1.96, se=1.0, ci_low=-3.92, ci_high=0.0, n=10, n_clusters=10)
    assert normal_pvalue(est) == pytest.approx(0.05, abs=1e-4)
    assert math.isnan(normal_pvalue(mean_estimate([1.0])))


def test_round_half_up_rounds_like_a_person() -> None:
    assert round_half_up(-2.65, 1) == -2.7
    assert round_half_up(0.25, 1) == 0.3
    assert round_half_up(2.675, 2) == 2.68  # round() gives 2.67 (binary value below the half)
    assert math.isnan(round_half_up(math.nan))


def test_relative_gain() -> None:
    assert relative_gain(50.0, 75.0) == 50.0
    assert relative_gain(40.0, 30.0) == -25.0
    assert math.isnan(relative_gain(0.0, 10.0))


def test_group_gains_reproduce_the_study_headlines() -> None:
    # 2B video 98.7: the relative gain of the group mean (15.7 -> 31.2)
    video_2b = group_gains(STUDY["2B"], STUDY["2B-biomed"], VIDEO)
    assert round_half_up(video_2b["gain_of_mean"], 1) == 98.7
    assert video_2b["gain_of_mean"] == pytest.approx((31.2 - 15.7) / 15.7 * 100)
    assert round_half_up(video_2b["mean_of_gains"], 1) == 98.6  # the other definition does not give it

    # 2B text 0.2: the mean of per-benchmark gains (-0.86 and +1.33)
    text_2b = group_gains(STUDY["2B"], STUDY["2B-biomed"], TEXT)
    assert round_half_up(text_2b["mean_of_gains"], 1) == 0.2
    assert round_half_up(text_2b["gain_of_mean"], 1) == 0.6

    # 7B text -2.7: the mean of per-benchmark gains (-9.886 and +4.607) is -2.639, i.e. -2.6 at one
    # decimal; the abstract's -2.7 comes out when each benchmark's gain is rounded first
    # (-9.9, +4.6 -> -2.65).
    text_7b = group_gains(STUDY["7B"], STUDY["7B-biomed"], TEXT)
    assert text_7b["mean_of_gains"] == pytest.approx(-2.6394, abs=1e-4)
    assert round_half_up(text_7b["gain_of_mean"], 1) == -1.4
    text_7b_rounded = group_gains(STUDY["7B"], STUDY["7B-biomed"], TEXT, per_bench_decimals=1)
    assert round_half_up(text_7b_rounded["mean_of_gains"], 1) == -2.7
    assert (
        round_half_up(
            group_gains(STUDY["2B"], STUDY["2B-biomed"], TEXT, per_bench_decimals=1)["mean_of_gains"], 1
        )
        == 0.2
    )


def test_group_gains_needs_every_benchmark() -> None:
    with pytest.raises(ValueError, match="medqa"):
        group_gains({"pubmedqa": 1.0}, {"pubmedqa": 2.0, "medqa": 1.0}, TEXT)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (10, 10), (0, 10), (3, 7), (50, 50)])
def test_wilson_matches_statsmodels_and_never_collapses(k: int, n: int) -> None:
    est = mean_estimate([1.0] * k + [0.0] * (n - k))
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert (est.ci_low, est.ci_high) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert 0.0 <= est.ci_low < est.ci_high <= 1.0
    # clustered (pairs of items), still inside [0, 1] with a non-zero width, and wider or equal
    clustered = mean_estimate([1.0] * k + [0.0] * (n - k), [str(i // 2) for i in range(n)])
    assert 0.0 <= clustered.ci_low < clustered.ci_high <= 1.0
    assert clustered.ci_high - clustered.ci_low >= est.ci_high - est.ci_low - 1e-12


def test_one_of_ten_and_ten_of_ten_are_inside_the_unit_interval() -> None:
    # the Wald intervals: 1/10 gave [-0.096, 0.296], 10/10 gave [1.0, 1.0]
    one = mean_estimate([1.0] + [0.0] * 9)
    assert one.ci_low > 0 and one.ci_high < 1
    full = mean_estimate([1.0] * 10)
    assert full.ci_high == pytest.approx(1.0) and full.ci_low < 1.0


def test_clustered_example_gets_no_significance() -> None:
    # 100 items in 10 clusters of 10; 3 clusters all gained, 1 all lost (the example)
    a = [0.0] * 30 + [1.0] * 10 + [0.0] * 60
    b = [1.0] * 30 + [0.0] * 10 + [0.0] * 60
    clusters = [f"c{i // 10}" for i in range(100)]
    assert mcnemar_exact(a, b).pvalue < 0.01  # items treated as independent: "significant"
    result = paired_test(a, b, clusters)
    assert result.method == "clustered-t"
    assert result.estimate.mean == pytest.approx(0.2) and result.estimate.se == pytest.approx(0.2)
    assert result.pvalue == pytest.approx(2 * student_t.sf(1.0, 9))
    assert result.pvalue > 0.05
    assert result.estimate.ci_low < 0 < result.estimate.ci_high
    # singleton clusters and 0/1 scores: McNemar's exact test is kept
    singles = paired_test(a, b, [str(i) for i in range(100)])
    assert singles.method == "mcnemar-exact" and singles.pvalue == mcnemar_exact(a, b).pvalue


def test_paired_interval_with_three_clusters_stays_in_the_possible_range() -> None:
    # 3 clusters of 10: one all gained, one all lost, one half gained (the report showed
    # [-182.9, +107.9] points for such a case)
    a = [0.0] * 10 + [1.0] * 10 + [0.0] * 10
    b = [1.0] * 10 + [0.0] * 10 + [1.0] * 5 + [0.0] * 5
    clusters = [f"c{i // 10}" for i in range(30)]
    est = paired_difference(a, b, clusters)
    raw = mean_estimate([y - x for x, y in zip(a, b, strict=True)], clusters, proportion=False)
    assert raw.method == "t-cluster" and raw.ci_low < -1 and raw.ci_high > 1  # mean ± t(2) · SE
    assert est.method == "t-cluster-clipped" and (est.ci_low, est.ci_high) == (-1.0, 1.0)
    assert (est.mean, est.se) == (raw.mean, raw.se)  # the test behind a star is unchanged
    # an interval already inside the range is not moved; values that are not scores are not clipped
    many = paired_difference([0.0] * 50 + [1.0] * 50, [1.0] * 60 + [0.0] * 40)
    assert many.method == "normal-clipped"
    assert many.ci_low == pytest.approx(many.mean - 1.96 * many.se, abs=1e-3) and many.ci_high < 1
    wide = paired_difference([0.0, 0.0, 0.0], [3.0, 0.0, -1.0])
    assert wide.method == "normal" and wide.ci_high > 1


def test_holm_matches_statsmodels() -> None:
    ps = {"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan}
    adjusted = holm(ps)
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    assert [adjusted[k] for k in "abc"] == pytest.approx(list(expected))
    assert math.isnan(adjusted["d"])
