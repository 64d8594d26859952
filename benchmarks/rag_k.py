"""How many retrieved snippets a retrieval-augmented model reads: k = 0/1/2/3 at inference.

    python -m benchmarks.rag_k -m MODEL [--ks 0 1 2 3] [--limit N] [--json FILE]

The model's config says how many neighbours' code it was trained to read (context_k); this
overrides it at inference and scores CoNaLa dev (first 400 of conala-train.json) and NL2Bash
dev BLEU with the full pipeline (beam 5, filter, retrieved candidates, rerank), plus the
median latency. k other than the trained one is outside what the model saw in training.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--conala", default=str(ROOT.parent / "shared/data/conala/conala-train.json"))
    ap.add_argument("--nl2bash", default=str(ROOT.parent / "shared/data/nl2bash/split/dev.nl"))
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    import torch

    from nl2code.engine import Generator
    from nl2code.evaluate import load_dataset, run_model, summarise

    torch.set_num_threads(1)
    gen = Generator.from_checkpoint(args.model)
    trained = gen.model_cfg.context_k
    sets = [("conala", load_dataset(args.conala, first=400), "python"),
            ("nl2bash", load_dataset(args.nl2bash), "bash")]
    if args.limit:
        sets = [(n, d[: args.limit], lang) for n, d, lang in sets]
    rows = []
    for k in args.ks:
        gen.model_cfg = dataclasses.replace(gen.model_cfg, context_k=k)
        row = {"k": k, "trained_k": trained}
        for name, data, lang in sets:
            s = summarise(run_model(gen, data, lang), lang)
            row[f"{name}_bleu"] = s["bleu"]
            row[f"{name}_answered"] = s["answered_rate"]
            row[f"{name}_p50_ms"] = s["latency_ms_p50"]
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print("| k at inference | CoNaLa dev BLEU | NL2Bash dev BLEU | p50 ms (CoNaLa) | p50 ms (NL2Bash) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        mark = " (trained)" if r["k"] == trained else ""
        print(f"| {r['k']}{mark} | {r['conala_bleu']} | {r['nl2bash_bleu']} | {r['conala_p50_ms']} | {r['nl2bash_p50_ms']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
