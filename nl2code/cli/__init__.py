"""The `nl2code` command line (Typer). The CLI package is the only part of nl2code that
imports typer and rich.

`nl2code "intent"` needs no subcommand; nouns group the rest (data, train, eval, model,
serve, log, lsp). stdout carries only the answer; progress, warnings and errors go to
stderr. Library errors are typed (nl2code.errors) and become one line on stderr
(nl2code.cli.base.guarded), never a traceback; exit codes are listed there. torch is
imported only by commands that need a model, so --help and --version are fast.

    group.py     the group: routing an intent to `generate`, --help, `nl2code help`
    base.py      the one error handler, stderr, stdin, reports, stream checks
    generate.py  nl2code INTENT, --batch, --explain, and `nl2code explain`
    train.py     data build, train (and --from-history), train report
    evaluate.py  eval (datasets, baselines, --exec suites, --compare)
    model.py     model info / package / average
    serve.py     serve, log, lsp
"""

from __future__ import annotations


# the command modules register their commands, in the order --help lists them
from nl2code.cli import generate, train, evaluate, model, serve  # noqa: F401,I001
from nl2code.cli.base import MAX_STDIN_BYTES, check_streams, flush_stdout
from nl2code.cli.group import app

__all__ = ["MAX_STDIN_BYTES", "app", "entry"]


def entry() -> None:
    check_streams()
    try:
        app()
    except SystemExit as exc:
        flush_stdout()
        raise exc from None
    flush_stdout()


if __name__ == "__main__":
    entry()
