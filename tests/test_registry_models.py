"""The registry's real checkpoints: each names a known family, and `obv-eval models` says what was checked."""

from __future__ import annotations

import importlib.util
import re

import pytest

from obv_eval.cli.listing import CHECKED_MEANINGS, cmd_models
from obv_eval.models import FAMILY_MODULES, families
from obv_eval.registry import MODELS

HUB_ENTRIES = [entry for entry in MODELS.values() if entry.hub_id is not None]


def test_every_hub_checkpoint_is_of_a_known_family_and_says_what_was_checked() -> None:
    known = families()
    assert HUB_ENTRIES
    for entry in HUB_ENTRIES:
        assert entry.hub_id is not None and re.fullmatch(r"[\w.-]+/[\w.-]+", entry.hub_id), entry
        # a typo here would send the checkpoint through another family's frame rule and template
        assert entry.family in FAMILY_MODULES, (entry.name, entry.family)
        if importlib.util.find_spec(f"obv_eval.models.{entry.family}") is not None:  # the family's module
            assert entry.family in known, (entry.name, entry.family)  # ...defines the family of that name
        # a public checkpoint never ran here: it resolves (checked against public sources) or is unverified
        assert entry.checked in ("resolves", "unverified"), (entry.name, entry.checked)


def test_every_family_has_a_real_checkpoint_and_fine_tunes_share_their_base_family() -> None:
    with_checkpoint = {entry.family for entry in HUB_ENTRIES}
    assert set(families()) <= with_checkpoint, set(families()) - with_checkpoint
    for entry in MODELS.values():
        if entry.base is not None:
            assert MODELS[entry.base].family == entry.family, entry.name


def test_models_listing_shows_family_and_check_of_each_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert cmd_models([]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    for entry in MODELS.values():
        if entry.family is not None and not entry.api:
            row = rows[entry.name]
            assert row[1] == entry.family and entry.checked.split()[0] in row, row
    assert all(f"  {word}: {meaning}" in out for word, meaning in CHECKED_MEANINGS.items())
    assert {entry.checked for entry in MODELS.values() if entry.family} <= set(CHECKED_MEANINGS)
