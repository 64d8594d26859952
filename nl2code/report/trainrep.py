"""The training report: a run folder's log.jsonl -> curves, with resumptions marked.

The log holds one JSON object per line: "step" (loss, lr, tok_per_s, elapsed), "eval"
(dev_loss, dev_bleu, best), and "checkpoint", "interrupted", "early_stop", "resumed".
A resumption is a "resumed" event (the CLI writes one on --resume) or, in logs without
one, a step counter that goes back or repeats; each starts a new segment of every curve.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nl2code.errors import UsageError
from nl2code.report import plots
from nl2code.report.page import cards, figure, fmt, note, page, row, section, table


@dataclass
class Run:
    steps: list[dict[str, Any]] = field(default_factory=list)  # each with "segment"
    evals: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)  # everything else, in order
    resumptions: list[dict[str, Any]] = field(default_factory=list)  # {"step", "how"}
    skipped_lines: int = 0


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_log(run_dir: str | Path) -> Run:
    path = Path(run_dir) / "log.jsonl"
    if not Path(run_dir).is_dir():
        raise UsageError(f"run folder not found: {run_dir}")
    if not path.is_file():
        raise UsageError(f"{path} not found: is {run_dir} a folder written by `nl2code train`?")
    run = Run()
    segment = 0
    last_step = None
    pending = None  # a "resumed" event waiting for its first step record
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by a crash, or not JSON at all
                run.skipped_lines += 1
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("event"), str):
                run.skipped_lines += 1
                continue
            event, step = rec["event"], rec.get("step")
            if event == "resumed":
                segment += 1
                pending = {"step": step if _num(step) else None, "how": "resumed (--resume)"}
                run.resumptions.append(pending)
                run.events.append(rec)
                continue
            if not _num(step):
                run.skipped_lines += 1
                continue
            if event == "step":
                if not _num(rec.get("loss")):
                    run.skipped_lines += 1
                    continue
                if pending is not None:
                    if pending["step"] is None:
                        pending["step"] = step - 1
                    pending = None
                elif last_step is not None and step <= last_step:
                    segment += 1
                    run.resumptions.append({"step": step, "how": f"step went back from {last_step} to {step}"})
                last_step = step
                run.steps.append({**rec, "segment": segment})
            elif event == "eval":
                run.evals.append({**rec, "segment": segment})
            else:
                run.events.append(rec)
    if not run.steps:
        raise UsageError(f"{path}: no training steps logged")
    return run


def _segments(records: list[dict[str, Any]], key: str) -> list[list[tuple[float, float]]]:
    out: dict[int, list[tuple[float, float]]] = {}
    for r in records:
        if _num(r.get(key)):
            out.setdefault(r["segment"], []).append((r["step"], r[key]))
    return [out[k] for k in sorted(out)]


def summary(run: Run) -> dict[str, Any]:
    last = run.steps[-1]
    best = max((e for e in run.evals if _num(e.get("dev_bleu"))), key=lambda e: e["dev_bleu"], default=None)
    tps = [s["tok_per_s"] for s in run.steps if _num(s.get("tok_per_s"))]
    ends = [e["event"] for e in run.events if e["event"] in ("early_stop", "interrupted")]
    return {
        "last_step": last["step"],
        "last_loss": last["loss"],
        "minutes": last["elapsed"] / 60 if _num(last.get("elapsed")) else None,
        "best_dev_bleu": best["dev_bleu"] if best else None,
        "best_step": best["step"] if best else None,
        "last_dev_loss": run.evals[-1].get("dev_loss") if run.evals else None,
        "median_tok_per_s": statistics.median(tps) if tps else None,
        "resumptions": len(run.resumptions),
        "ended": ends[-1] if ends else None,
    }


def render(run_dir: str | Path) -> str:
    plots.require()
    run = read_log(run_dir)
    s = summary(run)
    marks = [(r["step"], "resumed") for r in run.resumptions if _num(r.get("step"))]
    marks += [(e["step"], e["event"].replace("_", " ")) for e in run.events
              if e["event"] in ("interrupted", "early_stop") and _num(e.get("step"))]
    sections = [section("overview", "Headline figures", cards([
        ("steps", fmt(s["last_step"]), ""),
        ("best dev BLEU", fmt(s["best_dev_bleu"]), f"at step {fmt(s['best_step'])}" if s["best_step"] else "no eval logged"),
        ("last train loss", fmt(s["last_loss"], 3), "label-smoothed"),
        ("last dev loss", fmt(s["last_dev_loss"], 3), ""),
        ("training time", fmt(s["minutes"], 1, " min"), "excluding time between resumptions"),
        ("median tokens/s", fmt(round(s["median_tok_per_s"])) if s["median_tok_per_s"] else "—", "target tokens"),
        ("resumptions", fmt(s["resumptions"]), s["ended"].replace("_", " ") if s["ended"] else ""),
    ]))]
    if run.skipped_lines:
        sections.append(note(f"{run.skipped_lines} unreadable log line(s) skipped."))
    loss_series = [("train loss", _segments(run.steps, "loss"))]
    if any(_num(e.get("dev_loss")) for e in run.evals):
        loss_series.append(("dev loss", _segments(run.evals, "dev_loss")))
    quality = [figure(plots.lines("Loss", loss_series, "step", "cross-entropy", marks),
                      "loss", "training loss (label-smoothed) and dev loss per step")]
    if any(_num(e.get("dev_bleu")) for e in run.evals):
        best = (s["best_step"], s["best_dev_bleu"]) if s["best_dev_bleu"] is not None else None
        uri = plots.lines("Dev BLEU", [("dev BLEU", _segments(run.evals, "dev_bleu"))], "step", "BLEU", marks, best=best)
        quality.append(figure(uri, "dev-bleu", "greedy dev BLEU at each evaluation"))
    sections.append(section("quality", "Loss and dev BLEU", row(*quality)))
    speed = []
    if any(_num(r.get("tok_per_s")) for r in run.steps):
        uri = plots.lines("Throughput", [("tokens/s", _segments(run.steps, "tok_per_s"))], "step", "target tokens / s", marks)
        speed.append(figure(uri, "throughput", "training throughput (target tokens per second)"))
    if any(_num(r.get("lr")) for r in run.steps):
        uri = plots.lines("Learning rate", [("lr", _segments(run.steps, "lr"))], "step", "learning rate", marks)
        speed.append(figure(uri, "lr", "learning-rate schedule"))
    if speed:
        sections.append(section("speed", "Tokens per second and learning rate", row(*speed)))
    if run.evals:
        sections.append(section("evals", "Evaluations", table(
            ["step", "dev loss", "dev BLEU", "best so far"],
            [(fmt(e["step"]), fmt(e.get("dev_loss"), 4), fmt(e.get("dev_bleu")), fmt(e.get("best")))
             for e in run.evals], numeric=(0, 1, 2, 3))))
    events = [(r.get("step"), r["how"]) for r in run.resumptions]
    events += [(e.get("step"), e["event"].replace("_", " ")) for e in run.events if e["event"] != "resumed"]
    events.sort(key=lambda ev: ev[0] if _num(ev[0]) else -1)  # stable: log order within a step
    if events:
        sections.append(section("events", "Resumptions and other events",
                                table(["step", "event"], [(fmt(st), what) for st, what in events], numeric=(0,))))
    return page("nl2code training report", str(Path(run_dir)), sections)
