"""Error bars and paired comparisons for eval scores.

Follows Miller 2024, "Adding Error Bars to Evals" (arXiv 2411.00640).

Conventions used throughout:

- 95% interval of a score in [0, 1] (accuracy, F1, a judge verdict): the Wilson score interval on the
  effective sample size n / deff, where deff = (clustered SE / unclustered SE)², floored at 1 (method
  "wilson"; "wilson-cluster" when items share clusters). It stays inside [0, 1] and keeps a non-zero width
  at 0/n and n/n (deff is 1 there: no spread to estimate). With clusters the quantile is Student's t with
  G − 1 degrees of freedom (small-cluster correction) instead of the normal 1.96. Without clusters it is
  exactly statsmodels' proportion_confint(method="wilson") for 0/1 scores.
- Other values: mean ± q · SE with q = 1.96, or t(G − 1) with clusters (method "normal" / "t-cluster").
  A paired difference of two scores in [0, 1] lies in [−1, 1], and its interval is clipped to that range
  (method "normal-clipped" / "t-cluster-clipped"): with few clusters mean ± t · SE can reach far outside
  it (3 clusters gave [−1.83, +1.08]), and no difference outside [−1, 1] is possible. The clipped interval
  keeps the unclipped one's coverage (only impossible values are removed); at the edge it says only
  "at least this large", so a clipped interval is a sign of too few clusters, not of precision.
- Without clusters, SE = sqrt(s² / n) with the sample variance s² (ddof=1).
- With clusters (items sharing a video, study or image), SE is the cluster-robust estimator of the paper's
  Appendix A, sqrt(Σ_c (Σ_{i∈c} (x_i − x̄))² / n²), times the finite-cluster correction G / (G − 1) for G
  clusters. The paper states the estimator without that correction; we add it (as statsmodels' cluster
  covariance and inspect_ai do) so that one item per cluster gives exactly the unclustered SE above.
- The SE is undefined (nan) with fewer than 2 items, or fewer than 2 clusters when clustering: a single
  item or cluster carries no information about spread, and a zero would draw a misleadingly tight interval.
  An empty sample gives a nan mean rather than an exception, so an all-unscored metric still summarises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests

Z95 = 1.96


@dataclass(frozen=True)
class Estimate:
    """A mean with its standard error and 95% interval; n_clusters equals n when no clusters were given."""

    mean: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    n_clusters: int
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: nan becomes None because strict JSON has no NaN."""
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Estimate:
        def num(key: str) -> float:
            value = data.get(key)
            return math.nan if value is None else float(value)

        return cls(
            mean=num("mean"),
            se=num("se"),
            ci_low=num("ci_low"),
            ci_high=num("ci_high"),
            n=int(data["n"]),
            n_clusters=int(data["n_clusters"]),
            method=str(data.get("method", "")),
        )


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test. b01: items a got wrong and b got right; b10: the reverse."""

    b01: int
    b10: int
    statistic: float
    pvalue: float


def _quantile(n_clusters: int, clustered: bool, level: float = 0.95) -> float:
    """Two-sided quantile: normal without clusters, Student's t(G − 1) with G clusters."""
    if not clustered:
        return float(norm.isf((1 - level) / 2))
    return float(student_t.isf((1 - level) / 2, n_clusters - 1))


def wilson_interval(mean: float, n_eff: float, q: float) -> tuple[float, float]:
    """Wilson score interval of a proportion `mean` on `n_eff` (effective) observations, quantile q."""
    q2 = q * q
    denom = 1 + q2 / n_eff
    center = (mean + q2 / (2 * n_eff)) / denom
    half = q / denom * math.sqrt(max(mean * (1 - mean), 0.0) / n_eff + q2 / (4 * n_eff**2))
    return max(0.0, center - half), min(1.0, center + half)


