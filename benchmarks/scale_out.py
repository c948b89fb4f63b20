"""One engine vs two Ray actors (obv_eval.scaleout) on SurgeryVideoQA-shaped data, each in a fresh process.

Data: the SurgeryVideoQA shape of benchmarks/speed_vs_reference.py (H.264 clips of moving
tissue-like texture, 840x476 at 1 fps by default), `--clips` clips with `--questions` questions each,
written once into a temporary folder in the layout `obv-eval --data DIR` reads.

Each side is `obv-eval`'s run (obv_eval.runner.run, the transformers backend, the tiny model) in a
fresh Python process: `--data-parallel-size 1` (one engine in the process) and 2 (two CPU actors on a
local Ray instance the side starts). Printed per side: wall time, the summed `tokens.prefill` of the
records, clip decodes (frame-cache counters, per actor), and for Ray its start-up time and the
resident memory of Ray's own processes (GCS, raylet, agents, idle workers; the actors, which hold the
models, apart). The two runs' records are compared item by item, and must be byte-identical: same
prefill total, as many decodes as clips (no clip decoded by two actors).

    python benchmarks/scale_out.py                                   # 20 clips x 6 questions, 20 s each
    python benchmarks/scale_out.py --clips 2 --questions 2 --seconds 2 --width 112 --height 84  # smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()


def _speed_module() -> Any:
    spec = importlib.util.spec_from_file_location("speed_vs_reference", HERE.parent / "speed_vs_reference.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _ray_rss_mib(driver_pid: int) -> tuple[float, float]:
    """Resident MiB of Ray's own processes and of the actors, among the driver's descendants."""
    import psutil

    own = actors = 0
    for process in psutil.Process(driver_pid).children(recursive=True):
        try:
            command, rss = " ".join(process.cmdline()), process.memory_info().rss
        except psutil.Error:
            continue
        if "Engine" in command:
            actors += rss
        elif "ray" in command:
            own += rss
    return own / 2**20, actors / 2**20


def side(actors: int, data: Path, out: Path, result_path: Path) -> None:
    """One run, in this (fresh) process; figures to `result_path`."""
    started = time.perf_counter()
    from obv_eval import media
    from obv_eval.runner import RunConfig, run
    from obv_eval.scaleout import RayBackend, ray_init, stop_reaper

    figures: dict[str, Any] = {"actors": actors}
    if actors > 1:
        before = time.perf_counter()
        ray_init(None, None, verbose=False)  # started here to time it; the run joins it
        figures["ray_start_s"] = round(time.perf_counter() - before, 2)
        figures["ray_own_rss_mib"] = round(_ray_rss_mib(os.getpid())[0], 1)
        close = RayBackend.close

        def close_after_counting(self: RayBackend) -> None:
            figures["actor_media"] = self.actor_stats()
            figures["ray_own_rss_mib_loaded"], figures["actor_rss_mib"] = (
                round(value, 1) for value in _ray_rss_mib(os.getpid())
            )
            close(self)

        RayBackend.close = close_after_counting  # type: ignore[method-assign]
    config = RunConfig(
        model="tiny-qwen2vl",
        benchmarks=["surgeryvqa"],
        data=str(data),
        output_dir=out,
        run_id="bench",
        progress=False,
        data_parallel_size=actors,
    )
    result = run(config, log=lambda line: None)
    if actors > 1:
        import ray

        ray.shutdown()
        stop_reaper()
        decodes = [stats["decodes"] for stats in figures["actor_media"]]
    else:
        decodes = [media.cache_stats()["decodes"]]
    figures.update(
        wall_s=round(time.perf_counter() - started, 2),
        items=len(result.records),
        prefill_tokens=sum(r["tokens"]["prefill"] or 0 for r in result.records),
        decodes_per_engine=decodes,
        decodes=sum(decodes),
        samples=str(result.run_dir / "samples.jsonl"),
    )
    result_path.write_text(json.dumps(figures), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "side":
        parser = argparse.ArgumentParser(prog="scale_out.py side")
        parser.add_argument("--actors", type=int, required=True)
        parser.add_argument("--data", type=Path, required=True)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--result", type=Path, required=True)
        args = parser.parse_args(argv[1:])
        side(args.actors, args.data, args.out, args.result)
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--questions", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--width", type=int, default=840)
    parser.add_argument("--height", type=int, default=476)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    speed = _speed_module()
    shape = speed.Shape("surgeryvqa", args.clips, args.questions, args.seconds, 1, args.width, args.height)
    results = []
    with tempfile.TemporaryDirectory(prefix="obv-scale-out-") as tmp:
        data = Path(tmp) / "data"
        speed.write_surgery(data, shape)
        print(f"data: {shape.describe()}", flush=True)
        for actors in (1, 2):
            work = Path(tmp) / f"x{actors}"
            result = work / "result.json"
            env = {**speed._fresh_env(work), "PYTHONUNBUFFERED": "1"}
            command = [sys.executable, str(HERE), "side", "--actors", str(actors), "--data", str(data)]
            command += ["--out", str(work / "runs"), "--result", str(result)]
            started = time.perf_counter()
            subprocess.run(command, check=True, env=env)
            figures = json.loads(result.read_text())
            figures["process_wall_s"] = round(time.perf_counter() - started, 2)
            figures["records"] = Path(figures.pop("samples")).read_bytes()
            results.append(figures)
            extra = (
                f"; Ray start {figures['ray_start_s']} s, Ray's own processes "
                f"{figures['ray_own_rss_mib']} MiB (with the actors up {figures['ray_own_rss_mib_loaded']} "
                f"MiB), actors {figures['actor_rss_mib']} MiB"
                if actors > 1
                else ""
            )
            print(
                f"{actors} engine(s): process wall {figures['process_wall_s']} s, {figures['items']} items, "
                f"prefill tokens {figures['prefill_tokens']}, clip decodes {figures['decodes']} "
                f"(per engine {figures['decodes_per_engine']}){extra}",
                flush=True,
            )
    one, two = results
    lines = [(a, b) for a, b in zip(one["records"].splitlines(), two["records"].splitlines(), strict=False)]
    differing = sum(a != b for a, b in lines) + abs(
        len(one["records"].splitlines()) - len(two["records"].splitlines())
    )
    same = one["records"] == two["records"]
    print(
        f"records item by item: {len(lines) - differing} of {one['items']} identical; samples.jsonl "
        f"byte-identical: {'yes' if same else 'NO'}; prefill equal: "
        f"{'yes' if one['prefill_tokens'] == two['prefill_tokens'] else 'NO'}; decodes "
        f"{one['decodes']} vs {two['decodes']} for {args.clips} clips (duplicated clip decodes: "
        f"{two['decodes'] - args.clips})"
    )
    figures_out = [{k: v for k, v in r.items() if k != "records"} for r in results]
    print(json.dumps(figures_out))
    if args.json:
        args.json.write_text(json.dumps(figures_out, indent=2) + "\n", encoding="utf-8")
    ok = same and one["prefill_tokens"] == two["prefill_tokens"] and two["decodes"] == args.clips
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
