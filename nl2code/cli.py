"""The `nl2code` command line (Typer). The only module that imports typer and rich.

`nl2code "intent"` needs no subcommand; nouns group the rest (data, train, eval, model,
lsp). stdout carries only the answer; progress, warnings and errors go to stderr. Exit
codes: 0 answered, 1 no parseable candidate, 2 usage or input error. Library errors are
typed (nl2code.errors) and become one line on stderr here, never a traceback.
torch is imported only by commands that need a model, so --help and --version are fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperGroup

from nl2code import __version__
from nl2code.errors import Nl2CodeError, NoParseableCandidate, UsageError

MAX_STDIN_BYTES = 10_000_000


class DefaultGroup(TyperGroup):
    """Route `nl2code "intent"` (no subcommand) to the hidden `generate` command."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        group_opts = {"--help", "-h", "--version", "-V", "--install-completion", "--show-completion"}
        if args[:2] == ["train", "report"]:  # `train` takes a config path; its one subcommand
            args = ["train-report", *args[2:]]
        if not args:
            if not sys.stdin.isatty():
                args = ["generate"]
        elif args[0] not in self.commands and args[0] not in group_opts:
            args = ["generate", *args]
        return super().parse_args(ctx, args)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Usage errors as one `nl2code: error:` line (exit 2) instead of click's block."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        # typer vendors click since 0.26; its exception classes live in typer._click
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError as ClickUsage

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except ClickUsage as exc:
            message = " ".join(exc.format_message().split())
            sys.stderr.write(f"nl2code: error: {message} (see nl2code --help)\n")
            sys.exit(2)
        except ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except typer.Abort:
            sys.stderr.write("nl2code: error: interrupted\n")
            sys.exit(130)
        sys.exit(rv if isinstance(rv, int) else 0)


