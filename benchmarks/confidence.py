"""How often an answer below a score bound is right: the low-confidence bound of a model.

    python -m benchmarks.confidence --cache runs/rerank_cache.pkl [-m MODEL] [--bounds -20,-16,...]

Reads the candidates `benchmarks.rerank_fit --cache` collected (every dev intent's scored
candidates, every execution-suite candidate run once), ranks them with the model's own rerank
weights (config.json meta "rerank") and, for each bound, splits the top answers into
"below" and "at or above": execution pass@1 of each part (Python and bash cases of
`benchmarks/exec`), and corpus BLEU of each part on CoNaLa dev (Python) and NL2Bash dev
(bash). Only answers the reverse model scored count (the mark needs its term).

The suggested bound is the highest whole number at least one point below the score of every
execution-suite answer that passes, in either language: on the suite the mark never falls on
a right answer, with a point to spare. It is chosen on the suite, so the suite's figures
flatter it; the BLEU columns are the check on other data.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import sys
from pathlib import Path


def top_answers(cands_per_intent, cfg):
    """(index, top candidate, score without danger) of each intent with a scored top answer."""
    from benchmarks.rerank_fit import ranked
    from nl2code.rerank import score

    out = []
    for i, cands in enumerate(cands_per_intent):
        order = ranked(cands, cfg, True)
        if order and order[0]["f"].get("reconstruction_scored"):
            out.append((i, order[0], score(dict(order[0]["f"], danger=[]), cfg)))
    return out


def table(data: dict, cfgs: dict, bounds: list[float]) -> tuple[list[dict], float | None]:
    from nl2code.metrics import corpus_bleu, tokenize_for_bleu

    ex = data["exec"]
    rows, lowest_pass = [], math.inf
    per_lang = {}
    for lang, dev in (("python", "conala"), ("bash", "nl2bash")):
        idx = [i for i, c in enumerate(ex["cases"]) if c["lang"] == lang]
        answers = top_answers([ex["cands"][i] for i in idx], cfgs[lang])
        runs = [(s, ex["passed"].get(f'{ex["cases"][idx[j]]["id"]}\0{top["code"]}', False)) for j, top, s in answers]
        lowest_pass = min([lowest_pass] + [s for s, ok in runs if ok])
        d = data[dev]
        bleu_rows = [(s, tokenize_for_bleu(d["refs"][j]), tokenize_for_bleu(top["code"]))
                     for j, top, s in top_answers(d["cands"], cfgs[lang])]
        per_lang[lang] = (runs, bleu_rows, dev)
    for bound in bounds:
        for lang, (runs, bleu_rows, dev) in per_lang.items():
            below = [ok for s, ok in runs if s < bound]
            above = [ok for s, ok in runs if s >= bound]
            b_low = [(r, h) for s, r, h in bleu_rows if s < bound]
            b_high = [(r, h) for s, r, h in bleu_rows if s >= bound]
            rows.append({
                "bound": bound, "lang": lang,
                "exec_marked": len(below), "exec_answers": len(runs),
                "exec_pass_marked": sum(below), "exec_pass_rest": sum(above), "exec_rest": len(above),
                f"{dev}_marked": len(b_low), f"{dev}_answers": len(bleu_rows),
                "bleu_marked": round(corpus_bleu([r for r, _ in b_low], [h for _, h in b_low]), 1) if b_low else None,
                "bleu_rest": round(corpus_bleu([r for r, _ in b_high], [h for _, h in b_high]), 1) if b_high else None,
            })
    suggested = float(math.floor(lowest_pass - 1)) if math.isfinite(lowest_pass) else None
    return rows, suggested


def markdown(rows: list[dict]) -> str:
    lines = ["| bound | lang | exec answers marked | marked that pass | pass@1 of the rest | dev answers marked | "
             "BLEU marked | BLEU rest |", "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        dev = "conala" if r["lang"] == "python" else "nl2bash"
        rest = f'{100 * r["exec_pass_rest"] / max(r["exec_rest"], 1):.1f}%'
        lines.append(f'| {r["bound"]:g} | {r["lang"]} | {r["exec_marked"]} / {r["exec_answers"]} | '
                     f'{r["exec_pass_marked"]} | {rest} | {r[f"{dev}_marked"]} / {r[f"{dev}_answers"]} | '
                     f'{r["bleu_marked"]} | {r["bleu_rest"]} |')
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True, help="a pickle written by benchmarks.rerank_fit --cache")
    ap.add_argument("-m", "--model", default=None, help="the model whose rerank weights rank (default: bundled)")
    ap.add_argument("--bounds", default="-20,-16,-14,-12,-10,-8")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    from nl2code.checkpoint import load_model
    from nl2code.config import from_dict
    from nl2code.paths import resolve_model
    from nl2code.rerank import RerankConfig

    try:
        data, _, _ = pickle.loads(Path(args.cache).read_bytes())
        bounds = [float(b) for b in args.bounds.split(",")]
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        sys.exit(f"benchmarks.confidence: {exc}")
    meta = load_model(resolve_model(args.model))[3]
    cfgs = {lang: from_dict(RerankConfig, w) for lang, w in (meta.get("rerank") or {}).items()}
    for lang in ("python", "bash"):
        cfgs.setdefault(lang, RerankConfig())
    rows, suggested = table(data, cfgs, bounds)
    print(markdown(rows))
    print(f"\nsuggested bound (a point or more below every passing answer's score): {suggested}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "suggested": suggested}, indent=2) + "\n")


if __name__ == "__main__":
    main()
