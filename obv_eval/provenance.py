"""Provenance that results.json records beside the scores (issue 15's list of gaps):

- per benchmark: the hub dataset revision the rows came from (when loaded from the hub) and a
  digest of the media files the rows name (``media_sha256``, with counts of files hashed and
  missing);
- the model's tokenizer, processor, chat-template and config files, one sha256 each (the weights
  hash covers only weight files);
- the machine: Pillow's version, and when CUDA is available the GPU models, the NVIDIA driver,
  the CUDA runtime torch was built with and cuDNN.

Rows are recorded by ``obv_eval.tasking.ObvTask.download`` as lmms-eval loads each task (in this
process), and read by the runner when it writes results.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

# benchmark name -> what was recorded when its rows were loaded
_ROWS: dict[str, dict[str, Any]] = {}
# (path, size, mtime_ns) -> sha256: a clip named by several questions is read once
_FILE_HASHES: dict[tuple[str, int, int], str] = {}

# Files of a checkpoint that change what the model sees or says, besides the weights.
MODEL_FILE_NAMES = (
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
    "added_tokens.json",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
)

_HEX40 = re.compile(r"(?:^|/)([0-9a-f]{40})(?:/|$)")


def file_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _FILE_HASHES:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 24), b""):
                digest.update(chunk)
        _FILE_HASHES[key] = digest.hexdigest()
    return _FILE_HASHES[key]


def model_files(*folders: Path | str | None) -> dict[str, str]:
    """sha256 of each tokenizer / processor / template / config file in the model's folders."""
    found: dict[str, str] = {}
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        for name in MODEL_FILE_NAMES:
            path = Path(folder) / name
            if path.is_file():
                found[name if name not in found else f"{Path(folder).name}/{name}"] = file_sha256(path)
    return found


def hub_revision(dataset: Any) -> str | None:
    """The hub commit a ``datasets`` dataset was built from, read from its cache files' path
    (``.../<namespace>___<name>/<config>/<version>/<commit sha>/...``); None when not visible."""
    for entry in getattr(dataset, "cache_files", None) or []:
        match = _HEX40.search(str(entry.get("filename", "")))
        if match:
            return match.group(1)
    return None


def _media_value_digest(value: Any, root: Path | None) -> tuple[str, str | None]:
    """(a name for the media, its sha256 or None when it cannot be read)."""
    if isinstance(value, dict):
        data = value.get("bytes")
        if data:
            return str(value.get("path") or "<bytes>"), hashlib.sha256(data).hexdigest()
        value = value.get("path")
    if isinstance(value, str) and value:
        path = Path(value) if root is None or Path(value).is_absolute() else root / value
        return value, file_sha256(path) if path.is_file() else None
    tobytes = getattr(value, "tobytes", None)  # a PIL image decoded by `datasets`
    if tobytes is not None:
        return "<decoded image>", hashlib.sha256(tobytes()).hexdigest()
    return repr(value), None


def media_digest(values: Iterable[Any], root: Path | None) -> dict[str, Any]:
    """One digest over the media the rows name (name and bytes of each distinct file)."""
    digests: dict[str, str | None] = {}
    for value in values:
        name, sha = _media_value_digest(value, root)
        digests[name if name not in digests or sha == digests[name] else f"{name}#{len(digests)}"] = sha
    total = hashlib.sha256()
    for name in sorted(digests):
        total.update(f"{name}\0{digests[name] or 'missing'}\0".encode())
    missing = sorted(name for name, sha in digests.items() if sha is None)
    return {
        "media_sha256": total.hexdigest(),
        "media_files": len(digests),
        "media_missing": len(missing),
        "media_missing_examples": missing[:5],
    }


def record_rows(benchmark: Any, source: Any, dataset: Any) -> None:
    """Note where a benchmark's rows came from and digest the media they name."""
    from obv_eval.sources import media_root

    entry: dict[str, Any] = {"source": getattr(source, "kind", None), "rows": len(dataset)}
    if entry["source"] == "hub":
        entry["hub_path"] = benchmark.hub_path
        entry["hub_name"] = benchmark.hub_name
        entry["hub_revision"] = hub_revision(dataset)
    field = benchmark.media_field
    if field and field in dataset.column_names and benchmark.modality in ("video", "image"):
        root = media_root(benchmark.name, benchmark.modality, source)
        entry.update(media_digest(dataset[field], root))
    _ROWS[benchmark.name] = entry


def rows_provenance(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What :func:`record_rows` noted for each named benchmark (those loaded in this process)."""
    return {name: dict(_ROWS[name]) for name in names if name in _ROWS}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _nvidia_driver() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
        return ", ".join(versions) or None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    match = re.search(r"Kernel Module\s+([\d.]+)", text)
    return match.group(1) if match else None


def environment() -> dict[str, Any]:
    """Pillow's version and the accelerator: GPU models, driver, CUDA runtime, cuDNN (when CUDA is up)."""
    info: dict[str, Any] = {"pillow": _version("pillow"), "tokenizers": _version("tokenizers")}
    try:
        import torch
    except ImportError:
        info["cuda_available"] = None
        return info
    available = bool(torch.cuda.is_available())
    info["cuda_available"] = available
    info["torch_cuda_build"] = torch.version.cuda
    if available:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda_runtime"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["driver"] = _nvidia_driver()
    return info
