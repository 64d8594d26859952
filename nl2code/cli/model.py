"""`nl2code model info | package | average`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from nl2code.cli.base import emit_report, guarded, out_folder
from nl2code.cli.group import model_app
from nl2code.errors import UsageError


@model_app.command("info")
@guarded
def model_info(
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
    as_json: bool = typer.Option(False, "--json"),
):
    """What model: architecture, sizes, corpus, sha256, training time, dev scores."""

    from nl2code.card import model_card

    emit_report(model_card(model), as_json)


@model_app.command("package")
@guarded
def model_package(
    src: Path = typer.Argument(..., help="A trained model folder (e.g. runs/model/best)."),
    out: str = typer.Option(..., "--out", "-o", help="Destination folder (e.g. nl2code/assets/default)."),
    meta: list[str] = typer.Option([], "--meta", help="KEY=JSON metadata to record (repeatable)."),
    meta_file: list[Path] = typer.Option([], "--meta-file", help="KEY=FILE.json metadata (repeatable)."),
    half: bool = typer.Option(False, "--half", help="Store the weights as float16 (half the size)."),
    explain: Optional[Path] = typer.Option(None, "--explain", help="A reverse (code -> intent) model to carry along."),
    corpus: Optional[Path] = typer.Option(None, "--corpus", help="A data build output: carry its retrieval index and API table."),
):
    """Copy a model for shipping, without training state, adding metadata (dev scores ...)."""

    from nl2code import checkpoint, safefs

    update = {}
    for item in meta:
        key, _, value = item.partition("=")
        try:
            update[key] = json.loads(value)
        except json.JSONDecodeError:
            update[key] = value
    for item in meta_file:
        key, _, value = str(item).partition("=")
        try:
            update[key] = json.loads(safefs.read_text(value, 16 << 20, UsageError, "--meta-file"))
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"--meta-file {item}: {exc}") from None
    checkpoint.package(src, out_folder(out), update, half=half, explain=explain, corpus=corpus)
    typer.echo(str(out))


@model_app.command("average")
@guarded
def model_average(
    srcs: list[Path] = typer.Argument(..., help="Model folders of one run (e.g. its saved checkpoints)."),
    out: Path = typer.Option(..., "--out", "-o", help="Destination folder."),
):
    """Average the weights of several checkpoints of one training run."""

    from nl2code import checkpoint

    checkpoint.average(srcs, out)
    typer.echo(str(out))
