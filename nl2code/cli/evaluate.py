"""`nl2code eval`: a model or a baseline on a dataset, an execution suite, or two reports compared."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from nl2code.cli.base import PRECISION_HELP, emit_report, err_console, guarded, load_generator
from nl2code.cli.group import app
from nl2code.errors import UsageError


@app.command("eval")
@guarded
def eval_cmd(
    dataset: Optional[Path] = typer.Argument(None, help="CoNaLa JSON, NL2Bash .nl/.cm prefix, or JSONL."),
    lang: Optional[str] = typer.Option(None, "-l", "--lang", help="Default: python (with --exec: all)."),
    fmt: str = typer.Option("auto", "--format", help="conala, nl2bash, jsonl or auto."),
    first: int = typer.Option(0, "--first", help="Use only the first N examples (CoNaLa dev: 400)."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
    beam: int = typer.Option(5, "-b", "--beam", min=1, max=32),
    baseline: Optional[str] = typer.Option(None, "--baseline",
                                           help="copy (intent as code) or nearest (needs --train)."),
    train_data: Optional[Path] = typer.Option(None, "--train", help="Training data for --baseline nearest."),
    train_skip: int = typer.Option(0, "--train-skip", help="Skip the first N training records (CoNaLa: 400)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object, with a record per example."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
    report_path: Optional[Path] = typer.Option(None, "--report", help="Also write an HTML report (needs nl2code[report])."),
    compare: Optional[tuple[Path, Path]] = typer.Option(None, "--compare", metavar="A.json B.json",
                                                        help="Compare two `eval --json` files side by side."),
    exec_suite: Optional[Path] = typer.Option(None, "--exec", help="Execution suite (folder or .toml/.jsonl): "
                                              "runs the top-5 candidates in child processes, pass@1/pass@5."),
    self_test: bool = typer.Option(False, "--self-test", help="With --exec: every reference must pass, "
                                   "every wrong solution fail (no model needed)."),
):
    """Score a model (or a trivial baseline) on a dataset: BLEU, exact match, parse rate.

    With --exec SUITE: execute the candidates against the suite's checks (see SECURITY.md).
    """

    from nl2code import evaluate
    from nl2code.syntax import canonical_lang

    if report_path is not None:
        from nl2code import report as rp

        rp.require()  # before a long evaluation, not after
    if exec_suite is not None:
        if dataset is not None or baseline or train_data or first or fmt != "auto" or compare:
            raise UsageError("--exec SUITE takes no DATASET, --baseline, --train, --first, --format or --compare")
        return _eval_exec(exec_suite, canonical_lang(lang) if lang else None, model, beam, precision,
                          as_json, self_test, report_path)
    if self_test:
        raise UsageError("--self-test needs --exec SUITE")
    if compare:
        unused = [flag for flag, on in (("--baseline", baseline), ("--train", train_data), ("--first", first),
                                        ("--train-skip", train_skip), ("--format", fmt != "auto")) if on]
        if unused:
            raise UsageError(f"--compare reads two finished reports: {', '.join(unused)} would do nothing")
        return _compare(compare, dataset, report_path, as_json)
    if dataset is None:
        raise UsageError("no dataset: nl2code eval DATASET, nl2code eval --exec SUITE, "
                         "or nl2code eval --compare A.json B.json")
    lang_c = canonical_lang(lang or "python")
    data = evaluate.load_dataset(dataset, fmt, first)
    if baseline == "copy":
        rows = evaluate.run_baseline(lambda s: s, data, lang_c)
        name = "baseline: intent copied"
    elif baseline == "nearest":
        if not train_data:
            raise UsageError("--baseline nearest needs --train PATH")
        train = evaluate.load_dataset(train_data, "auto", 0, train_skip)
        rows = evaluate.run_baseline(evaluate.NearestIntent(train), data, lang_c)
        name = "baseline: nearest training intent"
    elif baseline is None:
        gen = load_generator(model, precision)
        from rich.progress import Progress

        with Progress(console=err_console(), transient=True) as prog:
            task = prog.add_task("evaluating", total=len(data))
            rows = evaluate.run_model(gen, data, lang_c, beam=beam,
                                      progress=lambda: prog.advance(task))
        name = str(gen.path)
    else:
        raise UsageError(f"unknown baseline {baseline!r}: use copy or nearest")
    report = {"dataset": str(dataset), "system": name, **evaluate.summarise(rows, lang_c)}
    if as_json or report_path is not None:
        report_full = {**report, **evaluate.details(rows)}
        if report_path is not None:
            err_console().print(f"report: {rp.write(report_path, rp.eval_html(report_full))}", markup=False)
        report = report_full if as_json else report
    emit_report(report, as_json)


def _compare(files, dataset, report_path, as_json) -> None:
    from nl2code import report as rp

    if dataset is not None:
        raise UsageError("--compare takes two eval JSON reports and no dataset")
    result = rp.compare(rp.load_eval(files[0]), rp.load_eval(files[1]))
    if report_path is not None:
        err_console().print(f"report: {rp.write(report_path, rp.compare_html(result))}", markup=False)
    if as_json:
        typer.echo(json.dumps(result))
    else:
        sys.stdout.write(rp.compare_text(result))


def _eval_exec(suite: Path, lang: Optional[str], model: Optional[Path], beam: int,
               precision: Optional[str], as_json: bool, self_test: bool, report_path: Optional[Path] = None) -> None:
    from rich.progress import Progress

    from nl2code import execsuite

    cases = execsuite.load_suite(suite, lang)
    if self_test:
        with Progress(console=err_console(), transient=True) as prog:
            task = prog.add_task("self-test", total=2 * len(cases))
            problems = execsuite.self_test(cases, progress=lambda: prog.advance(task))
        if as_json:
            typer.echo(json.dumps({"suite": str(suite), "cases": len(cases), "runs": 2 * len(cases),
                                   "problems": problems}))
        else:
            typer.echo(f"self-test {suite}: {len(cases)} cases, {2 * len(cases)} runs, "
                       f"{len(problems)} problem{'' if len(problems) == 1 else 's'}")
            for line in problems:
                typer.echo(f"  {line}")
        if problems:
            raise typer.Exit(1)
        return
    gen = load_generator(model, precision)
    with Progress(console=err_console(), transient=True) as prog:
        gen_task = prog.add_task("generating", total=len(cases))
        run_task = prog.add_task("running", total=None)
        results = execsuite.score(gen, cases, beam=beam, gen_progress=lambda: prog.advance(gen_task),
                                  run_progress=lambda: prog.advance(run_task))
    report = execsuite.report(results, str(suite), str(gen.path))
    if report_path is not None:
        from nl2code import report as rp

        err_console().print(f"report: {rp.write(report_path, rp.eval_html(execsuite.for_report(report)))}",
                        markup=False)
    typer.echo(json.dumps(report) if as_json else execsuite.format_table(report))
