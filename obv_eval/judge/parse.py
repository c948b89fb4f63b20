"""Strict parsing of the judge's reply: exactly 0 or 1, anything else is no verdict.

The released reference judge asked for 0/1 but accepted only 1..5, so every 0 was re-asked
forever; here the accepted set is the asked set, and anything outside it is ``None``.
"""

from __future__ import annotations

import json

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


def parse_verdict(text: str | None) -> int | None:
    """0 or 1 from a bare ``"0"``/``"1"`` or the JSON object ``{"verdict": 0|1}``; else ``None``.

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
    if not isinstance(obj, dict) or set(obj) != {"verdict"}:
        return None
    value = obj["verdict"]
    # bool is an int subclass: JSON true must not pass as 1.
    if type(value) is int and value in (0, 1):
        return value
    return None
