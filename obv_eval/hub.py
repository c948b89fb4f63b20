"""Can the benchmarks' hub datasets be had? Asked up front, so a run without them fails in seconds.

Without this, a run loads torch, lmms-eval and the model first, then huggingface_hub retries an
unreachable endpoint for half a minute, printing each retry. Here: with the hub offline
(HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) a dataset must already be in the local caches; online, one
short request to the endpoint must get an answer. Imports nothing heavy.
"""

from __future__ import annotations

import os
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from obv_eval.benchmarks import Benchmark

PROBE_TIMEOUT_S = 4.0
DEFAULT_ENDPOINT = "https://huggingface.co"


class HubUnavailable(Exception):
    """The hub datasets a command needs cannot be had here; the message says what to do instead."""


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    return any(_is_true(os.environ.get(name)) for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _hf_home() -> Path:
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "huggingface"


def dataset_in_local_cache(repo_id: str) -> bool:
    """True when the hub cache holds the repo's files or datasets' cache holds a dataset built from it.

    Errs towards True (any prepared dataset of the same owner counts): a wrong True only means the
    loader itself reports the miss later."""
    owner, _, name = repo_id.partition("/")
    hub_cache = Path(os.environ.get("HF_HUB_CACHE") or _hf_home() / "hub").expanduser()
    if (hub_cache / f"datasets--{owner}--{name}").is_dir():
        return True
    datasets_cache = Path(os.environ.get("HF_DATASETS_CACHE") or _hf_home() / "datasets").expanduser()
    prefix = f"{owner}___".lower()
    return datasets_cache.is_dir() and any(
        p.name.lower().startswith(prefix) for p in datasets_cache.iterdir()
    )


def unreachable_reason(endpoint: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """None when `endpoint` answers HTTP at all (any status), else why not, in a few words.

    The request runs in a daemon thread joined with a deadline: a stalled DNS lookup cannot hold the
    command past `timeout_s`."""
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout_s):
                outcome.append(None)
        except urllib.error.HTTPError:  # the server answered: reachable
            outcome.append(None)
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", None) or error
            outcome.append(
                f"no answer within {timeout_s:g} s" if isinstance(reason, TimeoutError) else str(reason)
            )

    thread = threading.Thread(target=probe, name="obv-eval-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 1.0)
    return outcome[0] if outcome else f"no answer within {timeout_s:g} s"


def _host(endpoint: str) -> str:
    """The endpoint as shown in messages: scheme, host and port only (never credentials in a URL)."""
    parts = urlsplit(endpoint)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{parts.hostname}{port}" if parts.hostname else "HF_ENDPOINT"


def check_hub_datasets(benchmarks: Iterable[Benchmark]) -> None:
    """Raise HubUnavailable (one line) unless every benchmark's hub rows can be loaded from here: it
    has a hub dataset, found in the local cache when the hub is off, else on a hub that answers."""
    benchmarks = list(benchmarks)
    for benchmark in benchmarks:
        if not benchmark.hub_path:  # published elsewhere only; the same words as the loader's
            raise HubUnavailable(f"{benchmark.name}: {benchmark.hub_note} (--data samples: the samples)")
    if not benchmarks:
        return
    datasets = {b.name: b.hub_path for b in benchmarks}
    instead = (
        "give a local copy with --data DIR (or OBV_EVAL_DATA), or --data samples for the bundled samples"
    )
    if hub_offline():
        missing = [
            f"{name} ({repo})" for name, repo in sorted(datasets.items()) if not dataset_in_local_cache(repo)
        ]
        if missing:
            raise HubUnavailable(
                f"cannot load {', '.join(missing)}: the hub is off (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE) "
                f"and the local cache does not hold {'it' if len(missing) == 1 else 'them'}; {instead}"
            )
        return
    reason = unreachable_reason(hub_endpoint())
    if reason is not None:
        names = ", ".join(f"{name} ({repo})" for name, repo in sorted(datasets.items()))
        raise HubUnavailable(
            f"cannot load {names}: the Hugging Face hub at {_host(hub_endpoint())} is unreachable "
            f"({reason}); {instead}, or set HF_HUB_OFFLINE=1 to use datasets already in the local cache"
        )
