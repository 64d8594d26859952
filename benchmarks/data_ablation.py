"""Fixed-budget data ablation (issue 14): which training sources help?

Each row adds sources to the one before it; every row trains the same model from the same
starting point for the same number of steps (batch_tokens fixed, so the same token budget),
then the packaged model alone (beam 5, syntax filter, default rerank weights; no reverse
model, no retrieval index: those would blur what the training data did) is scored on
CoNaLa dev BLEU, NL2Bash dev BLEU and the execution suite.

    python -m benchmarks.data_ablation prepare --corpus runs/corpus-v3 --out runs/abl
    python -m benchmarks.data_ablation train --init runs/v01 --out runs/abl ROW [ROW ...]
    python -m benchmarks.data_ablation eval --out runs/abl ROW [ROW ...]
    python -m benchmarks.data_ablation table --out runs/abl --markdown benchmarks/data_ablation.md

`--corpus` is the output of `nl2code data build datasets/default.toml`. Its rows are cut by
source tag, never rebuilt, so every row sees the same reader output, dedup and leak guard.
The `resample` row applies the recipe's resampling (nl2code.data.resample, keep 0.5 toward
CoNaLa) to the documentation and mined sources of the `free` row. The step budget is
counted in optimizer steps, not minutes, so a loaded machine makes a row slower, not
different (one thread each: the answers do not depend on the load).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("NL2CODE_DATA", ROOT.parent / "shared" / "data"))

CURATED = ("conala", "apidocs", "nl2bash", "django")
TLDR = ("tldr", "tldr-named")
MINED = ("mined-comment", "mined-docstring", "mined-doctest")
BASH_DOCS = ("manpages", "gcloud")
ROWS = ("curated", "tldr", "docs", "free", "resample", "nomined")
LABELS = {
    "init": "starting model (v0.1), not trained further",
    "curated": "curated only (CoNaLa, API docs, NL2Bash, Django)",
    "tldr": "+ tldr pages",
    "docs": "+ documentation pages, man pages, mined pairs",
    "free": "+ free-form CoNaLa variants",
    "resample": "+ resampling of docs and mined pairs (keep 0.5)",
    "nomined": "all but the mined pairs, no resampling (free-form row minus mined)",
}
TRAIN_TOML = """# data ablation row {row}: written by benchmarks/data_ablation.py
[train]
init_from = "{init}"
lr = 3e-4
warmup_steps = 100
batch_tokens = 4000
max_steps = {steps}
max_minutes = {minutes}
label_smoothing = 0.1
eval_every = 100000
keep_checkpoints = 1
save_every_minutes = 5
dev_bleu_examples = 0
threads = 1
seed = 4
"""


def _doc_tags(sources: set[str]) -> set[str]:
    return {s for s in sources if s.endswith("doc") or s in BASH_DOCS or s in MINED}


def row_tags(row: str, sources: set[str]) -> set[str]:
    """The source tags of a row: each row of ROWS adds to the one before, except the last
    (nomined), which takes the mined pairs out of the free-form row."""
    if row == "nomined":
        return row_tags("free", sources) - set(MINED)
    tags = set(CURATED)
    if ROWS.index(row) >= ROWS.index("tldr"):
        tags |= set(TLDR)
    if ROWS.index(row) >= ROWS.index("docs"):
        tags |= _doc_tags(sources)
    if ROWS.index(row) >= ROWS.index("free"):
        tags.add("conala-free")
    return tags & sources


def prepare(corpus: Path, out: Path, recipe: Path) -> None:
    from nl2code.data.build import load_recipe, _tags
    from nl2code.data.records import Report, read_jsonl
    from nl2code.data.resample import resample

    train = read_jsonl(corpus / "train.jsonl")
    stats = json.loads((corpus / "stats.json").read_text())
    sources = {e.source for e in train}
    dev_text = (corpus / "dev.jsonl").read_text()
    for row in ROWS:
        if (out / row / "corpus" / "stats.json").is_file():
            continue  # cut before: a row's corpus never changes under its results
        keep = row_tags(row, sources)
        rows = [e for e in train if e.source in keep]
        extra = {}
        if row == "resample":
            rec = load_recipe(recipe)
            cfg = dataclasses.replace(rec.resample, enabled=True)
            reference = set().union(*(_tags(s) for s in rec.sources if s.name in cfg.to))
            chosen = {s.name: _tags(s) & keep for s in rec.sources if s.resample}
            rows, extra = resample(rows, cfg, reference, chosen, Report())
        d = out / row / "corpus"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / "train.jsonl", "w", encoding="utf-8") as fh:
            for e in rows:
                fh.write(e.to_json() + "\n")
        (d / "dev.jsonl").write_text(dev_text)
        counts: dict[str, int] = {}
        for e in rows:
            counts[e.source] = counts.get(e.source, 0) + 1
        (d / "stats.json").write_text(json.dumps(
            {"train": len(rows), "weights": stats["weights"], "by_source_tag": counts,
             "resample": extra}, indent=1))
        print(f"{row}: {len(rows)} pairs", file=sys.stderr)


def train(init: Path, out: Path, rows: list[str], steps: int, minutes: float) -> None:
    for row in rows:
        cfg = out / row / "train.toml"
        cfg.write_text(TRAIN_TOML.format(row=row, init=init, steps=steps, minutes=minutes))
        run = out / row / "run"
        cmd = [sys.executable, "-m", "nl2code", "train", str(cfg), "--corpus", str(out / row / "corpus"),
               "--out", str(run)]
        if (run / "last").is_dir():
            cmd.append("--resume")
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _eval(pkg: Path, args: list[str], dest: Path) -> dict:
    if not dest.is_file():  # written whole or not at all: a rerun redoes an interrupted eval
        part = dest.with_suffix(".part")
        with open(part, "w") as fh:
            subprocess.run([sys.executable, "-m", "nl2code", "eval", *args, "-m", str(pkg), "--json"],
                           check=True, stdout=fh, env={**os.environ, "OMP_NUM_THREADS": "1",
                                                       "NL2CODE_THREADS": "1"})
        part.replace(dest)
    return json.loads(dest.read_text())


def evaluate(out: Path, rows: list[str], init: Path | None = None) -> None:
    """Score each row's model; with --init, also the starting model itself (row "init")."""
    if init is not None:
        (out / "init").mkdir(parents=True, exist_ok=True)
        rows = ["init", *rows]
    for row in rows:
        pkg = init if row == "init" else out / row / "pkg"
        if not pkg.is_dir():
            subprocess.run([sys.executable, "-m", "nl2code", "model", "package", str(out / row / "run" / "last"),
                            "--out", str(pkg), "--half"], check=True)
        _eval(pkg, [str(DATA / "conala/conala-train.json"), "--first", "400"], out / row / "conala.json")
        _eval(pkg, [str(DATA / "nl2bash/split/dev.nl"), "--lang", "bash"], out / row / "nl2bash.json")
        _eval(pkg, ["--exec", str(ROOT / "benchmarks/exec")], out / row / "exec.json")
        print(f"{row}: evaluated", file=sys.stderr)


