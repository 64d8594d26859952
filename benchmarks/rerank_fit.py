"""Fit the reranker's weights on dev data, and the ablation table of issue 17.

    python -m benchmarks.rerank_fit [-m MODEL] [--conala PATH] [--nl2bash PREFIX]
        [--exec benchmarks/exec] [--out benchmarks/rerank_fit.json] [--markdown FILE]

Experiments (benchmarks/free_form.md): --beam N, --retrieve-k K, --recon-rows N change the
search before the fit; --consensus W,... ranks again with a consensus term; --no-repeat N.

1. Every dev intent (CoNaLa dev: the first 400 of conala-train.json; NL2Bash dev; the
   execution suite) is generated once, keeping every candidate with its features: the
   beam's candidates, bracket repairs and retrieved snippets, each with its length-normalised
   log-probability, slot coverage, reconstruction score, API problems and similarity.
2. Every candidate of an execution case is run once (nl2code.execsuite: confined child
   processes); pass/fail is cached.
3. A grid over the weights ranks the candidates again (pure arithmetic); the objective is
   CoNaLa dev BLEU + NL2Bash dev BLEU + exec pass@1 (all in points). Rows of the ablation
   switch parts off: no retrieved candidates, reconstruction weight 0, API weight 0.

Exec cases whose reference code also occurs in the training corpus (--corpus) are listed
and scored separately ("clean"), so a memorised answer cannot flatter the figures.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def collect(gen, items: list[tuple[str, str]], beam: int = 5) -> list[list[dict]]:
    """[(intent, lang)] -> per intent, every parsing candidate {code, features}."""
    out = []
    for intent, lang in items:
        try:  # beam 5 as shipped; every candidate (beam, repairs, retrieved)
            cands = gen.candidates(intent, lang, beam=beam).ranked
        except Exception as exc:  # an intent the engine refuses (too long, ...): no answer
            print(f"  skipped {intent[:50]!r}: {exc}", file=sys.stderr)
            cands = []
        out.append([{"code": c.code, "f": {k: v for k, v in c.features.items() if k != "danger"},
                     "danger": bool(c.danger)} for c in cands if c.parses])
    return out


def ranked(cands: list[dict], cfg, use_retrieved: bool, w_consensus: float = 0.0) -> list[dict]:
    """The candidates in the order this rerank config puts them (stable on ties);
    w_consensus > 0 adds that weight times the candidate's consensus (an experiment)."""
    from nl2code.rerank import score

    keyed = []
    for i, c in enumerate(cands):
        if c["f"].get("retrieved") and not use_retrieved:
            continue
        f = dict(c["f"], danger=["x"] if c["danger"] else [])
        bonus = w_consensus * consensus(cands, i) if w_consensus else 0.0
        keyed.append((-(score(f, cfg) + bonus), i, c))
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [c for _, _, c in keyed]


def consensus(cands: list[dict], i: int) -> float:
    """How much candidate i agrees with the beam's other candidates (minimum-Bayes-risk
    reranking): the F1 overlap of their 1- to 3-grams of code tokens, averaged with each
    other candidate weighted by its probability (exp of its length-normalised log-probability).
    Cached on the candidate."""
    if "consensus" not in cands[i]:
        import math
        from collections import Counter

        from nl2code.metrics import tokenize_for_bleu

        def grams(code: str) -> Counter:
            t = tokenize_for_bleu(code)
            return Counter(tuple(t[j:j + n]) for n in (1, 2, 3) for j in range(len(t) - n + 1))

        for c in cands:
            c.setdefault("_grams", grams(c["code"]))
        mine, num, den = cands[i]["_grams"], 0.0, 0.0
        for j, c in enumerate(cands):
            if j == i or c["f"].get("retrieved"):
                continue
            w = math.exp(c["f"]["norm_logprob"])
            total = sum(mine.values()) + sum(c["_grams"].values())
            num += w * (2 * sum((mine & c["_grams"]).values()) / total if total else 0.0)
            den += w
        cands[i]["consensus"] = num / den if den else 0.0
    return cands[i]["consensus"]