def mean_estimate(
    values: Sequence[float],
    clusters: Sequence[str] | None = None,
    proportion: bool | None = None,
    bounds: tuple[float, float] | None = None,
) -> Estimate:
    """Mean, SE and 95% interval of per-item scores, clustered when cluster keys are given.

    Scores in [0, 1] get a Wilson interval on the design-effect sample size; other values mean ± q · SE.
    Cluster keys that are all distinct are no clustering at all (normal quantile, deff 1).
    proportion: whether the values are scores in [0, 1] (Wilson); None decides from the values.
    bounds: the range the mean can take, for values that are not proportions; mean ± q · SE is clipped to
    it and the method gets the suffix "-clipped".
    """
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"got {n} values but {len(clusters)} cluster keys")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    mean = float(x.mean())
    plain_se = math.sqrt(float(x.var(ddof=1)) / n) if n >= 2 else math.nan
    if clusters is None:
        n_clusters = n
        se = plain_se
    else:
        _, cluster_index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
        n_clusters = int(cluster_index.max()) + 1
        if n_clusters < 2:
            se = math.nan
        else:
            cluster_sums = np.bincount(cluster_index, weights=x - mean)
            variance = float(np.sum(cluster_sums**2)) / n**2 * n_clusters / (n_clusters - 1)
            se = math.sqrt(variance)
    clustered = n_clusters < n
    if not math.isfinite(se):
        return Estimate(mean, se, math.nan, math.nan, n, n_clusters)
    q = _quantile(n_clusters, clustered)
    if proportion is None:
        proportion = bool(((x >= 0) & (x <= 1)).all())
    if proportion:
        deff = (se / plain_se) ** 2 if clustered and plain_se > 0 else 1.0
        low, high = wilson_interval(mean, n / max(deff, 1.0), q)
        method = "wilson-cluster" if clustered else "wilson"
    else:
        low, high = mean - q * se, mean + q * se
        method = "t-cluster" if clustered else "normal"
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
            method += "-clipped"
    return Estimate(mean, se, low, high, n, n_clusters, method)


def paired_difference(
    a: Sequence[float], b: Sequence[float], clusters: Sequence[str] | None = None
) -> Estimate:
    """Estimate of the mean per-item difference b − a over the same items in the same order.

    When every score is in [0, 1] the difference lies in [−1, 1] and the interval is clipped to it.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores must cover the same items: got {len(a)} and {len(b)}")
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    unit = bool(((xa >= 0) & (xa <= 1) & (xb >= 0) & (xb <= 1)).all())
    return mean_estimate((xb - xa).tolist(), clusters, proportion=False, bounds=(-1.0, 1.0) if unit else None)


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> McNemarResult:
    """Exact (binomial) McNemar test on paired 0/1 scores of two systems over the same items."""
    if len(a) != len(b):
        raise ValueError(f"paired scores must cover the same items: got {len(a)} and {len(b)}")
    xa = np.asarray(a, dtype=float)
    xb = np.asarray(b, dtype=float)
    if not (np.isin(xa, (0.0, 1.0)).all() and np.isin(xb, (0.0, 1.0)).all()):
        raise ValueError("McNemar's test needs 0/1 scores")
    n00 = int(np.sum((xa == 0) & (xb == 0)))
    b01 = int(np.sum((xa == 0) & (xb == 1)))
    b10 = int(np.sum((xa == 1) & (xb == 0)))
    n11 = int(np.sum((xa == 1) & (xb == 1)))
    result = mcnemar([[n00, b01], [b10, n11]], exact=True)
    return McNemarResult(b01=b01, b10=b10, statistic=float(result.statistic), pvalue=float(result.pvalue))


def is_binary(values: Sequence[float]) -> bool:
    """True when every value is 0 or 1, i.e. McNemar applies."""
    return bool(np.isin(np.asarray(values, dtype=float), (0.0, 1.0)).all())


def round_half_up(value: float, decimals: int = 1) -> float:
    """Round half away from zero on the decimal text, as people round published numbers (-2.65 -> -2.7).

    Python's round() rounds half to even on the binary value, which disagrees with hand-rounding.
    """
    if math.isnan(value) or math.isinf(value):
        return value
    quantum = Decimal(1).scaleb(-decimals)
    return float(Decimal(repr(value)).quantize(quantum, rounding=ROUND_HALF_UP))


def relative_gain(base: float, tuned: float) -> float:
    """Relative gain in percent, (tuned − base) / base · 100; nan when base is 0 (undefined)."""
    if base == 0:
        return math.nan
    return (tuned - base) / base * 100


def group_gains(
    base: Mapping[str, float],
    tuned: Mapping[str, float],
    benches: Sequence[str],
    per_bench_decimals: int | None = None,
) -> dict[str, float]:
    """Both summaries of a group's relative gain.

    gain_of_mean: relative gain of the group's mean score. mean_of_gains: mean of per-benchmark gains.
    per_bench_decimals rounds each per-benchmark gain (half up) before averaging, which is how a paper
    that reports rounded per-benchmark gains would arrive at its group figure.
    """
    missing = [b for b in benches if b not in base or b not in tuned]
    if missing:
        raise ValueError(f"no score for benchmark(s) {', '.join(missing)} in both base and tuned")
    if not benches:
        raise ValueError("a group needs at least one benchmark")
    base_mean = float(np.mean([base[b] for b in benches]))
    tuned_mean = float(np.mean([tuned[b] for b in benches]))
    gains = [relative_gain(base[b], tuned[b]) for b in benches]
    if per_bench_decimals is not None:
        gains = [round_half_up(g, per_bench_decimals) for g in gains]
    return {
        "gain_of_mean": relative_gain(base_mean, tuned_mean),
        "mean_of_gains": float(np.mean(gains)),
    }


def normal_pvalue(estimate: Estimate) -> float:
    """Two-sided p-value of a mean difference against 0 under the normal approximation (z = mean / SE)."""
    if not (estimate.se > 0):
        return math.nan
    return float(2 * norm.sf(abs(estimate.mean) / estimate.se))


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison b − a: the clustered estimate, and the test behind a significance mark.

    method: "mcnemar-exact" when the scores are 0/1 and every item is its own cluster (independent items),
    otherwise "clustered-t": t = mean / clustered SE on G − 1 degrees of freedom (per-cluster sums of the
    differences), so correlated items sharing a video or image do not count as independent evidence.
    """

    estimate: Estimate
    pvalue: float
    method: str
    mcnemar: McNemarResult | None = None


