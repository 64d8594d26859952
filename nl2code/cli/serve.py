"""`nl2code serve`, `nl2code log`, `nl2code lsp`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import typer

from nl2code.cli.base import PRECISION_HELP, err_console, fail, guarded
from nl2code.cli.group import app
from nl2code.errors import UsageError


@app.command("serve")
@guarded
def serve_cmd(
    action: Optional[str] = typer.Argument(None, help="stop or status; none: start a server."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
    host: str = typer.Option("127.0.0.1", "--host", help="TCP address; anything but loopback needs --token."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port (0: any free port)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="NL2CODE_TOKEN", help="Bearer token clients must send."),
    background: bool = typer.Option(False, "--background", "-d", help="Start detached; return once it answers."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
    max_queue: int = typer.Option(32, "--max-queue", min=1, help="Requests queued before 503 + Retry-After."),
    timeout: float = typer.Option(30.0, "--timeout", min=0.1, help="Seconds a request may wait and run."),
    max_body: int = typer.Option(65536, "--max-body", min=256, help="Largest request body in bytes."),
    no_log: bool = typer.Option(False, "--no-log", help="Do not record generations in the history."),
):
    """HTTP/JSON API on 127.0.0.1:8765 and a socket the CLI uses (no torch start-up per call)."""

    from nl2code.serve import run

    if action == "stop":
        pid = run.stop()
        err_console().print(f"nl2code: stopped the server (pid {pid})" if pid else "nl2code: no server was running",
                        markup=False)
        return
    if action == "status":
        from nl2code import client

        info = client.health(f"unix:{client.socket_path()}")
        if info is None:
            raise fail("no server is running (start one: nl2code serve --background)", 1)
        typer.echo(json.dumps(info))
        return
    if action is not None:
        raise UsageError(f"unknown serve action {action!r}: use stop or status (none: start)")
    if background:
        run.check_bind(host, token)
        args = ["--host", host, "--port", str(port), "--max-queue", str(max_queue), "--timeout", str(timeout),
                "--max-body", str(max_body)] + (["-m", str(model)] if model else [])
        args += (["--precision", precision] if precision else []) + (["--no-log"] if no_log else [])
        if token:
            os.environ["NL2CODE_TOKEN"] = token  # the child reads it: never on a command line
        info = run.start_background(args)
        err_console().print(f"nl2code: server ready (pid {info['pid']}, {info['model']}); "
                        f"stop it with: nl2code serve stop", markup=False, soft_wrap=True)
        return
    run.serve(str(model) if model else None, host=host, port=port, token=token, precision=precision,
              max_queue=max_queue, timeout_s=timeout, max_body_bytes=max_body, log=not no_log,
              announce=lambda msg: err_console().print(msg, markup=False, soft_wrap=True))


@app.command("log")
@guarded
def log_cmd(
    num: int = typer.Option(20, "-n", "--num", min=1, help="How many records, newest first."),
    query: Optional[str] = typer.Option(None, "-q", "--query", help="Only records whose intent or code contain TEXT."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one record per line."),
):
    """Browse and search the history of generations (CLI, server, editor)."""

    from nl2code.history import History, default_path

    if not default_path().exists():
        err_console().print("nl2code: no history yet", markup=False)
        return
    with History() as h:
        records = h.recent(num, query)
    for r in records:
        if as_json:
            typer.echo(json.dumps(r.to_dict(), ensure_ascii=False))
            continue
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
        mark = "  accepted" if r.accepted else ""
        typer.echo(f"#{r.id}  {when}  {r.source}  {r.lang}{mark}  {' '.join(r.intent.split())}")
        code = r.chosen_code
        text = code if code is not None else f"(no answer: {r.error})"
        typer.echo("\n".join("    " + line for line in text.split("\n")))


@app.command("lsp")
@guarded
def lsp_cmd(
    tcp: Optional[str] = typer.Option(None, "--tcp", help="HOST:PORT instead of stdio (debugging)."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
):
    """Start the language server (same as `nl2code-lsp`)."""

    try:
        from nl2code_lsp.server import run
    except ImportError:
        raise UsageError("the language server package nl2code_lsp is not installed: reinstall nl2code (pip install .)") from None
    run(model=str(model) if model else None, tcp=tcp)
