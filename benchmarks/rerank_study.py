"""How reranking choices move CoNaLa dev BLEU and the answered rate.

    python -m benchmarks.rerank_study [--model DIR] [--beam 5] [--conala PATH]

Decodes each dev intent once, keeps every candidate with its features, then re-scores the
same candidates under a few RerankConfig settings. Compares with the plain beam top-1 (the
model's own first choice, parsing or not). CoNaLa has no separate tuning split, so this is
a small, coarse grid; the shipped defaults are reported beside the alternatives.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path

from nl2code import metrics
from nl2code.engine import Generator
from nl2code.rerank import RerankConfig, score


def conala_dev(path: Path, n: int = 400) -> list[tuple[str, str]]:
    data = json.loads(path.read_text())[:n]
    return [(r["rewritten_intent"] or r["intent"], r["snippet"]) for r in data]


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    default = Path(os.environ.get("NL2CODE_DATA", root.parent / "shared" / "data")) / "conala" / "conala-train.json"
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path)
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--conala", type=Path, default=default)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    gen = Generator.from_checkpoint(args.model)
    dev = conala_dev(args.conala)
    pools = []
    for intent, _ in dev:
        pools.append(gen.candidates(intent, "python", beam=args.beam).ranked[: 4 * args.beam])
    refs = [ref for _, ref in dev]
    base = RerankConfig()
    settings = {
        "shipped defaults": base,
        "no coverage / invented terms": dataclasses.replace(base, w_coverage=0.0, w_invented=0.0),
        "coverage 0.3": dataclasses.replace(base, w_coverage=0.3),
        "no repaired candidates": dataclasses.replace(base, w_repaired=1e9),
        "repaired penalty 0.2": dataclasses.replace(base, w_repaired=0.2),
        "repaired penalty 1.0": dataclasses.replace(base, w_repaired=1.0),
    }
    rows = {}
    plain = [max((c for c in pool if not c.features.get("repaired")),
                 key=lambda c: c.features["norm_logprob"]).code if pool else "" for pool in pools]
    rows["plain beam top-1 (no filter)"] = (metrics.conala_bleu(refs, plain), 100.0)
    for name, rc in settings.items():
        hyps, answered = [], 0
        for pool in pools:
            ok = [c for c in pool if c.parses and c.features["tokens"] >= 0]
            ok = [c for c in ok if rc.w_repaired < 1e8 or not c.features.get("repaired")]
            best = max(ok, key=lambda c: score(c.features, rc)) if ok else None
            answered += best is not None
            hyps.append(best.code if best else "")
        rows[name] = (metrics.conala_bleu(refs, hyps), 100.0 * answered / len(pools))
    print(f"## Rerank study: CoNaLa dev ({len(dev)} intents), beam {args.beam}\n")
    print("| ranking | BLEU | answered % |\n| --- | ---: | ---: |")
    for name, (bleu, ans) in rows.items():
        print(f"| {name} | {bleu:.2f} | {ans:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
