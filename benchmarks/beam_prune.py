"""Syntax-guided beam search and latency budgets: quality, latency and the cost of the checks.

Variants of the same warm Generator (bundled model, beam 5, one thread):
  pruned      the default: viability pruning, finished programs must parse, widening
  unpruned    DecodeConfig(prune=False): the plain beam (the behaviour before issue 19)
  budget N    pruned, with max_latency_ms=N (anytime decoding)

- quality: answered rate and top-1 BLEU through nl2code.evaluate.run_model (what
  `nl2code eval` runs) on CoNaLa dev (first 400 records) and NL2Bash dev;
- latency: `Generator.generate(intent, n=5)` on CoNaLa dev intents, the variants round-robin
  per intent, repeated --rounds times; medians over rounds of each round's p50/p95, and the
  pruned/unpruned p50 ratio per round;
- checks: how often pruning fires (per scanner check, per hypothesis EOS check) and what a
  check costs (scanner advance per piece, full EOS check), timed alone.

    python -m benchmarks.beam_prune [--quick] [--limit N] [--rounds R] [--budget-ms N [N ...]]
        [--skip-quality] [--skip-latency] [--nl2bash PATH.nl] [--json PATH]
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import common


class Variant:
    """A Generator whose decoding config gets `changes` (so evaluate.run_model runs it as is)."""

    def __init__(self, gen, clock=None, **changes):
        self.gen, self.changes, self.clock = gen, changes, clock

    def candidates(self, intent, lang="python", beam=None, config=None):
        """The engine's candidates() with this variant's config changes and clock."""
        from nl2code.config import DecodeConfig

        width = beam or 5
        config = dataclasses.replace(config or DecodeConfig(beam_size=width, n_best=width), **self.changes)
        saved = self.gen.clock
        self.gen.clock = self.clock or saved
        try:
            return self.gen.candidates(intent, lang, config=config)
        finally:
            self.gen.clock = saved

    def generate(self, intent, lang="python", n=5):
        return self.candidates(intent, lang, beam=max(5, n)).best(n)


def variants(gen, budgets: list[float], cpu_clock: bool = False, budget_only: bool = False) -> dict[str, Variant]:
    """cpu_clock: budgets count this thread's CPU time (time.thread_time) instead of wall
    time, which on a loaded machine approximates what the budget buys on an idle one."""
    out = {} if budget_only else {"pruned": Variant(gen, prune=True), "unpruned": Variant(gen, prune=False)}
    clock, tag = (time.thread_time, " (CPU clock)") if cpu_clock else (None, "")
    out.update({f"budget {b:g} ms{tag}": Variant(gen, clock, max_latency_ms=b) for b in budgets})
    return out


def quality(gen, args) -> dict[str, Any]:
    from nl2code import evaluate

    sets = [("CoNaLa dev", args.conala, "python", args.limit or 400), ("NL2Bash dev", args.nl2bash, "bash", args.limit)]
    out = {}
    for name, path, lang, first in sets:
        if not Path(path).exists():
            out[name] = {"skipped": f"no data at {path}"}
            continue
        data = evaluate.load_dataset(path, "auto", first or 0)
        res = {}
        for vname, v in variants(gen, args.budget_ms, args.cpu_clock, args.budget_only).items():
            if vname.startswith("budget") and lang != "python":
                continue
            rows = evaluate.run_model(v, data, lang)
            s = evaluate.summarise(rows, lang)
            res[vname] = {k: s[k] for k in ("examples", "answered_rate", "bleu", "exact_match",
                                            "latency_ms_p50", "latency_ms_p95")}
        out[name] = res
    return out


def latency(gen, args) -> dict[str, Any]:
    from nl2code.errors import NoParseableCandidate

    intents = common.dev_intents(args.conala, args.limit)
    vs = variants(gen, args.budget_ms[:1])
    names = list(vs)

    def call(v, intent):
        try:
            v.generate(intent, "python", n=5)
        except NoParseableCandidate:
            pass

    for v in vs.values():
        call(v, intents[0])
    rounds = []
    for r in range(args.rounds):
        times: dict[str, list[float]] = {n: [] for n in names}
        for i, intent in enumerate(intents):
            k = (i + r) % len(names)
            for name in names[k:] + names[:k]:
                times[name].append(common.timed(lambda: call(vs[name], intent)))
        rounds.append({n: {"p50_ms": 1000 * statistics.median(t), "p95_ms": 1000 * common.percentile(t, 95),
                           "max_ms": 1000 * max(t)} for n, t in times.items()})
    med = {n: {k: statistics.median(rd[n][k] for rd in rounds) for k in ("p50_ms", "p95_ms", "max_ms")}
           for n in names}
    ratios = [rd["pruned"]["p50_ms"] / rd["unpruned"]["p50_ms"] for rd in rounds]
    return {"intents": len(intents), "rounds": rounds, "median": med,
            "p50_ratio_pruned_over_unpruned": {"per_round": ratios, "median": statistics.median(ratios)}}


def checks(gen, args) -> dict[str, Any]:
    """Fire rates over real searches, and per-check costs timed alone."""
    import torch

    from nl2code import evaluate, slots
    from nl2code.config import DecodeConfig
    from nl2code.decode import decode
    from nl2code.tokenizer import PAD
    from nl2code.viability import Guide

    out = {}
    for name, path, lang in (("CoNaLa dev", args.conala, "python"), ("NL2Bash dev", args.nl2bash, "bash")):
        data = evaluate.load_dataset(path, "auto", 0)[: args.check_limit]
        tot = {"checks": 0, "pruned": 0, "final_checks": 0, "final_rejected": 0}
        steps = 0
        adv_t, adv_n, fin_t, fin_n = 0.0, 0, 0.0, 0
        for ex in data:
            canon, slot_list = slots.canonicalize(ex.intent)
            src = torch.tensor([gen.tok.encode_source(canon, lang)])
            guide = Guide(lang, gen.tok, slot_list)
            with torch.inference_mode():
                hyps = decode(gen.model, src, src != PAD, DecodeConfig(max_len=gen.model_cfg.max_len - 1), [guide])[0]
            for k, v in guide.stats().items():
                tot[k] += v
            steps += max((len(h.ids) for h in hyps), default=0) + 1
            # costs alone: the scanner over each hypothesis' pieces (memo off), the EOS check
            for h in hyps:
                g = Guide(lang, gen.tok, slot_list)
                t0 = time.perf_counter()
                st = g.start
                for tok_id in h.ids:
                    st = g._adv(st, g.pieces[tok_id]) if st is not None and g._adv else st
                adv_t += time.perf_counter() - t0
                adv_n += len(h.ids)
                t0 = time.perf_counter()
                g.final_ok(h.ids)
                fin_t += time.perf_counter() - t0
                fin_n += 1
        out[name] = {**tot, "intents": len(data), "approx_steps": steps,
                     "pruned_per_check_pct": 100.0 * tot["pruned"] / max(tot["checks"], 1),
                     "final_rejected_pct": 100.0 * tot["final_rejected"] / max(tot["final_checks"], 1),
                     "scanner_us_per_piece": 1e6 * adv_t / max(adv_n, 1),
                     "final_check_us": 1e6 * fin_t / max(fin_n, 1)}
    return out


def run(args) -> dict[str, Any]:
    import torch

    from nl2code.engine import Generator

    folder = common.default_model_dir(args.model)
    if folder is None:
        return {"skipped": "no model folder"}
    gen = Generator.from_checkpoint(folder, threads=args.threads)
    r: dict[str, Any] = {"model": str(folder), "threads": torch.get_num_threads(), "budget_ms": args.budget_ms,
                         "machine": common.machine_info()}
    t0 = time.perf_counter()
    if not args.skip_checks:
        r["checks"] = checks(gen, args)
    if not args.skip_latency:
        r["latency"] = latency(gen, args)
    if not args.skip_quality:
        r["quality"] = quality(gen, args)
    r["foreign_cores"] = common.foreign_cores()
    r["wall_s"] = time.perf_counter() - t0
    return r


def report(r: dict[str, Any]) -> str:
    out = ["## Syntax-guided beam search and latency budgets", "", common.polluted_note()]
    if "skipped" in r:
        return "\n".join(out + [f"Not measured: {r['skipped']}."]) + "\n"
    fc = r.get("foreign_cores")
    out += [f"Model {r['model']}; torch threads {r['threads']}; other processes kept "
            f"{fc if fc is None else round(fc, 2)} of {r['machine']['nproc']} cores busy on average.", ""]
    if "quality" in r:
        rows = []
        for ds, res in r["quality"].items():
            for v, s in res.items():
                if isinstance(s, dict):
                    rows.append([ds, v, s["examples"], s["answered_rate"], s["bleu"], s["exact_match"],
                                 s["latency_ms_p50"], s["latency_ms_p95"]])
        out += ["### Quality (evaluate.run_model, beam 5)", "",
                common.table(["data", "variant", "examples", "answered %", "BLEU", "exact %", "p50 ms", "p95 ms"], rows), ""]
    if "latency" in r:
        lat = r["latency"]
        rows = [[n, s["p50_ms"], s["p95_ms"], s["max_ms"]] for n, s in lat["median"].items()]
        ratio = lat["p50_ratio_pruned_over_unpruned"]
        out += [f"### Warm latency (generate, n 5; {lat['intents']} intents × {len(lat['rounds'])} rounds; "
                "medians over rounds)", "",
                common.table(["variant", "p50 ms", "p95 ms", "max ms"], rows), "",
                f"- p50 pruned / unpruned per round: {', '.join(f'{x:.3f}' for x in ratio['per_round'])} "
                f"(median {ratio['median']:.3f}).", ""]
    rows = [[ds, c["intents"], c["checks"], c["pruned"], round(c["pruned_per_check_pct"], 2), c["final_checks"],
             c["final_rejected"], round(c["final_rejected_pct"], 1), round(c["scanner_us_per_piece"], 2),
             round(c["final_check_us"], 1)] for ds, c in r.get("checks", {}).items()]
    out += ["### How often pruning fires, and what a check costs", "",
            common.table(["data", "intents", "scanner checks", "pruned", "pruned %", "EOS checks", "EOS rejected",
                          "rejected %", "µs / piece", "µs / EOS check"], rows)]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    common.add_model_option(p)
    common.add_conala_options(p)
    p.add_argument("--nl2bash", type=Path, default=common.default_conala().parent.parent / "nl2bash" / "split" / "dev.nl",
                   help="NL2Bash dev (.nl; its .cm beside it)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--budget-ms", type=float, nargs="+", default=[50.0],
                   help="latency budgets to compare (the latency part times the first one)")
    p.add_argument("--check-limit", type=int, default=100, help="intents per language for the fire rates")
    p.add_argument("--cpu-clock", action="store_true",
                   help="quality: budgets on this thread's CPU time (a loaded machine's stand-in for idle)")
    p.add_argument("--budget-only", action="store_true", help="quality: only the budget variants")
    p.add_argument("--skip-checks", action="store_true")
    p.add_argument("--skip-quality", action="store_true")
    p.add_argument("--skip-latency", action="store_true")
    return common.run_main(p, run, report, limit=4, rounds=1, check_limit=3)


if __name__ == "__main__":
    main()
