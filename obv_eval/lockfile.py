"""The lock files that scripts/env.sh installs from (requirements/lock-linux-<arch>.txt).

Refreshed with scripts/lock.sh; results record which lock the environment came from and its hash.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

LOCK_DIR = Path(__file__).resolve().parent.parent / "requirements"


def lock_path(machine: str | None = None) -> Path:
    return LOCK_DIR / f"lock-linux-{machine or platform.machine()}.txt"


def locked_versions(path: Path) -> dict[str, str]:
    """name -> version of every `name==version` line (names normalised as pip does)."""
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        requirement = line.split("#", 1)[0].strip()
        if "==" in requirement:
            name, version = requirement.split("==", 1)
            versions[normalise(name)] = version.split(";", 1)[0].strip()
    return versions


def normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def lock_provenance() -> dict[str, Any]:
    """The lock of this machine's architecture and its sha256 (None outside a checkout)."""
    path = lock_path()
    if not path.is_file():
        return {"file": None, "sha256": None}
    return {"file": f"requirements/{path.name}", "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