def clustered_pvalue(estimate: Estimate, alternative: str = "two-sided") -> float:
    """p-value of mean = 0 from t = mean / SE on G − 1 df; independent items are G = n clusters of one,
    so the test is then the paired t-test on n − 1 df. (The normal quantile there exceeds the level with
    few changed items: by up to 1.38x at 100 items and the gate's smallest level, computed exactly in
    benchmarks/gate_simulation.py; t(n − 1) keeps it.)

    alternative "less": the one-sided test of a drop (mean < 0). A zero SE with a non-zero mean is
    p = 0 (every cluster moved the same way); a zero SE and zero mean is p = 1.
    """
    if not math.isfinite(estimate.se) or not math.isfinite(estimate.mean):
        return math.nan
    if estimate.se == 0:
        if estimate.mean == 0:
            return 1.0
        if alternative == "less":
            return 0.0 if estimate.mean < 0 else 1.0
        return 0.0
    stat = estimate.mean / estimate.se
    dist: Any = student_t(estimate.n_clusters - 1)
    if alternative == "less":
        return float(dist.cdf(stat))
    return float(2 * dist.sf(abs(stat)))


def paired_test(a: Sequence[float], b: Sequence[float], clusters: Sequence[str] | None = None) -> PairedTest:
    """Two-sided paired test of b against a on the same items; see PairedTest for the method."""
    estimate = paired_difference(a, b, clusters)
    singletons = clusters is None or len(set(clusters)) == len(clusters)
    if singletons and is_binary(a) and is_binary(b):
        exact = mcnemar_exact(a, b)
        return PairedTest(estimate, exact.pvalue, "mcnemar-exact", exact)
    return PairedTest(estimate, clustered_pvalue(estimate), "clustered-t")


def holm(pvalues: Mapping[str, float]) -> dict[str, float]:
    """Holm-adjusted p-values (family-wise error control over the family given); nan stays nan."""
    keys = [k for k, p in pvalues.items() if math.isfinite(p)]
    out = {k: math.nan for k in pvalues}
    if keys:
        adjusted = multipletests([pvalues[k] for k in keys], method="holm")[1]
        out.update({k: float(p) for k, p in zip(keys, adjusted, strict=True)})
    return out
