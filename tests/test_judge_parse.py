"""Strict verdict parsing: exactly 0 or 1, nothing guessed."""

from __future__ import annotations

import pytest

from obv_eval.judge.parse import parse_verdict


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1", 1),
        (" 1\n", 1),
        ('{"verdict": 0}', 0),
        ('{"verdict": 1}', 1),
        (' {"verdict":1} \n', 1),
    ],
)
def test_accepts_exactly_0_or_1(text: str, expected: int) -> None:
    assert parse_verdict(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "   ",
        "2",
        "5",  # the released reference judge's 1..5 scale is not ours
        "-1",
        "0.5",
        "1.0",
        "01",
        "yes",
        "no",
        "1 because the answer matches",
        "Verdict: 1",
        "１",  # full-width digit
        '{"verdict": 2}',
        '{"verdict": "1"}',
        '{"verdict": true}',
        '{"verdict": 1.0}',
        '{"verdict": null}',
        '{"verdict": 1, "reason": "same"}',
        '{"score": 1}',
        "[1]",
        '```json\n{"verdict": 1}\n```',
        '{"verdict": 1',
    ],
)
def test_rejects_anything_else(text: str | None) -> None:
    assert parse_verdict(text) is None
