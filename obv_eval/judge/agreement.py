"""Agreement between two judges (or a judge and human labels) on the items both scored."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def agreement(a: Sequence[int | None], b: Sequence[int | None]) -> dict[str, Any]:
    """Percent agreement and Cohen's kappa over items scored (0/1) by both; ``None`` = unscored.

    Returns ``n`` (items both scored), ``n_total``, ``percent_agreement`` (0-100), ``kappa``,
    ``accuracy_a`` / ``accuracy_b`` (percent of those items scored 1 by each) and
    ``accuracy_difference`` (b - a, percentage points): what changing from judge (or preset) A to
    B does to judged accuracy on the same predictions. All but the counts are ``None`` when nothing
    is compared, and kappa is ``None`` when it is undefined (both raters gave one and the same
    label to every item).
    """
    if len(a) != len(b):
        raise ValueError(f"agreement needs paired verdicts: {len(a)} vs {len(b)} items")
    for value in (*a, *b):
        if value is not None and (type(value) is not int or value not in (0, 1)):
            raise ValueError(f"verdicts must be 0, 1 or None, got {value!r}")
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    result: dict[str, Any] = {
        "n": len(pairs),
        "n_total": len(a),
        "percent_agreement": None,
        "kappa": None,
        "accuracy_a": None,
        "accuracy_b": None,
        "accuracy_difference": None,
    }
    if not pairs:
        return result
    xs = [x for x, _ in pairs]
    ys = [y for _, y in pairs]
    result["percent_agreement"] = 100.0 * sum(x == y for x, y in pairs) / len(pairs)
    result["accuracy_a"] = 100.0 * sum(xs) / len(xs)
    result["accuracy_b"] = 100.0 * sum(ys) / len(ys)
    result["accuracy_difference"] = result["accuracy_b"] - result["accuracy_a"]
    if len(set(xs) | set(ys)) > 1:  # one label everywhere: chance agreement is 1, kappa is 0/0
        from sklearn.metrics import cohen_kappa_score  # scikit-learn loads only for this command

        kappa = float(cohen_kappa_score(xs, ys, labels=[0, 1]))
        result["kappa"] = None if math.isnan(kappa) else kappa
    return result
