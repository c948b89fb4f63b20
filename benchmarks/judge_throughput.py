"""Judge throughput: 1,000 judgments against a fake OpenAI server that answers after 200 ms.

At the default concurrency (32) the floor is 1000 / 32 * 0.2 s = 6.25 s; the target is <= 15 s.
Then the same items again from the cache: no calls.

    python benchmarks/judge_throughput.py [--items 1000] [--latency 0.2] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the package and the fake server, uninstalled

from fake_chat_server import FakeChatServer  # noqa: E402

from obv_eval.judge import Judge, JudgeConfig, JudgeItem  # noqa: E402

TARGET_S = 15.0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.2, help="server latency per call, seconds")
    parser.add_argument("--concurrency", type=int, default=JudgeConfig.concurrency)
    args = parser.parse_args()

    items = [JudgeItem(f"Question {i}?", f"answer {i}", f"prediction {i}") for i in range(args.items)]
    with (
        FakeChatServer(reply=lambda request: '{"verdict": 1}', latency_s=args.latency) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = JudgeConfig(
            base_url=server.base_url,
            api_key_env="OBV_BENCH_UNSET_KEY",
            concurrency=args.concurrency,
            cache_path=str(Path(tmp) / "judge.sqlite"),
        )
        started = time.perf_counter()
        verdicts = Judge(config).judge_many(items, progress=False)
        cold_s = time.perf_counter() - started
        cold_calls, cold_in_flight = server.calls, server.max_in_flight
        scored = sum(v.status == "scored" for v in verdicts)

        server.reset()
        started = time.perf_counter()
        again = Judge(config).judge_many(items, progress=False)  # a fresh Judge on the same cache file
        warm_s = time.perf_counter() - started
        warm_calls = server.calls

    floor_s = args.items / args.concurrency * args.latency
    print(f"items={args.items} latency={args.latency:g}s concurrency={args.concurrency}")
    print(
        f"cold:   {cold_s:.2f} s, calls={cold_calls}, scored={scored}, max in flight={cold_in_flight}, "
        f"floor {floor_s:.2f} s (x{cold_s / floor_s:.2f}), target <= {TARGET_S:g} s: "
        f"{'met' if cold_s <= TARGET_S else 'MISSED'}"
    )
    identical = [v.score for v in again] == [v.score for v in verdicts]
    print(f"cached: {warm_s:.2f} s, calls={warm_calls}, identical verdicts={identical}")
    return 0 if warm_calls == 0 and scored == args.items else 1


if __name__ == "__main__":
    raise SystemExit(main())
