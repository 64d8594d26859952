"""End-to-end latency of a warm Generator over real intents: default, float32, no KV cache.

`Generator.generate(intent, n=5)` (beam 5, 5-best: slots, tokenizer, decode, syntax check,
rerank) on the CoNaLa dev intents: the first 400 records of conala-train.json, intent =
`rewritten_intent`, falling back to `intent`. Each intent runs once per variant, the order
rotating, so all variants see the same intents under the same load. Variants: the default
Generator (inference form at the default precision, int8 where available), the inference
form with float32 weights, and the training module without a KV cache
(decode_speed.NoCacheModel, float32). Every variant runs the whole pipeline: the model
folder's retrieval index, reverse model and API table (the float32 variants score with
float32 passes). The two float32 variants must return the same candidates; the report
says how often each variant matched the default and float32.

    python -m benchmarks.latency [--quick] [--limit N] [--model DIR] [--conala PATH]
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from benchmarks import common

def generators(folder: Path, threads: int | None):
    """-> {variant: Generator}; all share the weights and tokenizer."""
    from benchmarks.decode_speed import NoCacheModel
    from nl2code.augment import Augmenter
    from nl2code.engine import Generator
    from nl2code.model import for_inference

    gen = Generator.from_checkpoint(folder, threads=threads)
    module = getattr(gen.model, "model", gen.model)  # the training module behind the inference form

    def variant(runner):  # the same folder's extras (index, reverse model, API table), float32
        g = Generator(runner, gen.model_cfg, gen.tok, gen.meta, gen.path)
        g.augment = Augmenter(gen.path, gen.tok, module, gen.model_cfg.max_len, "float32")
        return g

    gens = {f"default ({gen.precision})": gen}
    if gen.precision != "float32":
        gens["float32 weights"] = variant(for_inference(module, "float32")[0])
    gens["training module, no KV cache"] = variant(NoCacheModel(module))
    return gens


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
    intents = common.dev_intents(args.conala, args.limit)
    gens = generators(folder, args.threads)
    names = list(gens)
    for g in gens.values():  # warm-up: first-call allocations, lazy grammar loading
        answer(g, intents[0])
    times: dict[str, list[float]] = {n: [] for n in names}
    codes: dict[str, list] = {n: [] for n in names}
    for i, intent in enumerate(intents):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            dt, c = answer(gens[name], intent)
            times[name].append(dt)
            codes[name].append(c)
    f32 = "float32 weights" if "float32 weights" in names else names[0]
    same = {n: {"default": sum(a == b for a, b in zip(codes[n], codes[names[0]])),
                "float32": sum(a == b for a, b in zip(codes[n], codes[f32]))} for n in names}
    stats = {n: {"p50_ms": 1000 * statistics.median(t), "p95_ms": 1000 * common.percentile(t, 95),
                 "mean_ms": 1000 * statistics.fmean(t)} for n, t in times.items()}
    return {"model": str(folder), "conala": str(args.conala), "intents": len(intents),
            "threads": torch.get_num_threads(), "stats": stats, "same_as": same,
            "no_parseable": sum(c is None for c in codes[names[0]])}


def report(r: dict[str, Any]) -> str:
    out = ["## Generator latency (warm, beam 5, n 5, CoNaLa dev intents)", "", common.polluted_note()]
    if "skipped" in r:
        return "\n".join(out + [f"Not measured: {r['skipped']}."]) + "\n"
    base = next(iter(r["stats"].values()))
    rows = [[n, s["p50_ms"], s["p95_ms"], s["mean_ms"], s["p50_ms"] / base["p50_ms"], s["p95_ms"] / base["p95_ms"],
             f"{r['same_as'][n]['default']}/{r['intents']}", f"{r['same_as'][n]['float32']}/{r['intents']}"]
            for n, s in r["stats"].items()]
    out += [f"Model {r['model']}; {r['intents']} intents from {r['conala']}; torch threads {r['threads']}.", "",
            common.table(["variant", "p50 ms", "p95 ms", "mean ms", "p50 × default", "p95 × default",
                          "same as default", "same as float32"], rows), "",
            "- \"same\" counts intents whose 5 candidates are identical, in order.",
            f"- No parseable candidate (default; still timed): {r['no_parseable']}/{r['intents']}."]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    common.add_model_option(p)
    common.add_conala_options(p)
    p.add_argument("--threads", type=int, help="torch threads (default: the Generator's default)")
    return common.run_main(p, run, report, limit=5)

if __name__ == "__main__":
    main()
