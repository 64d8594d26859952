"""End-to-end latency of a warm Generator over real intents, with and without the KV cache.

`Generator.generate(intent, n=5)` (beam 5, 5-best: slots, tokenizer, decode, syntax check,
rerank) on the CoNaLa dev intents: the first 400 records of conala-train.json, intent =
`rewritten_intent`, falling back to `intent`. Each intent runs once per variant, the order
alternating, so both variants see the same intents under the same load. The no-cache
variant is the same Generator over decode_speed.NoCacheModel; it must return the same
candidates, and the report says how often it did.

    python -m benchmarks.latency [--quick] [--limit N] [--model DIR] [--conala PATH]
"""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any

from benchmarks import common

DEV_RECORDS = 400


def default_conala() -> Path:
    env = os.environ.get("NL2CODE_DATA")
    if env:
        return Path(env).expanduser() / "conala" / "conala-train.json"
    return common.REPO.parent / "shared" / "data" / "conala" / "conala-train.json"


def dev_intents(path: Path, limit: int | None) -> list[str]:
    records = json.loads(Path(path).read_text(encoding="utf-8"))[:DEV_RECORDS]
    intents = [(r.get("rewritten_intent") or r.get("intent") or "").strip() for r in records]
    intents = [i for i in intents if i]
    return intents[:limit] if limit else intents


def generators(folder: Path, threads: int | None):
    """-> {variant: Generator}; both share the weights and tokenizer."""
    from benchmarks.decode_speed import NoCacheModel
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(folder, threads=threads)
    no_cache = Generator(NoCacheModel(gen.model), gen.model_cfg, gen.tok, gen.meta, gen.path)
    return {"KV cache": gen, "no KV cache": no_cache}


def answer(gen, intent: str) -> tuple[float, list[str] | None]:
    """-> (seconds, candidate codes; None when no candidate parsed)."""
    from nl2code.errors import NoParseableCandidate

    out: dict[str, Any] = {}

    def call():
        try:
            out["codes"] = [c.code for c in gen.generate(intent, n=5)]
        except NoParseableCandidate:
            out["codes"] = None

    return common.timed(call), out["codes"]


def run(args) -> dict[str, Any]:
    import torch

    folder = common.default_model_dir(args.model)
    if folder is None:
        return {"skipped": f"no model folder ({args.model or 'NL2CODE_MODEL / nl2code/assets/default'})"}
    intents = dev_intents(args.conala, args.limit)
    gens = generators(folder, args.threads)
    names = list(gens)
    for g in gens.values():  # warm-up: first-call allocations, lazy grammar loading
        answer(g, intents[0])
    times: dict[str, list[float]] = {n: [] for n in names}
    codes: dict[str, list] = {n: [] for n in names}
    for i, intent in enumerate(intents):
        for name in (names if i % 2 == 0 else names[::-1]):
            dt, c = answer(gens[name], intent)
            times[name].append(dt)
            codes[name].append(c)
    same = sum(a == b for a, b in zip(codes["KV cache"], codes["no KV cache"]))
    stats = {n: {"p50_ms": 1000 * statistics.median(t), "p95_ms": 1000 * common.percentile(t, 95),
                 "mean_ms": 1000 * statistics.fmean(t)} for n, t in times.items()}
    return {"model": str(folder), "conala": str(args.conala), "intents": len(intents),
            "threads": torch.get_num_threads(), "stats": stats, "identical_outputs": same,
            "no_parseable": sum(c is None for c in codes["KV cache"])}


def report(r: dict[str, Any]) -> str:
    out = ["## Generator latency (warm, beam 5, n 5, CoNaLa dev intents)", "", common.polluted_note()]
    if "skipped" in r:
        return "\n".join(out + [f"Not measured: {r['skipped']}."]) + "\n"
    base = r["stats"]["KV cache"]
    rows = [[n, s["p50_ms"], s["p95_ms"], s["mean_ms"], s["p50_ms"] / base["p50_ms"], s["p95_ms"] / base["p95_ms"]]
            for n, s in r["stats"].items()]
    out += [f"Model {r['model']}; {r['intents']} intents from {r['conala']}; torch threads {r['threads']}.", "",
            common.table(["variant", "p50 ms", "p95 ms", "mean ms", "p50 × cache", "p95 × cache"], rows), "",
            f"- Same candidates with and without the cache: {r['identical_outputs']}/{r['intents']}.",
            f"- No parseable candidate (still timed): {r['no_parseable']}/{r['intents']}."]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: NL2CODE_MODEL or the bundled model)")
    p.add_argument("--conala", type=Path, default=default_conala(), help="CoNaLa conala-train.json")
    p.add_argument("--limit", type=int, help=f"use only the first N of the {DEV_RECORDS} dev intents")
    p.add_argument("--threads", type=int, help="torch threads (default: the Generator's default)")
    args = p.parse_args()
    common.apply_quick(args, p, limit=5)
    r = run(args)
    return common.finish(args, r, report(r))


if __name__ == "__main__":
    main()