def _shares(stats: dict) -> str:
    """The fraction of an epoch's draws that are CoNaLa pairs, and mined pairs (after weights)."""
    from nl2code.batches import source_weight

    counts, weights = stats.get("by_source_tag", {}), stats.get("weights", {})
    draws = {k: source_weight(weights, k) * n for k, n in counts.items()}
    total = sum(draws.values())
    if not total:
        return "—"
    con = sum(v for k, v in draws.items() if k.startswith("conala"))
    mined = sum(v for k, v in draws.items() if k in MINED)
    return f"{100 * con / total:.1f}% / {100 * mined / total:.1f}%"


def table(out: Path, markdown: Path | None) -> str:
    lines = ["| row | pairs | share CoNaLa / mined | CoNaLa dev BLEU | NL2Bash dev BLEU | exec pass@1 | pass@5 "
             "| py free | py CoNaLa-style | bash free | bash CoNaLa-style |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in ("init", *ROWS):
        if not (out / row / "exec.json").is_file():
            continue
        stats = {"train": 0} if row == "init" else json.loads((out / row / "corpus" / "stats.json").read_text())
        c, b, x = (json.loads((out / row / f"{n}.json").read_text()) for n in ("conala", "nl2bash", "exec"))
        style = x.get("by_lang_style", {})

        def p1(key: str) -> str:
            v = style.get(key, {}).get("pass@1")
            return "—" if v is None else f"{v:.1f}"

        lines.append(f"| {LABELS[row]} | {stats['train']:,} | {_shares(stats)} | {c['bleu']:.2f} | {b['bleu']:.2f} "
                     f"| {x['pass@1']:.1f} | {x['pass@5']:.1f} | {p1('python/free')} "
                     f"| {p1('python/conala')} | {p1('bash/free')} | {p1('bash/conala')} |")
    text = "\n".join(lines) + "\n"
    if markdown:
        markdown.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--recipe", type=Path, default=ROOT / "datasets/default.toml")
    p = sub.add_parser("train")
    p.add_argument("--init", type=Path, required=True, help="model folder every row starts from")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--minutes", type=float, default=90.0, help="safety cap per row")
    p.add_argument("rows", nargs="+", choices=ROWS)
    p = sub.add_parser("eval")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--init", type=Path, help="also score the starting model (row init)")
    p.add_argument("rows", nargs="*", help=f"any of {', '.join(ROWS)}")
    p = sub.add_parser("table")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--markdown", type=Path)
    a = ap.parse_args()
    bad = [r for r in getattr(a, "rows", []) if r not in ROWS]
    if bad:
        ap.error(f"unknown row(s) {bad}: choose from {', '.join(ROWS)}")
    if a.cmd == "prepare":
        prepare(a.corpus, a.out, a.recipe)
    elif a.cmd == "train":
        train(a.init.resolve(), a.out, a.rows, a.steps, a.minutes)
    elif a.cmd == "eval":
        evaluate(a.out, a.rows, a.init)
    else:
        print(table(a.out, a.markdown), end="")


if __name__ == "__main__":
    main()
