"""Data parallelism on Ray Core: N actors, each holding one backend, fed whole work units from a queue.

The driver (the run) keeps the item list. It asks one actor for the backend's work units (a clip's
questions are one unit; single items are gathered a batch at a time, see
obv_eval.backends.streaming.work_units), hands them to idle actors, and appends each finished unit to
the run's generation log itself, so a clip never spans actors, ``generations.jsonl`` has one writer,
and each unit is batched exactly as one engine batches it (byte-identical records).

Faults: an actor is created with ``max_restarts``; a unit whose actor died (killed, out of memory, its
node lost) goes back to the queue for any live actor, at most ``MAX_ATTEMPTS`` times, then its items
fail alone with the reason. A local Ray instance started here shares the driver's fate (Ray kills its
processes when the driver dies), so a SIGKILLed run leaves no actor holding a GPU, and the rerun with
the same --run-id resumes from the log.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from obv_eval.backends.base import GenerationOutput, GenerationRequest, GenerationSettings, MediaSettings
from obv_eval.backends.streaming import clip_group, stream_order, work_units

MAX_ATTEMPTS = 3  # tries of one unit before its items fail alone
MAX_RESTARTS = 4  # restarts of one actor (a restart reloads its model)
VLLM_UNIT_ITEMS = 64  # single items per work unit for vLLM (it schedules its own batches within one)
# Set by tests only: JSON {"kill": "clip", "marker": PATH, "sleep_s": S}. The actor running the first
# unit of a clip's questions SIGKILLs itself after that unit's first batch, once in the whole run (the
# marker file records that one did); every unit first sleeps S seconds (a test kills a node or the
# driver meanwhile).
FAULTS_ENV = "OBV_EVAL_RAY_FAULTS"


class ScaleOutError(ValueError):
    """Engines the Ray cluster cannot hold (a bad data_parallel_size): one line at the command line."""


@dataclass(frozen=True)
class BackendSpec:
    """A backend's class and keyword arguments: built inside each actor (picklable, no model held)."""

    kind: str  # "hf" | "vllm"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Any:
        if self.kind == "hf":
            from obv_eval.backends.hf import HFBackend

            return HFBackend(**self.kwargs)
        if self.kind == "vllm":
            from obv_eval.backends.vllm import VLLMBackend

            return VLLMBackend(**self.kwargs)
        raise ValueError(f"no backend {self.kind!r} for data parallelism (hf or vllm)")


class Engine:
    """One actor's backend (wrapped by ray.remote in RayBackend)."""

    def __init__(self, spec: BackendSpec, faults: dict[str, Any] | None = None) -> None:
        self.backend = spec.build()
        self.faults = faults or {}

    def ready(self) -> tuple[int, str]:
        """This actor's process id and node (provenance; tests check no process outlives the run)."""
        import ray

        return os.getpid(), ray.get_runtime_context().get_node_id()

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = self.backend.describe()
        return described

    def media_stats(self) -> dict[str, int]:
        """This actor's frame-cache counters (decodes: passes over a clip file; benchmarks/scale_out.py)."""
        from obv_eval.media import cache_stats

        return cache_stats()

    def plan(self, requests: Sequence[GenerationRequest]) -> tuple[list[list[int]], dict[str, Any]]:
        """The work units of these requests, and the engine settings every actor must share."""
        if hasattr(self.backend, "work_units"):
            units = self.backend.work_units(requests)
        else:
            order = stream_order(requests, [request.text for request in requests])
            parts = work_units(requests, order, VLLM_UNIT_ITEMS)
            units = [[i for unit in part for i in unit] for part in parts]
        shared = self.backend.fit_to(requests) if hasattr(self.backend, "fit_to") else {}
        return units, shared

    def generate(
        self,
        unit: int,
        requests: Sequence[GenerationRequest],
        generation: GenerationSettings,
        shared: dict[str, Any],
    ) -> list[list[GenerationOutput]]:
        """One work unit's outputs, batch by batch as the backend produced them."""
        self.backend.generation = generation  # a task's token budget, set by the driver per call
        if shared and hasattr(self.backend, "adopt"):
            self.backend.adopt(shared)
        if self.faults.get("sleep_s"):
            time.sleep(float(self.faults["sleep_s"]))
        batches: list[list[GenerationOutput]] = []

        crash = (
            self.faults.get("kill") == "clip" and len(requests) > 1 and clip_group(requests[0]) is not None
        )

        def collect(outputs: list[GenerationOutput]) -> None:
            batches.append(list(outputs))
            if crash:
                marker = Path(self.faults["marker"])
                if not marker.exists():
                    marker.write_text(str(os.getpid()))
                    os.kill(os.getpid(), signal.SIGKILL)  # mid-unit, as a crash or the OOM killer would

        self.backend.generate(requests, progress=False, on_batch=collect)
        return batches


