"""Metrics of a whole task that are not a mean of per-item scores (PubMedQA's macro-F1).

Macro-F1 is defined as PubMedQA's official `evaluation.py` defines it: scikit-learn's
`f1_score(truth, predictions, average="macro")` over the labels. An unparsed or failed reply has no
label; it counts as the label "unparsed", a miss for its gold class, and macro-F1 averages over the
benchmark's own labels only (yes/no/maybe), so such a reply lowers recall and never adds a class.
When every reply parses, this equals the official script's number. The interval is a percentile
bootstrap over items with a fixed seed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from obv_eval.stats import Estimate

UNPARSED_LABEL = "unparsed"
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def predicted_label(record: Mapping[str, Any], labels: Sequence[str]) -> str:
    value = record.get("extracted") if record.get("status") != "failed" else None
    return str(value) if value in labels else UNPARSED_LABEL


def _macro_f1(truth: np.ndarray, pred: np.ndarray, n_labels: int) -> np.ndarray:
    """Macro-F1 over label codes 0..n_labels-1 along the last axis (code n_labels: unparsed)."""
    scores = []
    for label in range(n_labels):
        tp = np.sum((truth == label) & (pred == label), axis=-1)
        fp = np.sum((truth != label) & (pred == label), axis=-1)
        fn = np.sum((truth == label) & (pred != label), axis=-1)
        denominator = 2 * tp + fp + fn
        # scikit-learn's zero_division default: F1 of a label absent from truth and predictions is 0.
        scores.append(np.where(denominator > 0, 2 * tp / np.maximum(denominator, 1), 0.0))
    return np.mean(scores, axis=0)


def macro_f1_estimate(records: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> Estimate:
    codes = {label: i for i, label in enumerate(labels)}
    truth = np.array([codes.get(str(r.get("target", "")).strip().lower(), len(labels)) for r in records])
    pred = np.array([codes.get(predicted_label(r, labels), len(labels)) for r in records])
    n = len(records)
    if n == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0, 0)
    value = float(_macro_f1(truth, pred, len(labels)))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = rng.integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    boot = _macro_f1(truth[draws], pred[draws], len(labels))
    low, high = np.percentile(boot, [2.5, 97.5])
    return Estimate(value, float(np.std(boot, ddof=1)), float(low), float(high), n, n)


def corpus_metrics(task: str, records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The task's corpus-level metrics as estimate dicts (empty for tasks without any)."""
    from obv_eval.benchmarks import BENCHMARKS

    benchmark = BENCHMARKS.get(task)
    if benchmark is None or not benchmark.labels:
        return {}
    return {"macro_f1": macro_f1_estimate(records, benchmark.labels).to_dict()}
