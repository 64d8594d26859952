"""Generation latency with 1 vs 2 torch (OpenMP) threads, on a quiet machine and with a busy
neighbour (a `python -c 'while 1: pass'` burner per core), to choose the default thread count.

Each measurement is a fresh process (`--worker`): it loads the bundled model with
NL2CODE_THREADS=t, answers one warm-up intent, then times `Generator.generate(intent, n=5)`
over the first N CoNaLa dev intents and prints p50/p95 and a hash of every answer (the
answers must not depend on the thread count). Conditions and thread counts alternate, so
each sees the same drift of the machine's load.

    python -m benchmarks.threads [--limit N] [--rounds R] [--burners B] [--conala PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import common


def worker(conala: Path, limit: int) -> None:
    from nl2code.engine import Generator

    intents = common.dev_intents(conala, limit)
    gen = Generator.from_checkpoint(None)
    gen.generate(intents[0], "python", n=5)  # warm-up
    times, answers = [], []
    for intent in intents:
        t = time.perf_counter()
        try:
            codes = [c.code for c in gen.generate(intent, "python", n=5)]
        except Exception as exc:  # no parseable candidate: part of the answer
            codes = [type(exc).__name__]
        times.append(time.perf_counter() - t)
        answers.append(codes)
    import torch

    print(json.dumps({"threads": torch.get_num_threads(), "p50_ms": 1000 * statistics.median(times),
                      "p95_ms": 1000 * sorted(times)[int(0.95 * (len(times) - 1))],
                      "answers": hashlib.sha256(json.dumps(answers).encode()).hexdigest()[:16]}))


def measure(threads: int, busy: int, conala: Path, limit: int) -> dict:
    burners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(busy)]
    try:
        env = {**os.environ, "NL2CODE_THREADS": str(threads)}
        env.pop("OMP_NUM_THREADS", None)  # the thread count under test comes from NL2CODE_THREADS
        out = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--worker", "--limit", str(limit),
                              "--conala", str(conala)], env=env, capture_output=True, text=True, check=True)
    finally:
        for b in burners:
            b.kill()
            b.wait()
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--limit", type=int, default=60, help="CoNaLa dev intents per measurement")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--burners", type=int, default=os.cpu_count() or 2, help="busy processes in the busy condition")
    p.add_argument("--conala", type=Path, default=common.default_conala())
    args = p.parse_args()
    if args.worker:
        return worker(args.conala, args.limit)
    rows: dict[tuple[str, int], list[dict]] = {}
    for _ in range(args.rounds):
        for busy in (0, args.burners):
            for threads in (1, 2):
                r = measure(threads, busy, args.conala, args.limit)
                rows.setdefault(("busy" if busy else "as found", threads), []).append(r)
                print(json.dumps({"condition": "busy" if busy else "as found", **r}), flush=True)
    print(f"\n| condition | threads | p50 ms (median of {args.rounds} runs) | p95 ms | answers hash |")
    print("| --- | ---: | ---: | ---: | --- |")
    for (cond, threads), rs in rows.items():
        print(f"| {cond} | {threads} | {statistics.median(r['p50_ms'] for r in rs):.1f} | "
              f"{statistics.median(r['p95_ms'] for r in rs):.1f} | {', '.join(sorted({r['answers'] for r in rs}))} |")


if __name__ == "__main__":
    main()
