"""What every command shares: one error handler (@guarded), stderr, stdin, reports, streams.

Exit codes: 0 answered, 1 no parseable candidate, 2 usage or input error, 130 interrupted,
141 stdout closed by its reader (`nl2code --batch < f | head -1`: the rest is not
generated, and nothing is printed about it; 141 = 128 + SIGPIPE, what a shell reports for
a command a closed pipe stopped).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from nl2code.errors import Nl2CodeError, UsageError

MAX_STDIN_BYTES = 10_000_000
EXIT_PIPE_CLOSED = 141
PRECISION_HELP = "Model matmuls: int8 (faster), float32, or auto (int8 where PyTorch supports it)."


def err_console():
    from rich.console import Console

    # NO_COLOR: no escape codes at all (rich alone drops colour but keeps bold/italic).
    # emoji=False: a path such as a:smile:b is printed as given, not as an emoji.
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=True, highlight=False, emoji=False, color_system=None if plain else "auto")


def fail(message: str, code: int = 2) -> "typer.Exit":
    message = " ".join(message.split())  # one line, even for a multi-line exception text
    err_console().print(f"nl2code: error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def pipe_closed() -> "typer.Exit":
    """stdout's reader went away: drop what is buffered (so Python's exit does not try to
    write it again) and end quietly."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real file descriptor (a test's buffer)
        pass
    return typer.Exit(EXIT_PIPE_CLOSED)


def guarded(command):
    """The CLI's one error handler, as a decorator under @app.command: typed errors become
    one stderr line and their exit code, a closed stdout ends quietly, a bug is one line
    (the traceback only with NL2CODE_DEBUG=1)."""

    @functools.wraps(command)  # typer reads the options from the wrapped signature
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Nl2CodeError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except (typer.Exit, SystemExit):
            raise
        except UnicodeEncodeError as exc:  # stdout's encoding (PYTHONIOENCODING) cannot hold the text
            raise fail(f"cannot write {exc.object[exc.start:exc.end]!r} in the {exc.encoding} encoding of "
                       f"stdout: set PYTHONIOENCODING=utf-8") from None
        except BrokenPipeError:
            raise pipe_closed() from None
        except OSError as exc:  # disk full, permission denied, ...: the system's own words
            where = f": {exc.filename}" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}") from None
        except Exception as exc:  # a bug: one line, the traceback only on request
            if os.environ.get("NL2CODE_DEBUG"):
                raise
            raise fail(f"internal error: {type(exc).__name__}: {exc} (set NL2CODE_DEBUG=1 for a traceback)") from None

    return run


def read_stdin() -> str:
    data = sys.stdin.buffer.read(MAX_STDIN_BYTES + 1) if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    if len(data) > MAX_STDIN_BYTES:
        raise UsageError(f"stdin is larger than {MAX_STDIN_BYTES // 1_000_000} MB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"stdin is not valid UTF-8 (bad byte at offset {exc.start})") from None


def load_generator(model: Optional[Path], precision: Optional[str] = None):
    from nl2code.engine import Generator

    return Generator.from_checkpoint(model, precision=precision)


def emit_report(report: dict, as_json: bool) -> None:
    """A flat report on stdout: one JSON object, or aligned `key value` lines."""
    if as_json:
        typer.echo(json.dumps(report))
        return
    width = max(len(k) for k in report) + 2
    for k, v in report.items():
        typer.echo(f"{k:{width}}{json.dumps(v) if isinstance(v, (dict, list)) else v}")


def out_folder(value: Optional[str], option: str = "--out") -> Optional[Path]:
    """An --out value as a Path; '' (which Path would read as the current folder) is an error."""
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{option} needs a folder name (got an empty one)")
    return Path(value)


def check_streams() -> None:
    """Closed or odd standard streams: one error line, never an AttributeError.

    A closed stdin reads as empty; a closed stdout is an error (the answer would be lost);
    stderr never fails on a character its encoding lacks.
    """
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    elif hasattr(sys.stderr, "reconfigure"):
        sys.stderr.reconfigure(errors="backslashreplace")
    if sys.stdin is None:
        sys.stdin = open(os.devnull)
    if sys.stdout is None:
        sys.stderr.write("nl2code: error: stdout is closed: the answer would be lost\n")
        sys.exit(2)


def flush_stdout() -> None:
    """Flush stdout before Python's own exit does: a full disk becomes one error line and
    exit 2 instead of an "Exception ignored" report; a reader that went away, a quiet end."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        sys.exit(pipe_closed().exit_code)
    except OSError as exc:
        try:  # nothing more can be written to stdout; drop what is buffered
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        sys.stderr.write(f"nl2code: error: cannot write to stdout: {exc.strerror or exc}\n")
        sys.exit(2)
