"""Error bars and paired comparisons for eval scores.

Follows Miller 2024, "Adding Error Bars to Evals" (arXiv 2411.00640).

Conventions used throughout:

- 95% interval = mean ± 1.96 · SE (normal approximation, as in the paper).
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
from statsmodels.stats.contingency_tables import mcnemar

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
        )


@dataclass(frozen=True)
class McNemarResult:
    """Exact McNemar test. b01: items a got wrong and b got right; b10: the reverse."""

    b01: int
    b10: int
    statistic: float
    pvalue: float


def mean_estimate(values: Sequence[float], clusters: Sequence[str] | None = None) -> Estimate:
    """Mean, SE and 95% interval of per-item scores, clustered when cluster keys are given."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if clusters is not None and len(clusters) != n:
        raise ValueError(f"got {n} values but {len(clusters)} cluster keys")
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, 0)
    mean = float(x.mean())
    if clusters is None:
        n_clusters = n
        se = math.sqrt(float(x.var(ddof=1)) / n) if n >= 2 else math.nan
    else:
        _, cluster_index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
        n_clusters = int(cluster_index.max()) + 1
        if n_clusters < 2:
            se = math.nan
        else:
            cluster_sums = np.bincount(cluster_index, weights=x - mean)
            variance = float(np.sum(cluster_sums**2)) / n**2 * n_clusters / (n_clusters - 1)
            se = math.sqrt(variance)
    return Estimate(mean, se, mean - Z95 * se, mean + Z95 * se, n, n_clusters)


def paired_difference(
    a: Sequence[float], b: Sequence[float], clusters: Sequence[str] | None = None
) -> Estimate:
    """Estimate of the mean per-item difference b − a over the same items in the same order."""
    if len(a) != len(b):
        raise ValueError(f"paired scores must cover the same items: got {len(a)} and {len(b)}")
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return mean_estimate(diff.tolist(), clusters)


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