_reaper: subprocess.Popen[bytes] | None = None


def stop_reaper() -> None:
    """Ray stopped cleanly: the watcher leaves without killing anything."""
    global _reaper
    if _reaper is not None and _reaper.stdin is not None:
        with contextlib.suppress(OSError):
            _reaper.stdin.write(b"stopped\n")
            _reaper.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            _reaper.wait(timeout=5)
    _reaper = None


def ray_init(address: str | None, gpus: int | None, verbose: bool) -> bool:
    """Connect to `address` ("auto" or HOST:PORT) or start a local Ray instance; True when started here.

    A local instance gets this machine's CPUs and GPUs, no dashboard, and Ray's logs only with verbose.
    """
    import ray

    if ray.is_initialized():  # already connected (tests share one session): use it as it is
        return False
    level = logging.INFO if verbose else logging.ERROR
    if address:
        ray.init(address=address, log_to_driver=verbose, logging_level=level)
        return False
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    global _reaper
    # Beside Ray: stops what a SIGKILLed run would leave (obv_eval.scaleout_reaper).
    _reaper = subprocess.Popen(
        [sys.executable, "-m", "obv_eval.scaleout_reaper", str(os.getpid())],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ray.init(
        num_cpus=cpus, num_gpus=gpus, include_dashboard=False, log_to_driver=verbose, logging_level=level
    )
    return True


class RayBackend:
    """A Backend whose generate() spreads work units over `actors` Ray actors, each building `spec`."""

    name = "ray"

    def __init__(
        self,
        spec: BackendSpec,
        actors: int,
        *,
        generation: GenerationSettings,
        media: MediaSettings,
        gpus_per_actor: float = 0,
        cpus_per_actor: float = 1,
        owns_ray: bool = False,
        max_restarts: int = MAX_RESTARTS,
        max_attempts: int = MAX_ATTEMPTS,
        actor_wait_s: float = 600.0,
    ) -> None:
        import ray

        if actors < 1:
            raise ValueError(f"data_parallel_size must be at least 1, got {actors}")
        self.spec, self.generation, self.media = spec, generation, media
        self.gpus_per_actor = gpus_per_actor
        self.max_restarts, self.max_attempts = max_restarts, max_attempts
        self.actor_wait_s = actor_wait_s  # how long to wait for a restarted actor when no other is left
        self.owns_ray = owns_ray  # a local instance this run started: stopped by close() (or at exit)
        if self.owns_ray:
            atexit.register(self.close)
        self.restarts = self.resubmitted = 0
        self.failed_units = 0
        faults = json.loads(os.environ[FAULTS_ENV]) if os.environ.get(FAULTS_ENV) else None
        cls: Any = ray.remote(Engine).options(
            num_cpus=cpus_per_actor,
            num_gpus=gpus_per_actor,
            max_restarts=max_restarts,
            max_task_retries=0,  # a lost unit is resubmitted here, to whichever actor is free
        )
        self.actors: list[Any] = [cls.remote(spec, faults) for _ in range(actors)]
        self.deaths = [0] * actors
        self.nodes: set[str] = set()
        self.pids: dict[int, int] = {}
        self._described: dict[str, Any] | None = None

    # -- what the runner and the log need --------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        import ray

        if self._described is None:
            self._described = dict(ray.get(self._live()[0].describe.remote()))
        return {
            **self._described,
            "scale_out": {
                "engine": "ray",
                "ray": _version("ray"),
                "actors": len(self.actors),
                "nodes": len(self.nodes),
                "gpus_per_actor": self.gpus_per_actor,
                "restarts": self.restarts,
                "resubmitted_units": self.resubmitted,
                "failed_units": self.failed_units,
            },
        }

    def actor_stats(self) -> list[dict[str, int]]:
        """Each live actor's frame-cache counters (clip decodes among them)."""
        import ray

        return [dict(ray.get(actor.media_stats.remote())) for actor in self._live()]

    def close(self) -> None:
        """Stop the actors, and the local Ray instance if this run started it."""
        import ray

        if not ray.is_initialized():
            return
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        self.actors = []
        if self.owns_ray:
            ray.shutdown()
            self.owns_ray = False
            stop_reaper()

    def _live(self) -> list[Any]:
        return [a for a, deaths in zip(self.actors, self.deaths, strict=True) if deaths <= self.max_restarts]

    # -- generation ------------------------------------------------------------------------------
    def generate(
        self,
        requests: Sequence[GenerationRequest],
        progress: bool = True,
        on_batch: Callable[[list[GenerationOutput]], None] | None = None,
    ) -> list[GenerationOutput]:
        """Every request's output, in request order; each finished unit goes to `on_batch` whole."""
        import ray
        from ray.exceptions import ObjectLostError, RayActorError, RayTaskError
        from tqdm import tqdm

        if not requests:
            return []
        requests = list(requests)
        units, shared = self._plan(requests)
        generation = self.generation
        queue = deque(range(len(units)))
        attempts = [0] * len(units)
        produced: dict[tuple[str, int], GenerationOutput] = {}
        running: dict[Any, tuple[int, int]] = {}  # task ref -> (unit, actor)
        waking: dict[Any, int] = {}  # ready() ref of an actor being restarted -> actor
        idle = [i for i in range(len(self.actors)) if self.deaths[i] <= self.max_restarts]
        bar = tqdm(total=len(requests), desc=f"generating (Ray x{len(self.actors)})", disable=not progress)
        waited_since: float | None = None

        def finish(unit: int, outputs: list[GenerationOutput]) -> None:
            if on_batch:
                on_batch(outputs)  # one whole unit: a resume reuses it whole or generates it again
            produced.update({output.key: output for output in outputs})
            bar.update(len(outputs))

        def fail(unit: int, reason: str) -> None:
            self.failed_units += 1
            finish(unit, [GenerationOutput(requests[i].key, "", error=reason) for i in units[unit]])

        while queue or running:
            while queue and idle:
                unit, actor = queue.popleft(), idle.pop(0)
                attempts[unit] += 1
                batch = [requests[i] for i in units[unit]]
                ref = self.actors[actor].generate.remote(unit, batch, generation, shared)
                running[ref] = (unit, actor)
            if not running and not waking:
                for unit in list(queue):  # every actor is past its restarts
                    fail(unit, "no data-parallel actor is left (each died more than max_restarts times)")
                queue.clear()
                break
            ready, _ = ray.wait([*running, *waking], num_returns=1, timeout=5.0)
            if not ready:
                if not running and waking:  # only restarting actors left: wait, but not forever
                    waited_since = waited_since or time.monotonic()
                    if time.monotonic() - waited_since > self.actor_wait_s:
                        waking.clear()
                continue
            waited_since = None
            ref = ready[0]
            if ref in waking:
                actor = waking.pop(ref)
                try:
                    pid, node = ray.get(ref)
                    self.pids[actor], self.nodes = pid, self.nodes | {node}
                    idle.append(actor)
                except RayActorError:
                    self._died(actor, waking)
                continue
            unit, actor = running.pop(ref)
            try:
                batches = ray.get(ref)
            except (RayActorError, ObjectLostError) as error:  # the actor (or its node) died with the unit
                self._died(actor, waking, died=isinstance(error, RayActorError))
                if attempts[unit] < self.max_attempts:
                    self.resubmitted += 1
                    queue.appendleft(unit)
                else:
                    tries = attempts[unit]
                    fail(unit, f"data-parallel actor died {tries} times on this unit: {_short(error)}")
                continue
            except RayTaskError as error:  # the backend raised: these items fail, the actor lives on
                fail(unit, f"data-parallel unit failed: {_short(error)}")
                idle.append(actor)
                continue
            finish(unit, [output for batch in batches for output in batch])
            idle.append(actor)
        bar.close()
        return [produced[request.key] for request in requests]

    def _plan(self, requests: list[GenerationRequest]) -> tuple[list[list[int]], dict[str, Any]]:
        """Work units from a live actor (its backend's own rule); also records actor pids and nodes."""
        import ray
        from ray.exceptions import RayActorError

        for _ in range(self.max_attempts):
            live = self._live()
            if not live:
                break
            try:
                for actor in range(len(self.actors)):
                    if self.deaths[actor] <= self.max_restarts and actor not in self.pids:
                        pid, node = ray.get(self.actors[actor].ready.remote())
                        self.pids[actor], self.nodes = pid, self.nodes | {node}
                units, shared = ray.get(live[0].plan.remote(requests))
                return units, shared
            except RayActorError:
                self.restarts += 1
                continue
        raise RuntimeError("no data-parallel actor could plan the work (every actor died)")

    def _died(self, actor: int, waking: dict[Any, int], died: bool = True) -> None:
        """Count a death; an actor with restarts left comes back (Ray restarts it) once ready() answers.

        Units go on to the other actors meanwhile: one that cannot be placed again (its node gone, no
        room elsewhere) is never waited for while another actor is alive."""
        if died:
            self.deaths[actor] += 1
            self.pids.pop(actor, None)
        if self.deaths[actor] <= self.max_restarts:
            self.restarts += died
            waking[self.actors[actor].ready.remote()] = actor


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def scale_out(
    kind: str,
    kwargs: dict[str, Any],
    data_parallel_size: int,
    *,
    gpus_per_actor: float = 0,
    address: str | None = None,
    verbose: bool = False,
) -> RayBackend:
    """A RayBackend of `data_parallel_size` actors (0: one per `gpus_per_actor` GPUs of the cluster)."""
    generation = kwargs.get("generation") or GenerationSettings()
    media = kwargs.get("media") or MediaSettings()
    actors = int(data_parallel_size)
    if actors < 0:
        raise ScaleOutError(f"data_parallel_size must be positive (0: an engine per GPU group), got {actors}")
    if actors == 0 and not gpus_per_actor:
        raise ScaleOutError("data_parallel_size 0 means one engine per GPU: give a number of engines on CPUs")
    owns_ray = ray_init(address, None, verbose)
    import ray

    resources = ray.cluster_resources()
    gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
    problem = None
    if actors == 0:
        actors = int(gpus // gpus_per_actor)
        if actors < 1:
            problem = f"data_parallel_size 0: the Ray cluster has fewer than {gpus_per_actor:g} GPUs"
    if problem is None and gpus_per_actor * actors > gpus:  # an unplaceable actor would wait for ever
        need = gpus_per_actor * actors
        problem = f"{actors} engines x {gpus_per_actor:g} GPU(s) need {need:g} GPUs; the Ray cluster has "
        problem += f"{gpus:g}"
    if problem is not None:
        if owns_ray:
            ray.shutdown()
            stop_reaper()
        raise ScaleOutError(problem)
    spec = BackendSpec(kind, {**kwargs, "generation": generation, "media": media})
    return RayBackend(
        spec,
        actors,
        generation=replace(generation),
        media=media,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=min(1.0, cpus / actors) if cpus else 1.0,  # more actors than CPUs: they share
        owns_ray=owns_ray,
    )
