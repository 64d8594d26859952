"""`nl2code INTENT` (-n, -l, --json, --batch, --explain) and `nl2code explain CODE`.

The engine's two verbs do the work: Generator.generate (what is printed) and
Generator.candidates (--explain's table); the engine owns the n -> beam rule.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from nl2code.cli.base import PRECISION_HELP, err_console, guarded, load_generator, read_stdin
from nl2code.cli.group import app
from nl2code.errors import NoParseableCandidate, UsageError


def _print_code(code: str, lang: str, tty: bool) -> None:
    if not tty or os.environ.get("NO_COLOR"):
        sys.stdout.write(code + "\n")
        return
    from rich.console import Console
    from rich.syntax import Syntax

    from nl2code.languages import lookup

    known = lookup(lang)
    Console().print(Syntax(code, known.lexer if known else "text", theme="ansi_dark",
                           background_color="default", word_wrap=True))


def _explain(cands, lang: str) -> None:
    from rich.table import Table
    from rich.text import Text  # plain text: code such as `[x for x in xs]` is not rich markup

    table = Table(title=f"candidates ({lang})", show_lines=False)
    for col in ("#", "score", "logprob", "parses", "coverage", "from", "recon", "why", "code"):
        table.add_column(col, overflow="fold", no_wrap=col not in ("why", "code"), min_width=24 if col == "code" else None)
    for i, c in enumerate(cands, 1):
        f = c.features
        recon = f.get("reconstruction")
        why = "; ".join(list(f.get("api_problems", [])) + list(c.danger) + (["low confidence"] if c.low_confidence else []))
        table.add_row(str(i), f"{c.score:.3f}", f"{c.logprob:.2f}", "yes" if c.parses else "no",
                      f"{f.get('coverage', 1.0):.2f}",
                      f"retrieved {f.get('similarity', 0):.2f}" if f.get("retrieved") else "model",
                      "" if recon is None else f"{'' if f.get('reconstruction_scored', True) else '≤'}{recon:.2f}",
                      Text(why), Text(c.code))
    console = err_console()
    if not console.is_terminal:  # a log or a pipe: room for the code, never folded mid-token
        console.width = max(console.width, 200)
    console.print(table)


def _warn_danger(cands) -> None:
    for c in cands:
        danger = c["danger"] if isinstance(c, dict) else c.danger  # dicts: a server's answer
        if danger:
            err_console().print(f"nl2code: warning: a candidate looks destructive ({'; '.join(danger)}); "
                            f"review before running it", markup=False, soft_wrap=True)
            break


def _note_low_confidence(cands) -> None:
    """One line on stderr when the printed answer is probably wrong (Candidate.low_confidence);
    stdout stays the code alone."""
    first = cands[0] if cands else None
    low = first.get("low_confidence") if isinstance(first, dict) else getattr(first, "low_confidence", None)
    if low:
        err_console().print("nl2code: low confidence: answers scored this low were rarely right on our dev sets; "
                            "rephrase, or see --explain and -n 5", markup=False, soft_wrap=True)


def _model_lang(lang: str, model: Optional[Path]) -> str:
    """The canonical name of -l, refused unless the model (-m, else the default) knows it."""
    from nl2code.checkpoint import trained_languages
    from nl2code.languages import canonical_lang
    from nl2code.paths import resolve_model

    return canonical_lang(lang, trained_languages(resolve_model(model)))


@app.command("generate", hidden=True)
@guarded
def generate(
    intent: Optional[str] = typer.Argument(None, help="What the code should do ('-' or none: read stdin)."),
    num: int = typer.Option(1, "-n", "--num", min=1, max=20, help="Candidates to print."),
    lang: str = typer.Option("python", "-l", "--lang",
                             help="Target language, one the model was trained on (the bundled one: python, bash)."),
    beam: int = typer.Option(5, "-b", "--beam", min=1, max=32, help="Beam size (widened to -n when smaller)."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL",
                                         help="Model folder (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (schema in the README)."),
    batch: bool = typer.Option(False, "--batch", help="One intent per stdin line; JSON Lines out."),
    explain: bool = typer.Option(False, "--explain", help="Show a table of scored candidates on stderr."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
    no_log: bool = typer.Option(False, "--no-log", help="Do not record this in the history (or NL2CODE_LOG=0)."),
    max_latency_ms: int = typer.Option(0, "--max-latency-ms", min=0, max=3_600_000, metavar="N",
                                       help="Answer within about N ms: the best parseable candidate found "
                                            "by then (0: no budget; not deterministic when it bites)."),
):
    """Generate code for an intent."""

    text = intent
    if not batch:
        if text in (None, "-"):
            if sys.stdin.isatty():
                raise UsageError('no intent given: nl2code "what the code should do"')
            text = read_stdin()
        # a warm `nl2code serve` answers without this process importing torch
        # (a server takes no budget: a budgeted request is answered in-process)
        if not explain and not max_latency_ms and _via_server(text, lang, num, beam, model, precision,
                                                              as_json, no_log):
            return
    lang_c = _model_lang(lang, model)  # only the languages this model was trained on
    if batch:
        if intent not in (None, "-"):
            raise UsageError("--batch reads intents from stdin; do not pass an intent argument")
        return _batch(read_stdin(), lang_c, num, beam, model, precision, no_log, max_latency_ms)
    from nl2code.engine import clean_intent

    text = clean_intent(text)  # before loading the model: bad input fails fast
    gen = load_generator(model, precision)
    started = time.perf_counter()
    try:
        if explain:  # the candidates the beam gave, parsing or not: the same answer, plus the why
            width = gen.decode_config(num, beam).beam_size
            every = gen.candidates(text, lang_c, beam=width, max_latency_ms=max_latency_ms)
            _explain(every.ranked[:width], lang_c)
            cands = every.answer(num)
        else:
            cands = gen.generate(text, lang_c, n=num, beam=beam, max_latency_ms=max_latency_ms)
    except NoParseableCandidate as exc:
        _log_generation(no_log, text, lang_c, gen, [], time.perf_counter() - started, str(exc))
        if as_json:
            _emit_json(text, lang_c, gen, [], str(exc))
        raise
    _log_generation(no_log, text, lang_c, gen, cands, time.perf_counter() - started, None)
    _warn_danger(cands)
    if as_json:
        _emit_json(text, lang_c, gen, cands, None)
        return
    tty = sys.stdout.isatty()
    for i, c in enumerate(cands):
        if i:
            sys.stdout.write("\n# ---\n")
        _print_code(c.code, lang_c, tty)
    _note_low_confidence(cands)


def _log_generation(no_log: bool, text: str, lang: str, gen, cands, seconds: float, error: Optional[str]) -> None:
    from nl2code import history

    if history.enabled(no_log):
        history.record_quietly("cli", text, lang, [c.to_dict() for c in cands], model=gen.path, error=error,
                               latency_ms=round(seconds * 1000, 2))


def _via_server(text: str, lang: str, num: int, beam: int, model, precision, as_json: bool, no_log: bool) -> bool:
    """Answer through a running `nl2code serve` (same answer, no torch here); False when none
    answers (or it is busy, or serves another model): then the caller generates in-process."""
    from nl2code import client, history

    if client.tried:  # the fast path asked already (nl2code.client.entry): no server answered
        return False
    got = client.generate(text, lang, num, beam, str(model) if model else None, precision,
                          log=history.enabled(no_log))
    if got is None:
        return False
    status, rec = got
    if status != 200:
        raise UsageError(rec.get("error") or "the server refused the request")
    if not rec["candidates"]:
        if as_json:
            sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        raise NoParseableCandidate(rec.get("error") or "no parseable candidate")
    _warn_danger(rec["candidates"])
    if as_json:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return True
    tty = sys.stdout.isatty()
    for i, c in enumerate(rec["candidates"]):
        if i:
            sys.stdout.write("\n# ---\n")
        _print_code(c["code"], rec["lang"], tty)
    _note_low_confidence(rec["candidates"])
    return True

@app.command("explain")
@guarded
def explain_cmd(
    code: Optional[str] = typer.Argument(None, help="The code to explain ('-' or none: read stdin)."),
    lang: str = typer.Option("python", "-l", "--lang", help="Language of the code: python, bash."),
    num: int = typer.Option(1, "-n", "--num", min=1, max=10, help="Explanations to print."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL",
                                         help="Model folder (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
):
    """Say in words what a snippet of code does (the reverse model)."""

    from nl2code.syntax import canonical_lang

    lang_c = canonical_lang(lang)
    text = code
    if text in (None, "-"):
        if sys.stdin.isatty():
            raise UsageError('no code given: nl2code explain "CODE" (or pipe it on stdin)')
        text = read_stdin()
    if not text.strip():
        raise UsageError("empty code: give the code to explain as an argument or on stdin")
    gen = load_generator(model, precision)
    texts = gen.explain(text, lang_c, n=num)
    if as_json:
        sys.stdout.write(json.dumps({"code": text, "lang": lang_c, "model": str(gen.path),
                                     "explanations": texts, "error": None}, ensure_ascii=False) + "\n")
        return
    sys.stdout.write("\n".join(texts) + "\n")


def _record(intent: str, lang: str, gen, cands, error: Optional[str]) -> dict:
    return {
        "intent": intent,
        "lang": lang,
        "model": str(gen.path) if gen is not None else None,
        "candidates": [c.to_dict() for c in cands],
        "error": error,
    }


def _emit_json(intent, lang, gen, cands, error) -> None:
    sys.stdout.write(json.dumps(_record(intent, lang, gen, cands, error), ensure_ascii=False) + "\n")


def _batch(text: str, lang: str, num: int, beam: int, model: Optional[Path], precision: Optional[str],
           no_log: bool = False, max_latency_ms: int = 0) -> None:
    """One JSON record per input line, in order: a blank or bad line gets an error record
    (and exit 1), so output line k answers input line k. Lines are decoded in groups
    (Generator.batch_width) and written group by group."""
    # split on newlines only: str.splitlines would also split an intent at \x0c, \x1c, U+2028...
    lines = [ln.rstrip("\r") for ln in text.split("\n")]
    if lines[-1] == "":  # the newline that ends the last line starts no line
        lines.pop()
    if not lines:
        raise UsageError("--batch got no intents on stdin")
    gen = load_generator(model, precision)
    if lang not in gen.languages:
        raise UsageError(f"this model was not trained for {lang}: it knows {', '.join(gen.languages)}")
    width = gen.batch_width
    unanswered = sum(_batch_group(gen, lines[i: i + width], lang, num, beam, no_log, max_latency_ms)
                     for i in range(0, len(lines), width))
    if unanswered:
        raise typer.Exit(1)


def _batch_group(gen, lines: list[str], lang: str, num: int, beam: int, no_log: bool,
                 max_latency_ms: int = 0) -> int:
    """Answer and print a group of --batch lines; -> how many got no answer."""
    from nl2code.engine import clean_intent

    texts, errors = {}, {}
    for i, line in enumerate(lines):
        try:
            texts[i] = clean_intent(line)
        except UsageError as exc:  # blank, too long: this line's record says so
            errors[i] = str(exc)
    started = time.perf_counter()
    answers = dict(zip(texts, gen.candidates_batch(list(texts.values()), lang, beam=beam, n=num,
                                                      max_latency_ms=max_latency_ms)))
    seconds = (time.perf_counter() - started) / max(len(texts), 1)  # each line's share of the group's time
    unanswered = 0
    for i, line in enumerate(lines):
        if i in errors:
            rec = _record(line, lang, gen, [], errors[i])
        else:
            try:
                cands = answers[i].answer(num)
                _warn_danger(cands)
                rec = _record(line, lang, gen, cands, None)
                _log_generation(no_log, line, lang, gen, cands, seconds, None)
            except NoParseableCandidate as exc:
                rec = _record(line, lang, gen, [], str(exc))
                _log_generation(no_log, line, lang, gen, [], seconds, str(exc))
        unanswered += rec["error"] is not None
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return unanswered
