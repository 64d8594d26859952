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

    Console().print(Syntax(code, "python" if lang == "python" else "bash", theme="ansi_dark",
                           background_color="default", word_wrap=True))


def _explain(cands, lang: str) -> None:
    from rich.table import Table

    table = Table(title=f"candidates ({lang})", show_lines=False)
    for col in ("#", "score", "logprob", "parses", "coverage", "code"):
        table.add_column(col, overflow="fold")
    for i, c in enumerate(cands, 1):
        table.add_row(str(i), f"{c.score:.3f}", f"{c.logprob:.2f}", "yes" if c.parses else "no",
                      f"{c.features.get('coverage', 1.0):.2f}", c.code)
    _stderr().print(table)


def _warn_danger(cands) -> None:
    for c in cands:
        if c.danger:
            _stderr().print(f"nl2code: warning: a candidate looks destructive ({'; '.join(c.danger)}); "
                            f"review before running it", markup=False, soft_wrap=True)
            break


@app.command("generate", hidden=True)
def generate(
    intent: Optional[str] = typer.Argument(None, help="What the code should do ('-' or none: read stdin)."),
    num: int = typer.Option(1, "-n", "--num", min=1, max=20, help="Candidates to print."),
    lang: str = typer.Option("python", "-l", "--lang", help="Target language: python, bash."),
    beam: int = typer.Option(5, "-b", "--beam", min=1, max=32, help="Beam size."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL",
                                         help="Model folder (default: the bundled model)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON object (schema in the README)."),
    batch: bool = typer.Option(False, "--batch", help="One intent per stdin line; JSON Lines out."),
    explain: bool = typer.Option(False, "--explain", help="Show a table of scored candidates on stderr."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
):
    """Generate code for an intent."""
    from nl2code.config import DecodeConfig

    def body():
        if num > beam:
            raise UsageError(f"--num {num} exceeds --beam {beam}: raise --beam")
        from nl2code.syntax import canonical_lang

        lang_c = canonical_lang(lang)
        if batch:
            if intent not in (None, "-"):
                raise UsageError("--batch reads intents from stdin; do not pass an intent argument")
            return _batch(read_stdin(), lang_c, num, beam, model, precision)
        text = intent
        if text in (None, "-"):
            if sys.stdin.isatty():
                raise UsageError('no intent given: nl2code "what the code should do"')
            text = read_stdin()
        from nl2code.engine import clean_intent

        text = clean_intent(text)  # before loading the model: bad input fails fast
        gen = load_generator(model, precision)
        cfg = DecodeConfig(strategy="beam", beam_size=beam, n_best=beam)
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
            if as_json:
                _emit_json(text, lang_c, gen, [], str(exc))
            raise
        cands = cands[:num]
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


def _batch(text: str, lang: str, num: int, beam: int, model: Optional[Path], precision: Optional[str]) -> None:
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
        try:
            cands = gen.generate(line, lang, n=num, config=cfg)[:num]
            _warn_danger(cands)
            rec = _record(line, lang, gen, cands, None)
        except NoParseableCandidate as exc:
            unanswered += 1
            rec = _record(line, lang, gen, [], str(exc))
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
):
    """Train a model. Runs DDP unchanged under `torchrun --nproc_per_node N`."""

    def body():
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
                    left = f"  ETA {max(tcfg.max_minutes * 60 - rec['elapsed'], 0) / 60:.0f} min"
                console.print(f"step {rec['step']:>6}  loss {rec['loss']:.3f}  "
                              f"{rec['tok_per_s']:,.0f} tok/s{left}", markup=False)
            elif rec["event"] == "eval":
                console.print(f"eval at step {rec['step']}: dev loss {rec['dev_loss']:.3f}  "
                              f"dev BLEU {rec['dev_bleu']:.2f}  (best {rec['best']:.2f})", markup=False)
            else:
                console.print(f"{rec['event']} at step {rec.get('step')}", markup=False)

        try:
            best = train(tcfg, mcfg, resume=resume, log=log)
        except TrainingInterrupted as exc:
            console.print(f"nl2code: error: {exc.message}", markup=False, soft_wrap=True)
            raise typer.Exit(exc.code) from None
        typer.echo(str(best))

    run_guarded(body)


# --- eval -----------------------------------------------------------------------------------

@app.command("eval")
def eval_cmd(
    dataset: Path = typer.Argument(..., help="CoNaLa JSON, NL2Bash .nl/.cm prefix, or JSONL."),
    lang: str = typer.Option("python", "-l", "--lang"),
    fmt: str = typer.Option("auto", "--format", help="conala, nl2bash, jsonl or auto."),
    first: int = typer.Option(0, "--first", help="Use only the first N examples (CoNaLa dev: 400)."),
    model: Optional[Path] = typer.Option(None, "-m", "--model", envvar="NL2CODE_MODEL"),
    beam: int = typer.Option(5, "-b", "--beam", min=1, max=32),
    baseline: Optional[str] = typer.Option(None, "--baseline",
                                           help="copy (intent as code) or nearest (needs --train)."),
    train_data: Optional[Path] = typer.Option(None, "--train", help="Training data for --baseline nearest."),
    train_skip: int = typer.Option(0, "--train-skip", help="Skip the first N training records (CoNaLa: 400)."),
    as_json: bool = typer.Option(False, "--json"),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="NL2CODE_PRECISION", help=PRECISION_HELP),
):
    """Score a model (or a trivial baseline) on a dataset: BLEU, exact match, parse rate."""

    def body():
        from nl2code import evaluate
        from nl2code.syntax import canonical_lang

        lang_c = canonical_lang(lang)
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
        _emit_report(report, as_json)

    run_guarded(body)


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
        }
        _emit_report(info, as_json)

    run_guarded(body)


@model_app.command("package")
def model_package(
    src: Path = typer.Argument(..., help="A trained model folder (e.g. runs/model/best)."),
    out: str = typer.Option(..., "--out", "-o", help="Destination folder (e.g. nl2code/assets/default)."),
    meta: list[str] = typer.Option([], "--meta", help="KEY=JSON metadata to record (repeatable)."),
    meta_file: list[Path] = typer.Option([], "--meta-file", help="KEY=FILE.json metadata (repeatable)."),
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
        checkpoint.package(src, _out_folder(out), update)
        typer.echo(str(out))

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
