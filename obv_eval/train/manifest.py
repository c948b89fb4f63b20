"""`obv_manifest.json`: what a checkpoint was trained from, written beside its weights."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST_NAME = "obv_manifest.json"
MANIFEST_VERSION = 1


def data_fingerprint(rows: Iterable[Mapping[str, Any]], media_hashes: Mapping[str, str]) -> str:
    """sha256 over the rows (canonical JSON, in order) and the sha256 of every video file they use."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        digest.update(b"\n")
    for path, content in sorted(media_hashes.items()):
        digest.update(f"{path}\t{content}\n".encode())
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in ("obv-eval", "transformers", "torch", "accelerate", "peft", "deepspeed"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST_NAME
    body = {"manifest_version": MANIFEST_VERSION, **manifest}
    path.write_text(json.dumps(body, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    return data
