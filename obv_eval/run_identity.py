"""What a run's records depend on, so that a resume never mixes records made under other settings.

A run folder holds:

- ``identity.json``: the model's fingerprint (weights content, not its name or path) and the settings
  that change what the model says (backend, dtype, generation, frames), written before the first
  item is generated. A resume under another model or other settings is refused with one line
  naming the difference (:class:`RunConflict`, exit 2) unless the run is restarted.
- per item in the generation log, a digest of its request (the prompt text, the media bytes, the
  settings and the model): a resume reuses only outputs whose digest matches the request it is
  about to make, so an edited row is generated again.
- ``run.lock``: an OS lock (released by the kernel when its process dies, so a stale lock is simply
  taken over) and ``run.lock.json`` naming its holder, so a second process on the same run exits 2.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from PIL import Image

from obv_eval.files import atomic_write_text

IDENTITY_FILE = "identity.json"
LOCK_FILE = "run.lock"
HOLDER_FILE = "run.lock.json"
# The files a run writes (and the report made from them); --restart removes them so nothing made under
# the old settings survives in the folder.
RUN_FILES = ("generations.jsonl", IDENTITY_FILE, "samples.jsonl", "results.json", "report.html")
# What a backend's describe() holds that changes what the model says (the rest is how fast it runs).
OUTPUT_FIELDS = ("backend", "dtype", "video_mode", "jpeg_quality")


class RunConflict(Exception):
    """A run id already in use, or made under another model or other settings: one line, exit 2."""


def run_folder_name(model: str) -> str:
    """The model's folder under the output directory: a plain registry name as it is; a path or any
    name that needs escaping keeps its full identity in a short hash (``a/x`` and ``b/x`` differ)."""
    from obv_eval.registry import MODELS

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model)
    if safe == model and safe.strip(".") and (model in MODELS or not os.path.isdir(model)):
        return safe
    full = os.path.abspath(os.path.expanduser(model)) if os.path.isdir(os.path.expanduser(model)) else model
    base = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(full).name).strip(".") or "model"
    return f"{base}-{hashlib.sha256(full.encode('utf-8', 'surrogatepass')).hexdigest()[:10]}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def output_settings(backend: Any) -> dict[str, Any]:
    """The settings of a backend that change its outputs: generation, frames and OUTPUT_FIELDS."""
    from obv_eval.media import DECODE_VERSION  # here: the media stack stays out of --help paths

    described = backend.describe()
    settings = {name: described[name] for name in OUTPUT_FIELDS if name in described}
    settings["generation"] = backend.generation.to_dict()
    settings["frames"] = backend.media.to_dict()
    # How frames are decoded (rotation, bit depth) changes what the model sees for the same settings.
    settings["frames"]["decode_version"] = DECODE_VERSION
    return settings


def _visual_digest(visual: Any) -> str:
    """A media file by its bytes (not its path or root); a decoded image by its pixels."""
    if isinstance(visual, Image.Image):
        pixels = hashlib.sha256(visual.tobytes()).hexdigest()
        return f"image:{visual.mode}:{visual.size}:{pixels}"
    from obv_eval.media import MediaError, resolve_media_path
    from obv_eval.provenance import file_sha256

    kind, path = getattr(visual, "kind", "?"), str(getattr(visual, "path", visual))
    try:
        return f"{kind}:{file_sha256(resolve_media_path(path, getattr(visual, 'root', None)))}"
    except (MediaError, OSError, ValueError) as error:  # the item fails when loaded: its reason identifies it
        return f"{kind}:{path}:unreadable:{type(error).__name__}"


def request_digest(
    key: tuple[str, int], text: str, visuals: tuple[Any, ...], context: Mapping[str, Any]
) -> str:
    """The identity of one item's request: what the backend is given, under which model and settings."""
    digest = hashlib.sha256()
    for part in (_canonical(list(key)), text, *(_visual_digest(v) for v in visuals), _canonical(context)):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:32]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        found = []
        for name in sorted(set(old) | set(new)):
            found += _differences(old.get(name), new.get(name), f"{prefix}{name}.")
        return found
    return [] if old == new else [f"{prefix.rstrip('.')} {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    if isinstance(value, str) and len(value) == 64:  # a sha256: its head is enough to tell two apart
        return value[:12] + "..."
    text = _canonical(value)
    return text if len(text) <= 120 else text[:117] + "..."


class RunIdentity:
    """The identity file of one run folder: checked against at each start, written before generating."""

    def __init__(self, run_dir: Path, model: dict[str, Any]) -> None:
        self.path = Path(run_dir) / IDENTITY_FILE
        self.model = model
        self.settings: dict[str, Any] | None = None

    def stored(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            value = json.loads(self.path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as error:
            raise RunConflict(
                f"{self.path}: unreadable ({type(error).__name__}); pass --restart to start this run afresh"
            ) from error
        return value if isinstance(value, dict) else None

    def check_before_loading(self, max_new_tokens: int | None) -> None:
        """Before the model loads (minutes for a large one), refuse what is already known to differ: the
        weights, and an explicit --max-new-tokens (the full settings are checked by `begin`)."""
        stored = self.stored()
        if stored is None:
            return
        old: dict[str, Any] = {"model": stored.get("model")}
        new: dict[str, Any] = {"model": self.model}
        generation = (stored.get("settings") or {}).get("generation") or {}
        if max_new_tokens is not None and "max_new_tokens" in generation:
            old["settings.generation.max_new_tokens"] = generation["max_new_tokens"]
            new["settings.generation.max_new_tokens"] = max_new_tokens
        self._refuse_if_changed(old, new)

    def begin(self, settings: dict[str, Any]) -> None:
        """Before the first item is generated: refuse settings other than the run's; on a first start,
        record them."""
        stored = self.stored()
        current = {"model": self.model, "settings": settings}
        if stored is None:
            self._write(current)
        else:
            self._refuse_if_changed({k: stored.get(k) for k in current}, current)
        self.settings = settings

    def record_session(self, backend: dict[str, Any]) -> None:
        """Note a start that generates outputs and how its backend ran them (device, batch size, library
        versions): provenance then names every way the run's records were made, not only the last."""
        from obv_eval.redaction import configured_secrets, redact_value

        stored = self.stored() or {"model": self.model, "settings": self.settings}
        since = datetime.now(UTC).isoformat(timespec="seconds")
        described = redact_value(backend, configured_secrets())  # a server URL may carry credentials
        session = {"started": since, "host": socket.gethostname(), "backend": described}
        self._write({**stored, "sessions": [*stored.get("sessions", []), session]})

    def sessions(self) -> list[dict[str, Any]]:
        sessions: list[dict[str, Any]] = (self.stored() or {}).get("sessions", [])
        return sessions

    def _write(self, identity: dict[str, Any]) -> None:
        text = json.dumps(identity, sort_keys=True, indent=1, ensure_ascii=False)
        atomic_write_text(self.path, text + "\n")

    def context(self) -> dict[str, Any]:
        """What every request digest includes besides the request itself."""
        return {"model": self.model, "settings": self.settings}

    def _refuse_if_changed(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        changed = _differences(old, new)
        if changed:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            raise RunConflict(
                f"run {self.path.parent} was made under other settings: {changed[0]}{more}; resume it with "
                "the same model and settings, or pass --restart to start it afresh (or use another --run-id)"
            )


def restart(run_dir: Path) -> list[str]:
    """Remove what an earlier start of this run wrote (call with the run's lock held)."""
    removed = []
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process; a second process gets RunConflict naming the holder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(run_dir / LOCK_FILE, timeout=0)
    holder = run_dir / HOLDER_FILE
    try:
        lock.acquire()
    except Timeout:
        raise RunConflict(
            f"run {run_dir} is in use by {_holder(holder)}; wait for it to finish or use another --run-id"
        ) from None
    try:
        # The kernel drops the lock when its process dies, so a dead holder's note is simply replaced.
        since = datetime.now(UTC).isoformat(timespec="seconds")
        note = {"pid": os.getpid(), "host": socket.gethostname(), "since": since}
        atomic_write_text(holder, json.dumps(note) + "\n")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _holder(path: Path) -> str:
    try:
        note = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {note['pid']} on {note['host']} (since {note['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (holder not yet recorded)"
