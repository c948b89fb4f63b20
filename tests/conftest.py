"""Test-wide settings: no network, and everything obv-eval builds goes into a temporary home."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Set before any obv_eval module reads them: no test may reach a hub or write to ~/.cache.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OBV_EVAL_HOME", tempfile.mkdtemp(prefix="obv-eval-test-home-"))
os.environ.pop("OPENAI_API_KEY", None)


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from obv_eval.tiny_model import tiny_model_dir

    return tiny_model_dir()


@pytest.fixture()
def samples_source() -> Iterator[None]:
    from obv_eval.sources import parse_data_source, set_data_source

    set_data_source(parse_data_source("samples"))
    yield
    set_data_source(None)


# Real benchmark files and Qwen2-VL's own configs, present in CI beside the clone (../shared/realdata);
# a user's clone lacks them, so tests that need them skip with this reason.
REALDATA = Path(
    os.environ.get("OBV_EVAL_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata")
)
NO_REALDATA = f"real data not found at {REALDATA} (CI has it; set OBV_EVAL_REALDATA to run these tests)"


@pytest.fixture(scope="session")
def realdata() -> Path:
    if not REALDATA.is_dir():
        pytest.skip(NO_REALDATA)
    return REALDATA