def pick(cands: list[dict], cfg, use_retrieved: bool, w_consensus: float = 0.0):
    order = ranked(cands, cfg, use_retrieved, w_consensus)
    return order[0] if order else None


def evaluate(cfg, use_retrieved: bool, data: dict, w_consensus: float = 0.0) -> dict:
    from nl2code.metrics import corpus_bleu, tokenize_for_bleu

    out = {}
    for name in ("conala", "nl2bash"):
        if name not in data:
            continue
        refs, hyps = [], []
        for ref, cands in zip(data[name]["refs"], data[name]["cands"]):
            best = pick(cands, cfg, use_retrieved, w_consensus)
            refs.append(tokenize_for_bleu(ref))
            hyps.append(tokenize_for_bleu(best["code"]) if best else [])
        out[f"{name}_bleu"] = round(corpus_bleu(refs, hyps), 2)
    if "exec" in data:
        ex = data["exec"]
        tally: dict = {}  # group -> [cases, passed at 1, passed in the top 5]
        for case, cands in zip(ex["cases"], ex["cands"]):  # each case ranked once
            top = [ex["passed"].get(f'{case["id"]}\0{c["code"]}', False) for c in ranked(cands, cfg, use_retrieved, w_consensus)[:5]]
            groups = ["all", f'{case["lang"]}_{case["style"]}'] + ([] if case["leaked"] else ["clean"])
            for g in groups:
                t = tally.setdefault(g, [0, 0, 0])
                t[0] += 1
                t[1] += bool(top and top[0])
                t[2] += any(top)
        for subset in ("all", "clean"):
            n, ok, _ = tally.get(subset, [0, 0, 0])
            out[f"exec_pass@1_{subset}"] = round(100 * ok / max(n, 1), 1)
        for style in ("free", "conala"):
            for lang in ("python", "bash"):
                n, ok, ok5 = tally.get(f"{lang}_{style}", [0, 0, 0])
                out[f"exec_{lang}_{style}"] = round(100 * ok / max(n, 1), 1)
                out[f"exec5_{lang}_{style}"] = round(100 * ok5 / max(n, 1), 1)
                out[f"n_{lang}_{style}"] = n
    return out


