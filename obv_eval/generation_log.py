"""The run's append-only log of model outputs, written as they are produced; it makes runs resumable.

Each backend batch is appended as one write of complete lines tagged with the batch's id and size,
then flushed to disk; a torn last line left by a kill is cut off before the next append, so the
new batch starts on a line of its own. On resume only complete batches count: a batch cut short by a kill is
generated again, whole, so every item meets the same batch-mates as in an uninterrupted run and
the outputs (and so the records and scores) are identical.

Each line also carries the digest of the request that produced it (obv_eval.run_identity): a resume
reuses an output only when the request it is about to make has the same digest, so an edited row, a
changed media file or another model's log is generated again, never reused.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from obv_eval.backends.base import Backend, GenerationOutput, GenerationRequest
from obv_eval.profiling import stage
from obv_eval.redaction import configured_secrets, redact_value
from obv_eval.run_identity import RunIdentity, output_settings, request_digest

Key = tuple[str, int]


class GenerationLog:
    def __init__(self, path: Path, identity: RunIdentity | None = None) -> None:
        self.path = Path(path)
        self.identity = identity  # the run's model and settings; None: no checks (a bare log)
        self.reused = 0  # outputs this process took from the log
        self.generated = 0  # outputs this process appended
        # The request digest of each item this process asks for: every appended output carries its own.
        self.digests: dict[Key, str] = {}

    def load(self, digests: Mapping[Key, str] | None = None) -> dict[Key, GenerationOutput]:
        """Outputs of every complete batch in the log (a torn last line or batch is ignored).

        With `digests`, only the outputs whose logged request digest equals the one given for their key.
        """
        if not self.path.exists():
            return {}
        batches: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in self.path.read_bytes().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # the tail of a write cut short by a kill
            batches[entry["batch"]].append(entry)
        done: dict[Key, GenerationOutput] = {}
        for entries in batches.values():
            if len(entries) != entries[0]["batch_size"]:
                continue
            for entry in entries:
                output = entry["output"]
                key = (str(output["key"][0]), int(output["key"][1]))
                if digests is None or (key in digests and entry.get("request") == digests[key]):
                    done[key] = GenerationOutput(**{**output, "key": key})
        return done

    def repair_tail(self) -> int:
        """Cut a torn last line (a write cut short by a kill) so the next append starts a new line.

        Returns the number of bytes removed. Only the bytes after the last newline go: every
        complete line, and so every complete batch, stays as it was.
        """
        if not self.path.exists():
            return 0
        with self.path.open("r+b") as handle:
            size = handle.seek(0, os.SEEK_END)
            end = size
            while end > 0:
                start = max(0, end - (1 << 16))
                handle.seek(start)
                chunk = handle.read(end - start)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    keep = start + newline + 1
                    break
                end = start
            else:
                keep = 0
            if keep < size:
                handle.truncate(keep)
                handle.flush()
                os.fsync(handle.fileno())
        return size - keep

    def append_batch(self, outputs: list[GenerationOutput]) -> None:
        if not outputs:
            return
        with stage("writing"):  # called from inside generation: counted as writing, not as model time
            self._append(outputs)
        self.generated += len(outputs)

    def _append(self, outputs: list[GenerationOutput]) -> None:
        batch = uuid.uuid4().hex  # any unique id: only grouping matters, never written to results
        secrets = configured_secrets()
        lines = [
            json.dumps(
                {
                    "batch": batch,
                    "batch_size": len(outputs),
                    "request": self.digests.get(o.key),
                    "output": redact_value(asdict(o), secrets),
                },
                ensure_ascii=False,
            )
            for o in outputs
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repair_tail()
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def generate_resumable(
    backend: Backend, requests: Sequence[GenerationRequest], log: GenerationLog | None, progress: bool
) -> dict[Key, GenerationOutput]:
    """Outputs for every request: from the log where a complete batch holds them under the same request
    digest, generated otherwise. A run whose identity.json names another model or other settings is
    refused here (RunConflict), before anything is generated."""
    done: dict[Key, GenerationOutput] = {}
    if log is not None:
        if log.identity is not None:
            log.identity.begin(output_settings(backend))
            context = log.identity.context()
            log.digests.update({r.key: request_digest(r.key, r.text, r.visuals, context) for r in requests})
        done = log.load(log.digests) if log.identity is not None else log.load()
        log.reused += sum(r.key in done for r in requests)
    todo = [request for request in requests if request.key not in done]
    if todo:
        from obv_eval.progress import generate_per_task

        if log is not None and log.identity is not None:
            log.identity.record_session(backend.describe())

        produced = generate_per_task(backend, todo, progress, log.append_batch if log else None)
        done.update({output.key: output for output in produced})
    return done
