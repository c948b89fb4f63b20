"""Agreement between two judges on the items both scored."""

from __future__ import annotations

import pytest
from sklearn.metrics import cohen_kappa_score

from obv_eval.judge.agreement import agreement


def test_counts_only_items_both_scored() -> None:
    a = [1, 0, 1, None, 1, 0, 0, 1]
    b = [1, 1, 1, 0, None, 0, 0, 0]
    result = agreement(a, b)
    assert result["n"] == 6 and result["n_total"] == 8
    assert result["percent_agreement"] == pytest.approx(100 * 4 / 6)
    assert result["kappa"] == pytest.approx(cohen_kappa_score([1, 0, 1, 0, 0, 1], [1, 1, 1, 0, 0, 0]))
    # accuracy on the 6 items both scored: A 3/6, B 3/6
    assert result["accuracy_a"] == pytest.approx(50.0) and result["accuracy_b"] == pytest.approx(50.0)
    assert result["accuracy_difference"] == pytest.approx(0.0)
    assert result["kappa"] == pytest.approx(1 / 3)


def test_perfect_and_opposite() -> None:
    assert agreement([0, 1, 1], [0, 1, 1])["kappa"] == pytest.approx(1.0)
    lenient = agreement([0, 0, 1, 0], [1, 0, 1, 1])
    assert lenient["accuracy_difference"] == pytest.approx(50.0)  # B scores 2 more of 4 items
    opposite = agreement([0, 1, 0, 1], [1, 0, 1, 0])
    assert opposite["percent_agreement"] == 0.0 and opposite["kappa"] == pytest.approx(-1.0)


def test_undefined_cases_are_none() -> None:
    empty = {"n": 0, "n_total": 0, "percent_agreement": None, "kappa": None}
    empty |= {"accuracy_a": None, "accuracy_b": None, "accuracy_difference": None}  # issue 15
    assert agreement([], []) == empty
    assert agreement([None, 1], [0, None])["percent_agreement"] is None
    same_label = agreement([1, 1, 1], [1, 1, 1])
    assert same_label["percent_agreement"] == 100.0 and same_label["kappa"] is None


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="paired"):
        agreement([1, 0], [1])
    with pytest.raises(ValueError, match="0, 1 or None"):
        agreement([2], [1])
    with pytest.raises(ValueError, match="0, 1 or None"):
        agreement([True], [1])
