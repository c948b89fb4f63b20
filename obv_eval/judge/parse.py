"""Strict parsing of the judge's reply: exactly 0 or 1, anything else is no verdict.

The released reference judge asked for 0/1 but accepted only 1..5, so every 0 was re-asked
forever; here the accepted set is the asked set, and anything outside it is ``None``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a TypedDict: only the type checker needs the client library here
    from openai.types.shared_params import ResponseFormatJSONSchema

VERDICT_JSON_SCHEMA: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "judge_verdict",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"verdict": {"type": "integer", "enum": [0, 1]}},
            "required": ["verdict"],
            "additionalProperties": False,
        },
    },
}

# The schema the study's judge sent (the openai client's rendering of the pydantic model
# ``EvaluationScore(score: int)`` in OpenBiomedVid's 3_gpt_eval.py); used by the
# "study-published" preset. The study then rejected any score outside 1..5 (so every 0 was asked
# again forever); here only 0 and 1 are verdicts.
STUDY_SCORE_SCHEMA: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "EvaluationScore",
        "strict": True,
        "schema": {
            "type": "object",
            "title": "EvaluationScore",
            "properties": {"score": {"title": "Score", "type": "integer"}},
            "required": ["score"],
            "additionalProperties": False,
        },
    },
}


def parse_verdict(text: str | None, key: str = "verdict") -> int | None:
    """0 or 1 from a bare ``"0"``/``"1"`` or the JSON object ``{key: 0|1}``; else ``None``.

    No leniency beyond surrounding whitespace: ``"1 because ..."``, ``"yes"``, ``"0.5"``, ``"2"``,
    ``true`` or ``{"verdict": "1"}`` are all ``None``, so a reply that is not a verdict is re-asked
    or left unscored instead of being guessed.
    """
    if text is None:
        return None
    stripped = text.strip()
    if stripped in ("0", "1"):
        return int(stripped)
    if not stripped.startswith("{"):
        return None
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or set(obj) != {key}:
        return None
    value = obj[key]
    # bool is an int subclass: JSON true must not pass as 1.
    if type(value) is int and value in (0, 1):
        return value
    return None