app = typer.Typer(
    cls=DefaultGroup,
    help='Offline natural language to code.  nl2code "read csv file \'a.csv\'"',
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Build training corpora from recipes.", no_args_is_help=True)
model_app = typer.Typer(help="Inspect models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")


def _stderr():
    from rich.console import Console

    # NO_COLOR: no escape codes at all (rich alone drops colour but keeps bold/italic).
    # emoji=False: a path such as a:smile:b is printed as given, not as an emoji.
    plain = bool(os.environ.get("NO_COLOR"))
    return Console(stderr=True, highlight=False, emoji=False, color_system=None if plain else "auto")


def fail(message: str, code: int = 2) -> "typer.Exit":
    message = " ".join(message.split())  # one line, even for a multi-line exception text
    _stderr().print(f"nl2code: error: {message}", markup=False, soft_wrap=True)
    return typer.Exit(code)


def run_guarded(fn):
    """Call fn; typed errors become one stderr line and their exit code."""
    try:
        return fn()
    except Nl2CodeError as exc:
        raise fail(str(exc), exc.exit_code) from None
    except KeyboardInterrupt:
        raise fail("interrupted", 130) from None
    except (typer.Exit, SystemExit):
        raise
    except UnicodeEncodeError as exc:  # stdout's encoding (PYTHONIOENCODING) cannot hold the text
        raise fail(f"cannot write {exc.object[exc.start:exc.end]!r} in the {exc.encoding} encoding of "
                   f"stdout: set PYTHONIOENCODING=utf-8") from None
    except OSError as exc:  # disk full, permission denied, ...: the system's own words
        where = f": {exc.filename}" if exc.filename else ""
        raise fail(f"{exc.strerror or exc}{where}") from None
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("NL2CODE_DEBUG"):
            raise
        raise fail(f"internal error: {type(exc).__name__}: {exc} (set NL2CODE_DEBUG=1 for a traceback)") from None


def _version(value: bool):
    if value:
        typer.echo(f"nl2code {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                 help="Show the version and exit."),
):
    """Offline natural language to code: `nl2code "intent"` prints a snippet that parses."""


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


PRECISION_HELP = "Model matmuls: int8 (faster), float32, or auto (int8 where PyTorch supports it)."


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


def _model_lang(lang: str, model: Optional[Path]) -> str:
    """The canonical name of -l, refused unless the model (-m, else the default) knows it."""
    from nl2code.checkpoint import trained_languages
    from nl2code.languages import canonical_lang
    from nl2code.paths import resolve_model

    return canonical_lang(lang, trained_languages(resolve_model(model)))


def _explain(cands, lang: str) -> None:
    from rich.table import Table

    table = Table(title=f"candidates ({lang})", show_lines=False)
    for col in ("#", "score", "logprob", "parses", "coverage", "from", "recon", "why", "code"):
        table.add_column(col, overflow="fold", no_wrap=col not in ("why", "code"), min_width=24 if col == "code" else None)
    for i, c in enumerate(cands, 1):
        f = c.features
        recon = f.get("reconstruction")
        why = "; ".join(list(f.get("api_problems", [])) + list(c.danger))
        table.add_row(str(i), f"{c.score:.3f}", f"{c.logprob:.2f}", "yes" if c.parses else "no",
                      f"{f.get('coverage', 1.0):.2f}",
                      f"retrieved {f.get('similarity', 0):.2f}" if f.get("retrieved") else "model",
                      "" if recon is None else f"{recon:.2f}", why, c.code)
    console = _stderr()
    if not console.is_terminal:  # a log or a pipe: room for the code, never folded mid-token
        console.width = max(console.width, 200)
    console.print(table)


def _warn_danger(cands) -> None:
    for c in cands:
        danger = c["danger"] if isinstance(c, dict) else c.danger  # dicts: a server's answer
        if danger:
            _stderr().print(f"nl2code: warning: a candidate looks destructive ({'; '.join(danger)}); "
                            f"review before running it", markup=False, soft_wrap=True)
            break


@app.command("generate", hidden=True)
def generate(
    intent: Optional[str] = typer.Argument(None, help="What the code should do ('-' or none: read stdin)."),
    num: int = typer.Option(1, "-n", "--num", min=1, max=20, help="Candidates to print."),
    lang: str = typer.Option("python", "-l", "--lang", help="Target language, one the model was trained on (the bundled one: python, bash)."),
    beam: int = typer.Option(5, "-b", "--beam", min=1, max=32, help="Beam size."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL",
                                         help="Model folder (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (schema in the README)."),
    batch: bool = typer.Option(False, "--batch", help="One intent per stdin line; JSON Lines out."),
    explain: bool = typer.Option(False, "--explain", help="Show a table of scored candidates on stderr."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
    no_log: bool = typer.Option(False, "--no-log", help="Do not record this in the history (or NL2CODE_LOG=0)."),
):
    """Generate code for an intent."""

    def body():
        if num > beam:
            raise UsageError(f"--num {num} exceeds --beam {beam}: raise --beam")
        text = intent
        if not batch:
            if text in (None, "-"):
                if sys.stdin.isatty():
                    raise UsageError('no intent given: nl2code "what the code should do"')
                text = read_stdin()
            # a warm `nl2code serve` answers without this process importing torch
            if not explain and _via_server(text, lang, num, beam, model, precision, as_json, no_log):
                return
        from nl2code.config import DecodeConfig

        lang_c = _model_lang(lang, model)  # only the languages this model was trained on
        if batch:
            if intent not in (None, "-"):
                raise UsageError("--batch reads intents from stdin; do not pass an intent argument")
            return _batch(read_stdin(), lang_c, num, beam, model, precision, no_log)
        from nl2code.engine import clean_intent

        text = clean_intent(text)  # before loading the model: bad input fails fast
        gen = load_generator(model, precision)
        cfg = DecodeConfig(strategy="beam", beam_size=beam, n_best=beam)
        started = time.perf_counter()
        try:
            if explain:  # every beam candidate, parsing or not: the same answer, plus the why
                cands = gen.generate_batch([text], lang_c, n=beam, config=cfg, keep_unparsed=True,
                                           raise_empty=False)[0]
                _explain(cands, lang_c)
                cands = [c for c in cands if c.parses]
                if not cands:
                    raise NoParseableCandidate(f"no parseable {lang_c} candidate for this intent; "
                                               f"try rephrasing it or a larger --beam")
            else:
                cands = gen.generate(text, lang_c, n=num, config=cfg)
        except NoParseableCandidate as exc:
            _log_generation(no_log, text, lang_c, gen, [], started, str(exc))
            if as_json:
                _emit_json(text, lang_c, gen, [], str(exc))
            raise
        cands = cands[:num]
        _log_generation(no_log, text, lang_c, gen, cands, started, None)
        _warn_danger(cands)
        if as_json:
            _emit_json(text, lang_c, gen, cands, None)
            return
        tty = sys.stdout.isatty()
        for i, c in enumerate(cands):
            if i:
                sys.stdout.write("\n# ---\n")
            _print_code(c.code, lang_c, tty)

    run_guarded(body)


def _log_generation(no_log: bool, text: str, lang: str, gen, cands, started: float, error: Optional[str]) -> None:
    from nl2code import history

    if history.enabled(no_log):
        history.record_quietly("cli", text, lang, [c.to_dict() for c in cands], model=gen.path, error=error,
                               latency_ms=round((time.perf_counter() - started) * 1000, 2))


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
    return True

@app.command("explain")
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

    def body():
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

    run_guarded(body)


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
           no_log: bool = False) -> None:
    from nl2code.config import DecodeConfig

    # split on newlines only: str.splitlines would also split an intent at \x0c, \x1c, U+2028...
    lines = [ln.rstrip("\r") for ln in text.split("\n") if ln.strip()]
    if not lines:
        raise UsageError("--batch got no intents on stdin")
    gen = load_generator(model, precision)
    if lang not in gen.languages:
        raise UsageError(f"this model was not trained for {lang}: it knows {', '.join(gen.languages)}")
    cfg = DecodeConfig(strategy="beam", beam_size=beam, n_best=beam)
    unanswered = 0
    for line in lines:
        started = time.perf_counter()
        try:
            cands = gen.generate(line, lang, n=num, config=cfg)[:num]
            _warn_danger(cands)
            rec = _record(line, lang, gen, cands, None)
            _log_generation(no_log, line, lang, gen, cands, started, None)
        except NoParseableCandidate as exc:
            unanswered += 1
            rec = _record(line, lang, gen, [], str(exc))
            _log_generation(no_log, line, lang, gen, [], started, str(exc))
        except UsageError as exc:
            unanswered += 1
            rec = _record(line, lang, gen, [], str(exc))
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if unanswered:
        raise typer.Exit(1)


def _emit_report(report: dict, as_json: bool) -> None:
    """A flat report on stdout: one JSON object, or aligned `key value` lines."""
    if as_json:
        typer.echo(json.dumps(report))
        return
    width = max(len(k) for k in report) + 2
    for k, v in report.items():
        typer.echo(f"{k:{width}}{json.dumps(v) if isinstance(v, (dict, list)) else v}")


# --- data ---------------------------------------------------------------------------------

@data_app.command("build")
def data_build(
    recipe: Path = typer.Argument(..., help="Recipe TOML, e.g. datasets/default.toml."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder for train/dev JSONL and stats.json."),
):
    """Build a training corpus (train.jsonl, dev.jsonl, stats.json) from a recipe."""
    from nl2code.data.build import build

    def body():
        out_dir = _out_folder(out)
        console = _stderr()
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

    run_guarded(body)


# --- train ----------------------------------------------------------------------------------

@app.command("train")
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

    def body():
        if from_history:
            unused = [flag for flag, v in (("--out", out), ("--arch", arch), ("--max-minutes", max_minutes),
                                           ("--resume", resume)) if v]
            if unused:
                raise UsageError(f"{', '.join(unused)} do(es) nothing with --from-history")
            return _train_from_history(config, corpus, model, name, max_steps)
        from nl2code import safefs
        from nl2code.config import ModelConfig, TrainConfig
        from nl2code.train import TrainingInterrupted, load_train_config, train

        tcfg, mcfg = load_train_config(config) if config else (TrainConfig(), ModelConfig())
        if corpus:
            tcfg.corpus = str(corpus)
        if out is not None:
            tcfg.out = str(_out_folder(out))
        if arch:
            mcfg.arch = arch
        if max_steps is not None:
            tcfg.max_steps = max_steps
        if max_minutes is not None:
            tcfg.max_minutes = max_minutes
        if not tcfg.corpus:
            raise UsageError("no corpus: pass --corpus DIR or set [train] corpus")
        console = _stderr()
        log_path = Path(tcfg.out) / "log.jsonl" if tcfg.out else None

        def log(rec: dict) -> None:
            if log_path is not None:  # never through a link planted at log.jsonl
                log_path.parent.mkdir(parents=True, exist_ok=True)
                safefs.append_line(log_path, json.dumps(rec), UsageError)
            if rec["event"] == "step":
                left = ""
                if tcfg.max_minutes:
                    left = f"  ETA {max(tcfg.max_minutes * 60 - rec.get('session', rec['elapsed']), 0) / 60:.0f} min"
                console.print(f"step {rec['step']:>6}  loss {rec['loss']:.3f}  "
                              f"{rec['tok_per_s']:,.0f} tok/s{left}", markup=False)
            elif rec["event"] == "eval":
                console.print(f"eval at step {rec['step']}: dev loss {rec['dev_loss']:.3f}  "
                              f"dev BLEU {rec['dev_bleu']:.2f}  (best {rec['best']:.2f})", markup=False)
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

    run_guarded(body)


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
    console = _stderr()
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
def train_report_cmd(
    run_dir: Path = typer.Argument(..., help="A training folder (holds log.jsonl)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="HTML file (default RUN_DIR/report.html)."),
):
    """`nl2code train report RUN_DIR`: loss, dev loss, dev BLEU, tokens/s and lr as an HTML page."""

    def body():
        from nl2code import report as rp

        path = rp.write(out or run_dir / "report.html", rp.train_html(run_dir))
        typer.echo(str(path))

    run_guarded(body)


# --- eval -----------------------------------------------------------------------------------

@app.command("eval")
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

    def body():
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

            with Progress(console=_stderr(), transient=True) as prog:
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
                _stderr().print(f"report: {rp.write(report_path, rp.eval_html(report_full))}", markup=False)
            report = report_full if as_json else report
        _emit_report(report, as_json)

    run_guarded(body)


def _compare(files, dataset, report_path, as_json) -> None:
    from nl2code import report as rp

    if dataset is not None:
        raise UsageError("--compare takes two eval JSON reports and no dataset")
    result = rp.compare(rp.load_eval(files[0]), rp.load_eval(files[1]))
    if report_path is not None:
        _stderr().print(f"report: {rp.write(report_path, rp.compare_html(result))}", markup=False)
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
        with Progress(console=_stderr(), transient=True) as prog:
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
    with Progress(console=_stderr(), transient=True) as prog:
        gen_task = prog.add_task("generating", total=len(cases))
        run_task = prog.add_task("running", total=None)
        results = execsuite.score(gen, cases, beam=beam, gen_progress=lambda: prog.advance(gen_task),
                                  run_progress=lambda: prog.advance(run_task))
    report = execsuite.report(results, str(suite), str(gen.path))
    if report_path is not None:
        from nl2code import report as rp

        _stderr().print(f"report: {rp.write(report_path, rp.eval_html(execsuite.for_report(report)))}",
                        markup=False)
    typer.echo(json.dumps(report) if as_json else execsuite.format_table(report))


# --- model ----------------------------------------------------------------------------------

@model_app.command("info")
def model_info(
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
    as_json: bool = typer.Option(False, "--json"),
):
    """What model: architecture, sizes, corpus, sha256, training time, dev scores."""

    def body():
        from nl2code import checkpoint
        from nl2code.model import resolve_precision
        from nl2code.paths import default_model_path

        path = model or default_model_path()
        manifest = checkpoint.verify(path)
        cfg, meta = checkpoint.load_config(path)
        size = sum((Path(path) / f).stat().st_size for f in manifest["files"])
        info = {
            "path": str(path),
            "arch": cfg.arch,
            "d_model": cfg.d_model,
            "layers": [cfg.n_enc_layer, cfg.n_dec_layer],
            "vocab_size": cfg.vocab_size,
            # what generate would run: --precision / NL2CODE_PRECISION, else auto
            "precision": resolve_precision(None) if cfg.arch == "transformer" else "float32",
            "size_bytes": size,
            "sha256": manifest["files"],
            **{k: meta[k] for k in ("languages", "corpus", "corpus_size", "training_minutes", "step",
                                    "dev_bleu", "conala_dev", "nl2bash_dev") if k in meta},
            "notes": checkpoint.package_notes(meta),  # what `model package --meta` recorded
        }
        _emit_report(info, as_json)

    run_guarded(body)


@model_app.command("package")
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

    def body():
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
        checkpoint.package(src, _out_folder(out), update, half=half, explain=explain, corpus=corpus)
        typer.echo(str(out))

    run_guarded(body)


@model_app.command("average")
def model_average(
    srcs: list[Path] = typer.Argument(..., help="Model folders of one run (e.g. its saved checkpoints)."),
    out: Path = typer.Option(..., "--out", "-o", help="Destination folder."),
):
    """Average the weights of several checkpoints of one training run."""

    def body():
        from nl2code import checkpoint

        checkpoint.average(srcs, out)
        typer.echo(str(out))

    run_guarded(body)


# --- serve, log -----------------------------------------------------------------------------

@app.command("serve")
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

    def body():
        from nl2code.serve import run

        if action == "stop":
            pid = run.stop()
            _stderr().print(f"nl2code: stopped the server (pid {pid})" if pid else "nl2code: no server was running",
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
            _stderr().print(f"nl2code: server ready (pid {info['pid']}, {info['model']}); "
                            f"stop it with: nl2code serve stop", markup=False, soft_wrap=True)
            return
        run.serve(str(model) if model else None, host=host, port=port, token=token, precision=precision,
                  max_queue=max_queue, timeout_s=timeout, max_body_bytes=max_body, log=not no_log,
                  announce=lambda msg: _stderr().print(msg, markup=False, soft_wrap=True))

    run_guarded(body)


@app.command("log")
def log_cmd(
    num: int = typer.Option(20, "-n", "--num", min=1, help="How many records, newest first."),
    query: Optional[str] = typer.Option(None, "-q", "--query", help="Only records whose intent or code contain TEXT."),
    as_json: bool = typer.Option(False, "--json", help="JSON Lines: one record per line."),
):
    """Browse and search the history of generations (CLI, server, editor)."""

    def body():
        from nl2code.history import History, default_path

        if not default_path().exists():
            _stderr().print("nl2code: no history yet", markup=False)
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

    run_guarded(body)


# --- lsp ------------------------------------------------------------------------------------

@app.command("lsp")
def lsp_cmd(
    tcp: Optional[str] = typer.Option(None, "--tcp", help="HOST:PORT instead of stdio (debugging)."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
):
    """Start the language server (same as `nl2code-lsp`)."""

    def body():
        try:
            from nl2code_lsp.server import run
        except ImportError:
            raise UsageError("the language server package nl2code_lsp is not installed: reinstall nl2code (pip install .)") from None
        run(model=str(model) if model else None, tcp=tcp)

    run_guarded(body)


def _check_streams() -> None:
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


def _flush_stdout() -> None:
    """Flush stdout before Python's own exit does: a full disk or a closed pipe becomes one
    error line and exit 2 instead of an "Exception ignored" report."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        try:  # nothing more can be written to stdout; drop what is buffered
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        sys.stderr.write(f"nl2code: error: cannot write to stdout: {exc.strerror or exc}\n")
        sys.exit(2)


def _out_folder(value: Optional[str], option: str = "--out") -> Optional[Path]:
    """An --out value as a Path; '' (which Path would read as the current folder) is an error."""
    if value is None:
        return None
    if not value.strip():
        raise UsageError(f"{option} needs a folder name (got an empty one)")
    return Path(value)


def entry() -> None:
    _check_streams()
    try:
        app()
    except SystemExit as exc:
        _flush_stdout()
        raise exc from None
    _flush_stdout()


if __name__ == "__main__":
    entry()
