"""Summarise a training log (JSON lines from `nl2code train`) as markdown.

    python -m benchmarks.training_run LOG [LOG ...] [--out FILE]

For each log: steps, training minutes, median target tokens/s, and the dev curve (dev loss
and greedy dev BLEU at each evaluation, with the elapsed time), so runs of different
architectures can be compared at equal training time.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def read_log(path: Path) -> list[dict]:
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def summarise(path: Path) -> str:
    recs = read_log(path)
    steps = [r for r in recs if r.get("event") == "step"]
    evals = [r for r in recs if r.get("event") == "eval"]
    # evaluations carry no elapsed time: take it from the nearest step record before them
    elapsed_at = {}
    last = 0.0
    for r in recs:
        if r.get("event") == "step":
            last = r["elapsed"]
        elif r.get("event") == "eval":
            elapsed_at[r["step"]] = last
    lines = [f"### {path}", ""]
    if steps:
        rates = [s["tok_per_s"] for s in steps if s["step"] > 1]
        lines.append(f"- steps: {steps[-1]['step']:,}; training time: {steps[-1]['elapsed'] / 60:.1f} min")
        if rates:
            lines.append(f"- target tokens/s (median of log windows): {statistics.median(rates):,.0f}")
        lines.append(f"- last logged training loss: {steps[-1]['loss']:.3f}")
    if evals:
        lines += ["", "| step | minutes | dev loss | dev BLEU (greedy) |", "| ---: | ---: | ---: | ---: |"]
        for e in evals:
            lines.append(f"| {e['step']:,} | {elapsed_at.get(e['step'], 0) / 60:.1f} | "
                         f"{e['dev_loss']:.3f} | {e['dev_bleu']:.2f} |")
        best = max(evals, key=lambda e: e["dev_bleu"])
        lines += ["", f"Best greedy dev BLEU {best['dev_bleu']:.2f} at step {best['step']:,}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = "\n".join(summarise(p) for p in args.logs)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
