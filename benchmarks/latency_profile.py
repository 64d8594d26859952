"""Where a warm generate() call spends its time: exclusive time per pipeline section.

Wraps the engine's parts (encoder, decoder steps, beam bookkeeping, tree-sitter/compile
check, danger check, retrieval query, slot adaptation, teacher-forced scoring of retrieved
code, reverse-model scoring, API check, rerank, tokenizer) with timers that count each
section's own time (time in nested sections is charged to them), on both clocks: CPU time
of the thread that ran it (time.thread_time: what a loaded machine does not inflate) and
wall time. Whatever is left of a generate() call is "engine (rest)". Sections on the
retrieval helper thread (the query overlaps decoding) are counted on that thread; per
call, the CPU time of the calling thread and of the whole process are both reported.
Answers are not changed.

    OMP_NUM_THREADS=1 python -m benchmarks.latency_profile [--first 40] [--sets conala,nl2bash,exec]
        [--model DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import threading
import time
from collections import defaultdict


class Sections:
    """Exclusive wall and CPU seconds per section name."""

    def __init__(self):
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()  # a stack of open sections per thread

    @property
    def _stack(self) -> list[list]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def wrap(self, name: str, fn):
        @functools.wraps(fn)
        def timed(*a, **kw):
            frame = [time.perf_counter(), time.thread_time(), 0.0, 0.0]
            self._stack.append(frame)
            try:
                return fn(*a, **kw)
            finally:
                self._stack.pop()
                w, c = time.perf_counter() - frame[0], time.thread_time() - frame[1]
                self.wall[name] += w - frame[2]
                self.cpu[name] += c - frame[3]
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][2] += w
                    self._stack[-1][3] += c
        return timed

    def patch(self, owner, attr: str, name: str) -> None:
        setattr(owner, attr, self.wrap(name, getattr(owner, attr)))


def instrument(gen) -> Sections:
    from nl2code import augment, context, decode, engine, explain, guided, retrieval, safety, slots, syntax

    s = Sections()
    model = gen.model
    for attr, name in (("encode", "encoder"), ("step", "decoder steps"), ("reorder_cache", "beam cache reorder")):
        if hasattr(model, attr):
            s.patch(model, attr, name)
    s.patch(decode, "decode", "beam bookkeeping")  # decode() itself, minus the model calls
    s.patch(guided, "guided_beam", "beam bookkeeping")
    s.patch(syntax, "check", "syntax check (tree-sitter + compile)")
    s.patch(safety, "dangers", "danger check")
    s.patch(retrieval.Index, "search", "retrieval query (FTS5)")
    s.patch(retrieval, "similarity", "retrieval similarity")
    s.patch(context, "adapt", "slot adaptation")
    s.patch(augment.Augmenter, "forced_logprobs", "forward scoring of retrieved")
    s.patch(augment.Augmenter, "reconstruction", "reverse-model scoring")
    s.patch(augment.Augmenter, "api_problems", "API check")
    s.patch(explain, "teacher_forced_logprobs", "teacher-forced passes")
    s.patch(slots, "canonicalize_pair", "slot canonicalisation")
    s.patch(slots, "restore", "slot restore")
    s.patch(engine, "rerank", "rerank")
    s.patch(engine, "score", "rerank")
    s.patch(engine, "features", "features (rest)")
    s.patch(engine, "asked_for", "danger check")
    for attr in ("encode", "encode_source", "decode"):
        s.patch(gen.tok, attr, "tokenizer")
    s.patch(gen, "candidates_batch", "engine (rest)")
    return s


def run(args) -> dict:
    from benchmarks.latency_guard import intent_sets
    from nl2code.engine import Generator
    from nl2code.errors import NoParseableCandidate

    sets = intent_sets(args.sets.split(","), args.first)
    items = [it for v in sets.values() for it in v]
    gen = Generator.from_checkpoint(args.model, threads=1)
    for intent, lang in items[:2] + [(i, lg) for i, lg in items if lg == "bash"][:1]:  # warm-up
        try:
            gen.generate(intent, lang, n=5)
        except NoParseableCandidate:
            pass
    s = instrument(gen)
    per_wall, per_cpu, per_proc = [], [], []
    for intent, lang in items:
        w, c, p = time.perf_counter(), time.thread_time(), time.process_time()
        try:
            gen.generate(intent, lang, n=5)
        except NoParseableCandidate:
            pass
        per_wall.append(time.perf_counter() - w)
        per_cpu.append(time.thread_time() - c)
        per_proc.append(time.process_time() - p)
    n = len(items)
    rows = sorted(((k, 1000 * s.cpu[k] / n, 1000 * s.wall[k] / n, s.calls[k] / n) for k in s.cpu),
                  key=lambda r: -r[1])
    return {"intents": n, "sets": {k: len(v) for k, v in sets.items()},
            "cpu_p50_ms": 1000 * statistics.median(per_cpu), "wall_p50_ms": 1000 * statistics.median(per_wall),
            "process_cpu_p50_ms": 1000 * statistics.median(per_proc),
            "cpu_mean_ms": 1000 * statistics.fmean(per_cpu), "wall_mean_ms": 1000 * statistics.fmean(per_wall),
            "sections": [{"section": k, "cpu_ms": c, "wall_ms": w, "calls": cl} for k, c, w, cl in rows]}


def report(r: dict) -> str:
    out = [f"{r['intents']} intents ({', '.join(f'{k} {v}' for k, v in r['sets'].items())}); per generate() call:",
           f"calling thread CPU p50 {r['cpu_p50_ms']:.1f} ms, mean {r['cpu_mean_ms']:.1f} ms; "
           f"process CPU p50 {r.get('process_cpu_p50_ms', float('nan')):.1f} ms; "
           f"wall p50 {r['wall_p50_ms']:.1f} ms, mean {r['wall_mean_ms']:.1f} ms", "",
           "| section | CPU ms/call | share | wall ms/call | calls/call |", "|---|---|---|---|---|"]
    total = sum(x["cpu_ms"] for x in r["sections"]) or 1.0
    for x in r["sections"]:
        out.append(f"| {x['section']} | {x['cpu_ms']:.2f} | {100 * x['cpu_ms'] / total:.0f}% | "
                   f"{x['wall_ms']:.2f} | {x['calls']:.1f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="conala,nl2bash,exec")
    ap.add_argument("--first", type=int, default=40, help="intents per set (0: all)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    r = run(args)
    print(report(r))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(r, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