def markdown_table(rows: list[dict]) -> str:
    """Dev BLEU, exec pass@1 and pass@5 overall, and pass@1 / pass@5 per language and style."""
    head = ["CoNaLa dev BLEU", "NL2Bash dev BLEU", "exec pass@1", "pass@5", "pass@1 clean",
            "py free", "py CoNaLa-style", "bash free", "bash CoNaLa-style"]
    lines = ["| system | " + " | ".join(head) + " |", "| --- |" + " ---: |" * len(head)]
    for r in rows:
        cells = [r.get("conala_bleu", ""), r.get("nl2bash_bleu", ""), r.get("exec_pass@1_all", ""),
                 r.get("exec_pass@5_all", ""), r.get("exec_pass@1_clean", "")]
        cells += [f'{r.get(f"exec_{k}", "")} / {r.get(f"exec5_{k}", "")}'
                  for k in ("python_free", "python_conala", "bash_free", "bash_conala")]
        lines.append(f"| {r['system']} | " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def objective(m: dict) -> float:
    return m.get("conala_bleu", 0) + m.get("nl2bash_bleu", 0) + m.get("exec_pass@1_all", 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--conala", default=str(ROOT.parent / "shared/data/conala/conala-train.json"))
    ap.add_argument("--nl2bash", default=str(ROOT.parent / "shared/data/nl2bash/split/dev"))
    ap.add_argument("--exec", dest="exec_suite", default=str(ROOT / "benchmarks/exec"))
    ap.add_argument("--corpus", default="", help="training corpus folder, to mark exec cases it contains")
    ap.add_argument("--limit", type=int, default=0, help="only the first N of each set (a quick check)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/rerank_fit.json"))
    ap.add_argument("--markdown", default="")
    ap.add_argument("--also-weights", default="", help="JSON {lang: weights} (e.g. another model's meta "
                    "rerank): one more row with these weights, not fitted here")
    ap.add_argument("--cache", default="", help="pickle of the collected candidates: written, or read if it exists")
    ap.add_argument("--cv", action="store_true", help="also a 2-fold cross-validation of the fit: weights fitted on "
                    "one half of each dev set, scored on the other (how much the in-sample figures flatter)")
    ap.add_argument("--no-repeat", type=int, default=0, metavar="N",
                    help="experiment: the forward beam never repeats an n-gram of N pieces (benchmarks/free_form.md)")
    ap.add_argument("--beam", type=int, default=5, help="experiment: the beam width (shipped: 5)")
    ap.add_argument("--retrieve-k", type=int, default=None, metavar="K",
                    help="experiment: retrieved snippets per intent (shipped: nl2code.augment.RETRIEVE_K)")
    ap.add_argument("--recon-rows", type=int, default=None, metavar="N",
                    help="experiment: candidates the reverse model scores (shipped: nl2code.engine.RECON_ROWS)")
    ap.add_argument("--consensus", default="", metavar="W,W,...",
                    help="experiment: also rank with these weights of a consensus (MBR) term on top of the "
                         "fitted weights (benchmarks/free_form.md)")
    args = ap.parse_args()

    t0 = time.time()
    import pickle

    if args.cache and Path(args.cache).exists():
        data, model_path, leaked = pickle.loads(Path(args.cache).read_bytes())
    else:
        data, model_path, leaked = collect_all(args, t0)
        if args.cache:
            Path(args.cache).write_bytes(pickle.dumps((data, model_path, leaked)))
    fitted = fit(args, data, model_path, leaked, t0)
    if args.cv:
        print(crossval(data, fitted))
    if args.consensus:
        print(consensus_table(data, fitted, [float(w) for w in args.consensus.split(",")]))


def consensus_table(data: dict, fitted: dict, weights: list[float]) -> str:
    """The fitted weights plus a consensus term of each weight (0 = as fitted)."""
    lines = ["| consensus weight | CoNaLa BLEU | Python exec pass@1 | NL2Bash BLEU | bash exec pass@1 |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for w in [0.0, *weights]:
        py = evaluate(fitted["python"], True, only(data, "python"), w)
        sh = evaluate(fitted["bash"], True, only(data, "bash"), w)
        lines.append(f"| {w} | {py.get('conala_bleu', '')} | {py['exec_pass@1_all']} | "
                     f"{sh.get('nl2bash_bleu', '')} | {sh['exec_pass@1_all']} |")
    return "\n".join(lines)


GRID = list(itertools.product([0.0, 0.5, 1.0, 2.0, 3.0, 4.0],  # reconstruction
                              [-2.0, -1.0, -0.5, 0.0, 0.5],    # retrieved bias
                              [0.0, 1.0, 2.0, 4.0, 6.0],       # similarity
                              [0.0, 0.5, 1.0, 2.0]))           # api


def best_weights(part: dict, base):
    """The grid's best config on these dev sets (their BLEU + exec pass@1), first on ties."""
    best_cfg, best_obj = base, -1.0
    for wr, wb, ws, wa in GRID:
        cfg = replace(base, w_reconstruction=wr, w_retrieved=wb, w_similarity=ws, w_api=wa)
        m = evaluate(cfg, True, part)
        o = sum(v for k, v in m.items() if k.endswith("_bleu") or k == "exec_pass@1_all")
        if o > best_obj:
            best_cfg, best_obj = cfg, o
    return best_cfg


def _fold(part: dict, dev: str, k: int) -> dict:
    """Half k (0 or 1) of one language's dev sets: every other intent and exec case."""
    d, ex = part[dev], part["exec"]
    keep = [i for i in range(len(ex["cases"])) if i % 2 == k]
    return {dev: {"refs": d["refs"][k::2], "cands": d["cands"][k::2]},
            "exec": {"cases": [ex["cases"][i] for i in keep], "cands": [ex["cands"][i] for i in keep],
                     "passed": ex["passed"]}}


def crossval(data: dict, everything: dict) -> str:
    """Per language and half: the weights fitted on the other half against `everything`
    ({lang: the weights fitted on all of it}: in-sample for this half), both scored on this half."""
    from nl2code.rerank import RerankConfig

    lines = ["| language | half | fitted on the other half: BLEU / exec pass@1 | fitted on all: BLEU / exec pass@1 |",
             "| --- | ---: | ---: | ---: |"]
    for lang, dev in (("python", "conala"), ("bash", "nl2bash")):
        part = only(data, lang)
        for k in (0, 1):
            held = best_weights(_fold(part, dev, 1 - k), RerankConfig())
            a, b = (evaluate(cfg, True, _fold(part, dev, k)) for cfg in (held, everything[lang]))
            lines.append(f"| {lang} | {k} | {a[f'{dev}_bleu']} / {a['exec_pass@1_all']} | "
                         f"{b[f'{dev}_bleu']} / {b['exec_pass@1_all']} |")
    return "\n".join(lines)


def collect_all(args, t0):
    from nl2code import evaluate as ev
    from nl2code import execsuite
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(args.model)
    gen.retrieve_k, gen.recon_rows = args.retrieve_k, args.recon_rows
    if args.no_repeat:
        from nl2code.explain import _NoRepeat

        gen.model = _NoRepeat(gen.model, args.no_repeat)
    data: dict = {}
    lim = args.limit or None
    conala = ev.load_dataset(args.conala, "auto", 400)[:lim]
    data["conala"] = {"refs": [e.code for e in conala], "cands": collect(gen, [(e.intent, "python") for e in conala], args.beam)}
    print(f"conala: {len(conala)} in {time.time() - t0:.0f} s", file=sys.stderr)
    bash = ev.load_dataset(args.nl2bash, "auto", 0)[:lim]
    data["nl2bash"] = {"refs": [e.code for e in bash], "cands": collect(gen, [(e.intent, "bash") for e in bash], args.beam)}
    print(f"nl2bash: {len(bash)} in {time.time() - t0:.0f} s", file=sys.stderr)
    cases = execsuite.load_suite(args.exec_suite)[:lim]
    leaked = set()
    if args.corpus:
        from nl2code.data.build import _code_norm
        from nl2code.data.records import read_jsonl

        train_codes = {_code_norm(e.code) for e in read_jsonl(Path(args.corpus) / "train.jsonl")}
        leaked = {c.id for c in cases if _code_norm(c.reference) in train_codes}
    cands = collect(gen, [(c.intent, c.lang) for c in cases], args.beam)
    jobs = sorted({(i, c["code"]) for i, cs in enumerate(cands) for c in cs})
    runs = execsuite._parallel(lambda j: execsuite.run_snippet(cases[j[0]], j[1]), jobs, execsuite.MAX_WORKERS)
    passed = {f"{cases[i].id}\0{code}": r.passed for (i, code), r in zip(jobs, runs)}
    data["exec"] = {"cases": [{"id": c.id, "lang": c.lang, "style": c.style, "leaked": c.id in leaked} for c in cases],
                    "cands": cands, "passed": passed}
    print(f"exec: {len(cases)} cases, {len(jobs)} runs in {time.time() - t0:.0f} s; "
          f"reference code in training: {sorted(leaked)}", file=sys.stderr)
    return data, str(gen.path), leaked


def only(data: dict, lang: str) -> dict:
    """The dev sets of one language (rerank weights are fitted per language)."""
    out = {k: v for k, v in data.items() if k == ("conala" if lang == "python" else "nl2bash")}
    ex = data["exec"]
    keep = [i for i, c in enumerate(ex["cases"]) if c["lang"] == lang]
    out["exec"] = {"cases": [ex["cases"][i] for i in keep], "cands": [ex["cands"][i] for i in keep],
                   "passed": ex["passed"]}
    return out


def fit(args, data, model_path, leaked, t0):
    from nl2code.rerank import RerankConfig

    base = RerankConfig()
    rows = []
    fitted = {}
    off = replace(base, w_reconstruction=0.0, w_api=0.0, w_retrieved=0.0, w_similarity=0.0)
    for lang in ("python", "bash"):
        fitted[lang] = best_weights(only(data, lang), base)

    def row(name, cfgs, use_retrieved):
        m = {}
        for lang in ("python", "bash"):
            m[lang] = evaluate(cfgs[lang], use_retrieved, only(data, lang))
        merged = {**{k: v for k, v in m["python"].items() if not k.startswith("exec")},
                  **{k: v for k, v in m["bash"].items() if not k.startswith("exec")}}
        for lang in ("python", "bash"):
            for style in ("free", "conala"):
                for k in (f"exec_{lang}_{style}", f"exec5_{lang}_{style}"):
                    merged[k] = m[lang][k]
        n5 = sum(m[lang][f"n_{lang}_{style}"] for lang in ("python", "bash") for style in ("free", "conala"))
        merged["exec_pass@5_all"] = round(sum(m[lang][f"exec5_{lang}_{style}"] * m[lang][f"n_{lang}_{style}"]
                                              for lang in ("python", "bash") for style in ("free", "conala"))
                                          / max(n5, 1), 1)
        n_py = sum(1 for c in data["exec"]["cases"] if c["lang"] == "python")
        n_sh = len(data["exec"]["cases"]) - n_py
        merged["exec_pass@1_all"] = round((m["python"]["exec_pass@1_all"] * n_py + m["bash"]["exec_pass@1_all"] * n_sh)
                                          / max(n_py + n_sh, 1), 1)
        n_py_c = sum(1 for c in data["exec"]["cases"] if c["lang"] == "python" and not c["leaked"])
        n_sh_c = sum(1 for c in data["exec"]["cases"] if c["lang"] == "bash" and not c["leaked"])
        merged["exec_pass@1_clean"] = round((m["python"]["exec_pass@1_clean"] * n_py_c
                                             + m["bash"]["exec_pass@1_clean"] * n_sh_c) / max(n_py_c + n_sh_c, 1), 1)
        rows.append({"system": name, **merged, "retrieved_candidates": use_retrieved,
                     "weights": {lang: asdict(c) for lang, c in cfgs.items()}})

    both = lambda f: {lang: f(fitted[lang]) for lang in ("python", "bash")}  # noqa: E731
    row("base (beam + filter + v0.1 rerank)", both(lambda c: off), False)
    row("+ retrieved candidates", both(lambda c: replace(off, w_retrieved=c.w_retrieved, w_similarity=c.w_similarity)), True)
    row("+ reconstruction feature", both(lambda c: replace(off, w_reconstruction=c.w_reconstruction)), False)
    row("+ API check", both(lambda c: replace(off, w_api=c.w_api)), False)
    row("all (weights fitted per language)", fitted, True)
    if getattr(args, "also_weights", ""):
        from nl2code.config import from_dict

        given = json.loads(Path(args.also_weights).read_text())
        row(f"all, weights of {Path(args.also_weights).name} (not fitted here)",
            {lang: from_dict(RerankConfig, given[lang]) for lang in ("python", "bash")}, True)
    best_cfg = fitted
    result = {"model": model_path, "seconds": round(time.time() - t0), "leaked_exec_cases": sorted(leaked),
              "best": {lang: asdict(c) for lang, c in best_cfg.items()}, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    table = markdown_table(rows)
    print(table)
    print("fitted:", json.dumps(result["best"]))
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return fitted


if __name__ == "__main__":
    main()
