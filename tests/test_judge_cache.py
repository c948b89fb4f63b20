"""The verdict cache: keys cover every setting, only 0/1 is stored, it survives reopening."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

import pytest

from obv_eval.judge.cache import JudgeCache, cache_key
from obv_eval.judge.config import JudgeConfig


def test_key_changes_with_every_setting_and_field() -> None:
    base = JudgeConfig()
    key = cache_key(base.settings(), "q", "g", "p")
    assert cache_key(JudgeConfig().settings(), "q", "g", "p") == key  # deterministic
    variants = [
        replace(base, model="gpt-4o-mini"),
        replace(base, base_url="http://127.0.0.1:8000/v1"),
        replace(base, temperature=0.5),
        replace(base, seed=1),
        replace(base, max_tokens=16),
        replace(base, structured_output=False),
    ]
    keys = {cache_key(c.settings(), "q", "g", "p") for c in variants}
    keys |= {
        cache_key(base.settings(), "q2", "g", "p"),
        cache_key(base.settings(), "q", "g2", "p"),
        cache_key(base.settings(), "q", "g", "p2"),
    }
    assert key not in keys and len(keys) == len(variants) + 3


def test_settings_that_do_not_change_verdicts_keep_the_key() -> None:
    base = JudgeConfig()
    same = replace(base, concurrency=4, timeout_s=5.0, max_retries=0, cache_path="/tmp/x.sqlite")
    assert cache_key(same.settings(), "q", "g", "p") == cache_key(base.settings(), "q", "g", "p")


def test_persists_across_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "judge.sqlite"
    cache = JudgeCache(path)
    cache.put(
        "k1", 0, raw='{"verdict": 0}', prompt_tokens=10, completion_tokens=3, model="m", prompt_version="v1"
    )
    cache.close()
    reopened = JudgeCache(path)
    assert reopened.get("k1") is not None and reopened.get("k1").verdict == 0  # type: ignore[union-attr]
    assert reopened.get("missing") is None
    mode = reopened._conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_refuses_non_final_verdicts() -> None:
    cache = JudgeCache()
    with pytest.raises(ValueError, match="only final"):
        cache.put("k", 2, raw="2", prompt_tokens=0, completion_tokens=0, model="m", prompt_version="v1")
    assert len(cache) == 0


def test_get_many_beyond_parameter_limit_and_threads(tmp_path: Path) -> None:
    cache = JudgeCache(tmp_path / "c.sqlite")

    def writer(offset: int) -> None:
        for i in range(offset, offset + 300):
            cache.put(
                f"k{i}", i % 2, raw=None, prompt_tokens=1, completion_tokens=1, model="m", prompt_version="v1"
            )

    threads = [threading.Thread(target=writer, args=(n * 300,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    found = cache.get_many([f"k{i}" for i in range(1300)])
    assert len(found) == 1200
    assert all(found[f"k{i}"].verdict == i % 2 for i in range(1200))
