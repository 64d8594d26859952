"""`nl2code data build`, `nl2code train` (and --from-history), `nl2code train report`.

The training log (RUN/log.jsonl) is written by the library (nl2code.train.run_log, rank 0
only); this command prints each event on stderr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nl2code.cli.base import err_console, guarded, out_folder
from nl2code.cli.group import app, data_app
from nl2code.errors import UsageError


@data_app.command("build")
@guarded
def data_build(
    recipe: Path = typer.Argument(..., help="Recipe TOML, e.g. datasets/default.toml."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder for train/dev JSONL and stats.json."),
):
    """Build a training corpus (train.jsonl, dev.jsonl, stats.json) from a recipe."""
    from nl2code.data.build import build

    out_dir = out_folder(out)
    console = err_console()
    with console.status("building corpus") as status:
        stats = build(recipe, out_dir, progress=lambda name: status.update(f"reading source: {name}"))
    from rich.table import Table

    table = Table(title=f"corpus {out}")
    for col in ("source", "read", "train", "dev"):
        table.add_column(col)
    for name, s in stats["sources"].items():
        table.add_row(name, str(s["read_train"]), str(s["train"]), str(s["dev"]))
    console.print(table)
    console.print(f"train {stats['train']:,}  dev {stats['dev']:,}  duplicates removed "
                  f"{stats['duplicates_removed']:,}  leak guard removed {stats['leak_guard_removed']:,}")
    for reason, count in sorted(stats["drops"].items(), key=lambda kv: -kv[1]):
        console.print(f"dropped {count:>7,}  {reason}", markup=False)
    for p in stats["problems"][:3]:
        console.print(f"first problems: {p}", markup=False, soft_wrap=True)
    typer.echo(json.dumps({"train": stats["train"], "dev": stats["dev"], "out": str(out)}))


# --- train ----------------------------------------------------------------------------------

@app.command("train")
@guarded
def train_cmd(
    config: Optional[Path] = typer.Argument(None, help="TOML with [train] and [model] tables."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="Corpus folder (overrides the config)."),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="Training folder (overrides the config)."),
    arch: Optional[str] = typer.Option(None, "--arch", help="transformer or rnn."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps"),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint in --out."),
    from_history: bool = typer.Option(False, "--from-history",
                                      help="Fine-tune a copy of -m on accepted answers (+ --corpus); keep it as "
                                           "--name only if no dev score drops."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL",
                                         help="--from-history: the model to start from."),
    name: str = typer.Option("mine", "--name", help="--from-history: keep the new model as NAME (-m NAME)."),
):
    """Train a model. Runs DDP unchanged under `torchrun --nproc_per_node N`."""

    if from_history:
        unused = [flag for flag, v in (("--out", out), ("--arch", arch), ("--max-minutes", max_minutes),
                                       ("--resume", resume)) if v]
        if unused:
            raise UsageError(f"{', '.join(unused)} do(es) nothing with --from-history")
        return _train_from_history(config, corpus, model, name, max_steps)
    from nl2code.config import ModelConfig, TrainConfig
    from nl2code.train import TrainingInterrupted, load_train_config, train

    tcfg, mcfg = load_train_config(config) if config else (TrainConfig(), ModelConfig())
    if corpus:
        tcfg.corpus = str(corpus)
    if out is not None:
        tcfg.out = str(out_folder(out))
    if arch:
        mcfg.arch = arch
    if max_steps is not None:
        tcfg.max_steps = max_steps
    if max_minutes is not None:
        tcfg.max_minutes = max_minutes
    if not tcfg.corpus:
        raise UsageError("no corpus: pass --corpus DIR or set [train] corpus")
    console = err_console()

    def log(rec: dict) -> None:  # the library writes log.jsonl; this prints the event
        if rec["event"] == "step":
            left = ""
            if tcfg.max_minutes:
                left = f"  ETA {max(tcfg.max_minutes * 60 - rec.get('session', rec['elapsed']), 0) / 60:.0f} min"
            console.print(f"step {rec['step']:>6}  loss {rec['loss']:.3f}  "
                          f"{rec['tok_per_s']:,.0f} tok/s{left}", markup=False)
        elif rec["event"] == "eval":
            console.print(f"eval at step {rec['step']}: dev loss {rec['dev_loss']:.3f}  "
                          f"dev BLEU {rec['dev_bleu']:.2f}  (best {rec['best']:.2f})", markup=False)
        elif rec["event"] == "denoise":
            console.print(f"denoising: {rec['examples_per_epoch']:,} examples per epoch from "
                          f"{rec['codes']:,} distinct code snippets", markup=False)
        elif rec["event"] == "resumed":
            console.print(f"resumed from step {rec['step']}", markup=False)
        else:
            console.print(f"{rec['event']} at step {rec.get('step')}", markup=False)

    try:
        best = train(tcfg, mcfg, resume=resume, log=log)
    except TrainingInterrupted as exc:
        console.print(f"nl2code: error: {exc.message}", markup=False, soft_wrap=True)
        raise typer.Exit(exc.code) from None
    typer.echo(str(best))


def _train_from_history(config, corpus, model, name, max_steps) -> None:
    from nl2code.history import History, default_path
    from nl2code.learn import LearnConfig, learn

    if config is not None:
        raise UsageError("--from-history takes no training config; use --corpus, -m, --name, --max-steps")
    if not default_path().exists():
        raise UsageError("no history yet: nothing was generated and accepted on this machine")
    cfg = LearnConfig(corpus=str(corpus or ""), base=str(model) if model else None, name=name)
    if max_steps is not None:
        cfg.steps = max_steps
    with History() as h:
        records = h.accepted()
    console = err_console()
    report = learn(cfg, records, log=lambda msg: console.print(f"nl2code: {msg}", markup=False, soft_wrap=True))
    for source, d in report["dev"].items():
        console.print(f"dev {source}: BLEU {d['before']['bleu']:.2f} -> {d['after']['bleu']:.2f}, exact match "
                      f"{d['before']['exact_match']:.2f} -> {d['after']['exact_match']:.2f}", markup=False)
    got = report["accepted_answered_exactly"]
    console.print(f"accepted answers given exactly: {got['before']} -> {got['after']} of {got['of']}", markup=False)
    typer.echo(json.dumps(report, ensure_ascii=False))
    if not report["kept"]:
        raise typer.Exit(1)


@app.command("train-report", hidden=True)
@guarded
def train_report_cmd(
    run_dir: Path = typer.Argument(..., help="A training folder (holds log.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default RUN_DIR/report.html)."),
):
    """`nl2code train report RUN_DIR`: loss, dev loss, dev BLEU, tokens/s and lr as an HTML page."""

    from nl2code import report as rp

    path = rp.write(out or run_dir / "report.html", rp.train_html(run_dir))
    typer.echo(str(path))
