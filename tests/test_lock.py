"""Installs are reproducible: the environment is exactly the lock of this machine's architecture."""

from __future__ import annotations

import platform
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from obv_eval.lockfile import LOCK_DIR, lock_path, lock_provenance, locked_versions, normalise

ROOT = Path(__file__).resolve().parent.parent
NOT_LOCKED = {"obv-eval", "pip"}  # the project itself; pip is upgraded by scripts/env.sh before the lock


def _requirement_name(spec: str) -> str:
    for stop in "<>=!~[; ":
        spec = spec.split(stop, 1)[0]
    return normalise(spec)


def _marker_holds(spec: str, arch: str) -> bool:
    marker = Requirement(spec).marker
    return marker is None or marker.evaluate({"platform_machine": arch})


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_each_architecture_has_a_lock_with_every_dependency(arch: str) -> None:
    locked = locked_versions(lock_path(arch))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    wanted += project["optional-dependencies"]["train"]
    # A dependency marked for other machines (decord: x86_64 wheels only) is not in this lock.
    wanted = [spec for spec in wanted if _marker_holds(spec, arch)]
    assert {_requirement_name(spec) for spec in wanted} <= set(locked)
    pair = {"x86_64": ("2.14.1", "0.29.1"), "aarch64": ("2.9.1", "0.24.1")}[arch]
    assert (locked["torch"], locked["torchvision"]) == pair


def test_the_installed_environment_is_exactly_the_lock() -> None:
    path = lock_path()
    if not path.is_file():
        pytest.skip(f"no lock for {platform.machine()} in {LOCK_DIR}")
    locked = locked_versions(path)
    installed = {normalise(d.metadata["Name"]): d.version for d in metadata.distributions()}
    installed = {name: version for name, version in installed.items() if name not in NOT_LOCKED}
    wrong = {name: (installed.get(name), version) for name, version in locked.items()}
    wrong = {name: pair for name, pair in wrong.items() if pair[0] != pair[1] and pair[0] is not None}
    missing = sorted(set(locked) - set(installed))
    extra = sorted(set(installed) - set(locked))
    assert not wrong, f"installed != locked: {wrong} (reinstall with scripts/env.sh)"
    assert not extra, (
        f"installed but not in the lock: {extra} (add them to pyproject.toml, then scripts/lock.sh)"
    )
    # Packages the lock marks for other platforms or Pythons may be absent; the ones we import may not.
    assert not {"torch", "transformers", "lmms-eval", "tokenizers"} & set(missing), missing


def test_results_record_the_lock_and_its_hash() -> None:
    recorded = lock_provenance()
    if not lock_path().is_file():
        assert recorded == {"file": None, "sha256": None}
        return
    assert recorded["file"] == f"requirements/{lock_path().name}" and len(recorded["sha256"]) == 64
