"""SQLite cache of final verdicts, so re-scoring the same items makes no calls."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    verdict INTEGER NOT NULL CHECK (verdict IN (0, 1)),
    raw TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    model TEXT NOT NULL,
    prompt_version TEXT NOT NULL,
    response_model TEXT,
    system_fingerprint TEXT,
    output_mode TEXT
)
"""
# Columns added after the first release: an older cache file gets them (empty) when opened.
_ADDED_COLUMNS = ("response_model", "system_fingerprint", "output_mode")


def cache_key(
    settings: dict[str, Any], question: str, gold: str, prediction: str, modality: str = "video"
) -> str:
    """sha256 over the judge settings and the item.

    The settings hold the model, endpoint, prompt preset (name, version and text hash), decoding,
    and ``structured_output``: the judge passes the output mode it actually used, so a verdict
    asked in plain text after a refused ``response_format`` is never served as a structured one.
    ``modality`` is part of the prompt, so it is part of the key.
    """
    payload = json.dumps(
        {
            "settings": settings,
            "question": question,
            "gold": gold,
            "prediction": prediction,
            "modality": modality,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedVerdict:
    verdict: int
    raw: str | None
    prompt_tokens: int
    completion_tokens: int
    response_model: str | None = None  # what answered (``response.model``), when recorded
    system_fingerprint: str | None = None
    output_mode: str | None = None  # "structured" or "text"


class JudgeCache:
    """Verdicts by key in SQLite (WAL), safe to share between threads.

    Only final 0/1 verdicts are stored: an unscored item is asked again by the next run.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable enough, fast
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute(_SCHEMA)
            have = {row[1] for row in self._conn.execute("PRAGMA table_info(verdicts)")}
            for column in _ADDED_COLUMNS:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE verdicts ADD COLUMN {column} TEXT")

    def get(self, key: str) -> CachedVerdict | None:
        return self.get_many([key]).get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedVerdict]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedVerdict] = {}
        chunk = 500  # below SQLite's bound-parameter limit
        with self._lock:
            for start in range(0, len(wanted), chunk):
                part = wanted[start : start + chunk]
                marks = ",".join("?" * len(part))
                rows = self._conn.execute(
                    "SELECT key, verdict, raw, prompt_tokens, completion_tokens, response_model, "
                    f"system_fingerprint, output_mode FROM verdicts WHERE key IN ({marks})",
                    part,
                ).fetchall()
                for key, verdict, raw, prompt_tokens, completion_tokens, *answered in rows:
                    found[key] = CachedVerdict(
                        int(verdict), raw, int(prompt_tokens), int(completion_tokens), *answered
                    )
        return found

    def put(
        self,
        key: str,
        verdict: int,
        *,
        raw: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        model: str,
        prompt_version: str,
        response_model: str | None = None,
        system_fingerprint: str | None = None,
        output_mode: str | None = None,
    ) -> None:
        if verdict not in (0, 1):
            raise ValueError(f"only final 0/1 verdicts are cached, got {verdict!r}")
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO verdicts (key, verdict, raw, prompt_tokens, completion_tokens, "
                "model, prompt_version, response_model, system_fingerprint, output_mode) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    verdict,
                    raw,
                    prompt_tokens,
                    completion_tokens,
                    model,
                    prompt_version,
                    response_model,
                    system_fingerprint,
                    output_mode,
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM verdicts").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
