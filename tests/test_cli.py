"""Tests for the `nl2code` command line (issue 5): options, stdin, --json, --batch, exit codes.

Most tests drive the Typer app in-process with CliRunner on the session's tiny model (it
memorises the toy corpus in conftest.py). Tests that need a candidate the tiny model would
never produce (destructive bash, nothing that parses) script the decoder, so the rest of
the engine (slots, syntax check, danger flag, rerank) still runs for real. A few tests run
the real CLI in a subprocess: the pipe, and that --help/--version never import torch.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.testing
from typer.testing import CliRunner

from nl2code import __version__
from nl2code.cli import app

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[")
SORT, SORTED = "sort list `xs` in descending order", "xs.sort(reverse=True)"
LS, LS_CODE = "list all files in the current directory", "ls -la"
SCHEMA = {"intent", "lang", "model", "candidates", "error"}
CANDIDATE = {"code", "score", "logprob", "parses", "danger", "low_confidence"}


@pytest.fixture
def run(tiny_model):
    """run(*args, input=None, env=None) -> Result, with -m tiny_model unless -m is given."""

    def invoke(*args, input=None, env=None, model=True):
        args = list(args)
        if model and "-m" not in args and "--model" not in args:
            args = ["-m", str(tiny_model), *args]
        return CliRunner().invoke(app, args, input=input, env=env)

    return invoke


@pytest.fixture
def tty(monkeypatch):
    """Make CliRunner's stdin, stdout and stderr report a terminal."""
    monkeypatch.setattr(typer.testing._NamedTextIOWrapper, "isatty", lambda self: True)


@pytest.fixture
def scripted(monkeypatch, tiny_model):
    """script(codes) makes the decoder return those codes (best model score first).

    codes may be a list, or a function from the (slot-canonical) intent to a list.
    """
    from nl2code import decode as decode_module
    from nl2code.decode import Hypothesis
    from nl2code.tokenizer import Tokenizer

    tok = Tokenizer.load(tiny_model / "tokenizer.model")

    def script(codes):
        codes_for = codes if callable(codes) else (lambda intent: list(codes))

        def fake_decode(model, src, src_mask, cfg, guides=None, deadline=None):
            out = []
            for row in src.tolist():
                intent = tok.decode(row[1:])  # row[0] is the language tag
                assert all(tok.decode(tok.encode(c)) == c for c in codes_for(intent))
                out.append([Hypothesis(tok.encode(c), -0.1 * (i + 1), -0.1 * (i + 1), True)
                            for i, c in enumerate(codes_for(intent))])
            return out

        monkeypatch.setattr(decode_module, "decode", fake_decode)

    return script


def one_line_error(result, code: int = 2, match: str = "") -> str:
    """The result failed with `code` and exactly one `nl2code: error:` line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: "), result.stderr
    assert "Traceback" not in result.output
    assert match.lower() in lines[0].lower()
    return lines[0]


def check_record(rec: dict, intent: str, lang: str) -> None:
    assert set(rec) == SCHEMA
    assert rec["intent"] == intent and rec["lang"] == lang
    assert isinstance(rec["model"], str)
    for c in rec["candidates"]:
        assert set(c) == CANDIDATE
        assert isinstance(c["code"], str) and c["parses"] is True
        assert isinstance(c["score"], float) and isinstance(c["logprob"], float)
        assert isinstance(c["danger"], list)


# --- the answer ---------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["argument", "dash", "stdin"])
def test_intent_from_argument_or_stdin(run, how):
    args, stdin = {"argument": ([SORT], None), "dash": (["-"], SORT + "\n"), "stdin": ([], SORT)}[how]
    result = run(*args, input=stdin)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SORTED + "\n"  # piped: plain code only
    assert result.stderr == ""


def test_model_from_env_var(run, tiny_model):
    result = run(SORT, env={"NL2CODE_MODEL": str(tiny_model)}, model=False)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SORTED + "\n"


@pytest.mark.parametrize("lang", ["bash", "sh", "shell"])
def test_lang_option_and_aliases(run, lang):
    result = run("-l", lang, LS)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == LS_CODE + "\n"


def test_num_prints_that_many_candidates_best_first(run):
    as_json = json.loads(run("--num", "3", "--beam", "5", "--json", SORT).stdout)
    n = len(as_json["candidates"])
    assert 1 <= n <= 3 and as_json["candidates"][0]["code"] == SORTED
    plain = run("-n", "3", SORT)
    assert plain.exit_code == 0
    assert plain.stdout.split("\n# ---\n") == [c["code"] + "\n" for c in as_json["candidates"]]


def test_beam_option(run):
    result = run("-b", "1", SORT)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SORTED + "\n"


def test_json_schema(run, tiny_model):
    result = run("--json", "-l", "bash", LS)
    assert result.exit_code == 0, result.stderr
    rec = json.loads(result.stdout)
    check_record(rec, LS, "bash")
    assert rec["model"] == str(tiny_model) and rec["error"] is None
    assert rec["candidates"][0] == {**rec["candidates"][0], "code": LS_CODE, "danger": []}


def test_json_reports_the_cleaned_intent(run):
    rec = json.loads(run("--json", f"  {SORT}\t\x07 ").stdout)
    assert rec["intent"] == SORT


def test_explain_table_on_stderr_answer_on_stdout(run):
    plain = run("-b", "5", SORT)
    result = run("--explain", "-b", "5", SORT)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == plain.stdout == SORTED + "\n"
    assert "candidates (python)" in result.stderr and SORTED in result.stderr
    assert "parses" in result.stderr


def test_explain_shows_unparsed_candidates_but_answers_like_without_it(run, scripted):
    # The model's favourite does not parse; --explain lists it and still answers.
    scripted(["xs.sort(reverse=True", "xs.sort(reverse=True)"])
    plain, explained = run(SORT), run("--explain", SORT)
    assert plain.exit_code == explained.exit_code == 0, explained.stderr
    assert explained.stdout == plain.stdout == SORTED + "\n"
    assert "xs.sort(reverse=True" in explained.stderr and " no " in explained.stderr


def test_explain_prints_code_with_brackets_verbatim(run, scripted):
    # `[...]` in code is not rich markup: the table shows it as it is
    scripted(["[x for x in xs][::-1]", "xs[::-1]"])
    explained = run("--explain", SORT)
    assert explained.exit_code == 0, explained.stderr
    assert "[x for x in xs][::-1]" in explained.stderr


def test_version_and_help():
    runner = CliRunner()
    for flag in ("--version", "-V"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0, result.output
        assert result.stdout == f"nl2code {__version__}\n"
    for flag in ("--help", "-h"):
        result = runner.invoke(app, [flag])
        assert result.exit_code == 0
        for command in ("data", "train", "eval", "model", "lsp"):
            assert command in result.stdout


@pytest.mark.parametrize("args", [["data", "--help"], ["model", "info", "--help"], ["eval", "--help"],
                                  ["train", "--help"], ["lsp", "--help"], [SORT, "--help"]])
def test_subcommand_help(args):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "Usage" in result.stdout


# --- exit codes and errors -----------------------------------------------------------------

def test_no_parseable_candidate_exits_1(run, scripted):
    scripted(["xs.sort(reverse=", "def (:"])
    one_line_error(run(SORT), code=1, match="no parseable python candidate")


def test_no_parseable_candidate_json_still_prints_a_record(run, scripted):
    scripted(["def (:"])
    for extra in ([], ["--explain"]):
        result = run("--json", *extra, SORT)
        assert result.exit_code == 1
        rec = json.loads(result.stdout)
        check_record(rec, SORT, "python")
        assert rec["candidates"] == [] and "no parseable" in rec["error"]


@pytest.mark.parametrize("args, match", [
    (["-l", "cobol", SORT], "unknown language"),
    (["-l", "javascript", SORT], "not trained for javascript"),
    (["--batch", SORT], "reads intents from stdin"),
])
def test_usage_errors_are_one_line(run, args, match):
    one_line_error(run(*args), match=match)


def test_num_above_beam_widens_the_beam(run):
    """The engine's one rule: the beam is at least -n wide (no error for -n 3 -b 2)."""
    result = run("--json", "-n", "3", "-b", "2", SORT)
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(result.stdout)["candidates"]) == 3
    assert json.loads(run("--json", "-n", "3", "-b", "3", SORT).stdout) == json.loads(result.stdout)


def test_lang_offers_only_the_models_languages(run, tiny_model):
    """-l choices come from the loaded model's config, not from every language nl2code knows."""
    known = json.loads((tiny_model / "config.json").read_text())["meta"]["languages"]
    assert "javascript" not in known
    line = one_line_error(run("-l", "cobol", SORT), match="unknown language")
    assert line.endswith("choose one of " + ", ".join(sorted(known)))
    line = one_line_error(run("-l", "js", SORT), match="not trained for javascript")
    assert line.endswith("it knows " + ", ".join(known))


@pytest.mark.parametrize("args", [["-n", "0", SORT], ["-n", "21", SORT], ["-b", "0", SORT],
                                  ["-b", "33", SORT], ["--no-such-flag", SORT], ["-n", "many", SORT]])
def test_bad_option_values_exit_2(run, args):
    result = run(*args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output and result.stdout == ""


@pytest.mark.parametrize("how", ["argument", "stdin"])
@pytest.mark.parametrize("intent", ["", "   ", "\x00\x01\x1b\t"])
def test_empty_intent(run, how, intent):
    result = run(intent) if how == "argument" else run(input=intent)
    one_line_error(result, match="empty intent")


@pytest.mark.parametrize("how", ["argument", "stdin"])
def test_one_megabyte_intent(run, how):
    big = "sort list " * 100_000
    result = run(big) if how == "argument" else run(input=big)
    assert len(one_line_error(result, match="intent too long")) < 200


def test_stdin_over_the_limit(run):
    from nl2code.cli import MAX_STDIN_BYTES

    one_line_error(run(input=b"a" * (MAX_STDIN_BYTES + 1)), match="stdin is larger")


@pytest.mark.parametrize("data", [b"\xff\xfe", b"sort list \xc3\x28 xs", b"\xed\xa0\x80 surrogate"])
def test_invalid_utf8_on_stdin(run, data):
    one_line_error(run(input=data), match="not valid UTF-8")


def test_no_intent_on_a_terminal(run, tty):
    one_line_error(run("-n", "1"), match="no intent given")


def test_missing_model(run, tmp_path):
    one_line_error(run("-m", str(tmp_path / "nope"), SORT), match="model not found")
    (tmp_path / "file").write_text("x")
    one_line_error(run("-m", str(tmp_path / "file"), SORT), match="not a model folder")


def corrupt_copy(tiny_model: Path, tmp_path: Path, how: str) -> Path:
    from nl2code.checkpoint import MANIFEST, WEIGHTS, sha256_file

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    weights = model / WEIGHTS
    if how == "flipped byte":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
    elif how == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    else:  # garbage that the manifest vouches for: the loader itself must refuse it
        weights.write_bytes(b"\x00garbage" * 64)
        manifest = json.loads((model / MANIFEST).read_text())
        manifest["files"][WEIGHTS] = sha256_file(weights)
        (model / MANIFEST).write_text(json.dumps(manifest))
    return model


@pytest.mark.parametrize("how", ["flipped byte", "truncated", "garbage, manifest updated"])
def test_corrupted_model(run, tiny_model, tmp_path, how):
    model = corrupt_copy(tiny_model, tmp_path, how)
    line = one_line_error(run("-m", str(model), SORT), match="model.safetensors")
    assert "corrupted" in line or "not valid safetensors" in line


def test_manifest_not_json(run, tiny_model, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    (model / "manifest.json").write_bytes(b"\x80 not json")
    one_line_error(run("-m", str(model), SORT), match="manifest.json is corrupted")


def test_unexpected_exception_is_one_line(run, monkeypatch):
    import nl2code.cli.generate as cli

    def boom(model, precision=None):
        raise RuntimeError("first line\nsecond line")

    monkeypatch.setattr(cli, "load_generator", boom)
    one_line_error(run(SORT), match="internal error: RuntimeError: first line second line")


def test_interrupt_exits_130(run, monkeypatch):
    import nl2code.cli.generate as cli

    def interrupted(model, precision=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_generator", interrupted)
    one_line_error(run(SORT), code=130, match="interrupted")


def test_error_text_is_printed_as_given(run, tmp_path):
    # rich would turn :smile: into an emoji and [red] into markup
    line = one_line_error(run("-m", str(tmp_path / "a:smile:[red]b"), SORT))
    assert line.endswith("a:smile:[red]b")


# --- colour --------------------------------------------------------------------------------

def test_terminal_output_is_highlighted(run, tty):
    result = run(SORT, env={"NO_COLOR": None, "TERM": "xterm-256color"})
    assert result.exit_code == 0
    assert ANSI.search(result.stdout) and "reverse" in result.stdout


@pytest.mark.parametrize("args", [[SORT], ["--explain", SORT], ["-m", "/nonexistent/model", SORT]])
def test_no_color_means_no_escape_codes(run, tty, args):
    result = run(*args, env={"NO_COLOR": "1"})
    assert result.exit_code in (0, 2)
    assert not ANSI.search(result.stdout) and not ANSI.search(result.stderr)
    if result.exit_code == 0:
        assert result.stdout == SORTED + "\n"


def test_piped_output_has_no_escape_codes(run):
    result = run("--explain", "-n", "2", SORT, env={"FORCE_COLOR": None, "TERM": "xterm-256color"})
    assert not ANSI.search(result.stdout) and not ANSI.search(result.stderr)


# --- bash danger ---------------------------------------------------------------------------

def test_dangerous_candidate_ranked_last_flagged_and_warned(run, scripted):
    scripted(["rm -rf /", LS_CODE])  # the model's favourite is destructive
    result = run("--json", "-n", "2", "-l", "bash", "delete everything")
    assert result.exit_code == 0, result.stderr
    rec = json.loads(result.stdout)
    check_record(rec, "delete everything", "bash")
    assert [c["code"] for c in rec["candidates"]] == [LS_CODE, "rm -rf /"]
    assert rec["candidates"][0]["danger"] == []
    assert rec["candidates"][1]["danger"] == ["recursive delete of / or a system folder"]
    warning = result.stderr.splitlines()
    assert len(warning) == 1 and warning[0].startswith("nl2code: warning:") and "destructive" in warning[0]


def test_dangerous_only_candidate_is_printed_with_a_warning(run, scripted):
    scripted(["rm -rf /"])
    result = run("-l", "bash", "delete everything")
    assert result.exit_code == 0
    assert result.stdout == "rm -rf /\n"
    assert "destructive" in result.stderr and "recursive delete" in result.stderr


def test_no_warning_when_the_dangerous_candidate_is_not_shown(run, scripted):
    scripted(["rm -rf /", LS_CODE])
    result = run("-n", "1", "-l", "bash", "delete everything")
    assert result.stdout == LS_CODE + "\n" and result.stderr == ""


# --- batch ---------------------------------------------------------------------------------

def test_batch_json_lines(run):
    result = run("--batch", input=f"{SORT}\nreverse list `xs`\r\n")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["intent"] for r in records] == [SORT, "reverse list `xs`"]
    for rec in records:
        check_record(rec, rec["intent"], "python")
        assert rec["error"] is None and rec["candidates"]
    assert records[0]["candidates"][0]["code"] == SORTED


def test_batch_is_one_intent_per_newline(run):
    # U+2028 and form feed are not line ends for --batch: one record per input line
    result = run("--batch", "--json", input=f"{SORT}\u2028more\n{SORT}\x0cmore\n")
    records = [json.loads(line) for line in result.stdout.split("\n") if line]  # JSON Lines: \n only
    assert [r["intent"] for r in records] == [f"{SORT}\u2028more", f"{SORT}\x0cmore"]  # as given


def test_batch_exits_1_when_a_line_has_no_answer(run, scripted):
    scripted(lambda intent: ["def (:"] if "reverse" in intent else [SORTED])
    result = run("--batch", "-n", "2", input=f"{SORT}\nreverse list `xs`\n{'x' * 20_000}\n")
    assert result.exit_code == 1
    recs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(recs) == 3
    for rec in recs:
        check_record(rec, rec["intent"], "python")
    assert recs[0]["error"] is None and recs[0]["candidates"][0]["code"] == SORTED
    assert recs[1]["candidates"] == [] and "no parseable" in recs[1]["error"]
    assert recs[2]["candidates"] == [] and "too long" in recs[2]["error"]


def test_batch_without_intents(run):
    one_line_error(run("--batch", input=""), match="no intents")


def test_batch_dangerous_line_warns(run, scripted):
    scripted(["rm -rf /"])
    result = run("--batch", "-l", "bash", input="delete everything\n")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["candidates"][0]["danger"]
    assert "destructive" in result.stderr


# --- model info, eval, data build, train ---------------------------------------------------

def test_model_info(tiny_model):
    runner = CliRunner()
    result = runner.invoke(app, ["model", "info", "-m", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["path"] == str(tiny_model) and info["arch"] == "transformer"
    assert info["d_model"] == 64 and info["layers"] == [2, 2]
    assert set(info["sha256"]) >= {"model.safetensors", "config.json", "tokenizer.model"}
    assert info["size_bytes"] > 0
    assert info["precision"] in ("int8", "float32")
    f32 = runner.invoke(app, ["model", "info", "-m", str(tiny_model), "--json"], env={"NL2CODE_PRECISION": "float32"})
    assert json.loads(f32.stdout)["precision"] == "float32"
    text = runner.invoke(app, ["model", "info"], env={"NL2CODE_MODEL": str(tiny_model)})
    assert text.exit_code == 0 and "d_model" in text.stdout


def test_model_info_shows_package_notes(tiny_model, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pkg"
    r = runner.invoke(app, ["model", "package", str(tiny_model), "--out", str(out), "--meta", 'note="my first model"',
                            "--meta", "version=3"])
    assert r.exit_code == 0, r.stderr
    info = json.loads(runner.invoke(app, ["model", "info", "-m", str(out), "--json"]).stdout)
    assert info["notes"] == {"note": "my first model", "version": 3}
    text = runner.invoke(app, ["model", "info", "-m", str(out)]).stdout
    assert "my first model" in text
    plain = json.loads(runner.invoke(app, ["model", "info", "-m", str(tiny_model), "--json"]).stdout)
    assert plain["notes"] == {}  # a model straight from training has none


def test_model_info_corrupted(tiny_model, tmp_path):
    model = corrupt_copy(tiny_model, tmp_path, "flipped byte")
    one_line_error(CliRunner().invoke(app, ["model", "info", "-m", str(model)]), match="corrupted")


@pytest.fixture
def conala_files(tmp_path):
    from conftest import TOY

    python = [(i, c) for i, c, lang in TOY if lang == "python"]
    test = [{"intent": i.upper(), "rewritten_intent": i, "snippet": c} for i, c in python[:4]]
    train = [{"intent": i, "rewritten_intent": None, "snippet": c} for i, c in python]
    (tmp_path / "test.json").write_text(json.dumps(test))
    (tmp_path / "train.json").write_text(json.dumps(train))
    return tmp_path / "test.json", tmp_path / "train.json"


def test_eval_model(tiny_model, conala_files):
    test, _ = conala_files
    result = CliRunner().invoke(app, ["eval", str(test), "-m", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["examples"] == 4 and report["system"] == str(tiny_model)
    for key in ("bleu", "exact_match", "answered_rate", "plain_beam_top1_bleu", "latency_ms_p50"):
        assert 0 <= report[key] <= 100 or key.startswith("latency")
    assert report["exact_match"] >= 50  # the tiny model memorised these


def test_eval_baselines(conala_files):
    test, train = conala_files
    runner = CliRunner()
    copy = runner.invoke(app, ["eval", str(test), "--baseline", "copy", "--json"])
    assert copy.exit_code == 0, copy.stderr
    assert json.loads(copy.stdout)["system"] == "baseline: intent copied"
    nearest = runner.invoke(app, ["eval", str(test), "--baseline", "nearest", "--train", str(train)])
    assert nearest.exit_code == 0, nearest.stderr
    assert re.search(r"^exact_match\s+100\.0$", nearest.stdout, re.M)
    first = runner.invoke(app, ["eval", str(test), "--first", "2", "--baseline", "copy", "--json"])
    assert json.loads(first.stdout)["examples"] == 2


@pytest.mark.parametrize("args, match", [
    (["--baseline", "nearest"], "needs --train"),
    (["--baseline", "oracle"], "unknown baseline"),
    (["--format", "yaml", "--baseline", "copy"], "unknown format"),
])
def test_eval_usage_errors(conala_files, args, match):
    test, _ = conala_files
    one_line_error(CliRunner().invoke(app, ["eval", str(test), *args]), match=match)


def test_eval_missing_dataset(tmp_path):
    one_line_error(CliRunner().invoke(app, ["eval", str(tmp_path / "none.json"), "--baseline", "copy"]),
                   match="not found")


def test_data_build(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    toy = [{"intent": "count lines in file 'a.txt'", "code": "wc -l a.txt", "lang": "bash"},
           {"intent": "print hello", "code": "print('hello')", "lang": "python"}]
    lines = [json.dumps(r) for r in toy] + [json.dumps(toy[0]), "{not json"]
    (data / "toy.jsonl").write_text("\n".join(lines) + "\n")
    conala = [{"intent": "dev intent", "snippet": "dev_code()"},
              {"intent": "add one to `x`", "snippet": "x + 1"}]
    (data / "conala.json").write_text(json.dumps(conala))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text('name = "tiny"\ndata_root = "data"\n\n'
                      '[[source]]\nname = "toy"\nkind = "jsonl"\npath = "toy.jsonl"\n\n'
                      '[[source]]\nname = "conala"\nkind = "conala"\npath = "conala.json"\ndev_first = 1\n')
    out = tmp_path / "corpus"
    result = CliRunner().invoke(app, ["data", "build", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"train": 3, "dev": 1, "out": str(out)}
    assert "bad JSON" in " ".join(result.stderr.split())  # the skipped line is reported
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert {r["code"] for r in train} == {"wc -l a.txt", "print('hello')", "x + 1"}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["duplicates_removed"] == 1


@pytest.mark.parametrize("recipe_text, match", [
    (None, "recipe not found"),
    ("name = [", "not valid TOML"),
    ('[[source]]\nname = "x"\nkind = "jsonl"\npath = "missing.jsonl"\n', "not found"),
    ('[[source]]\nname = "x"\nkind = "parquet"\n', "needs a name and a kind"),
])
def test_data_build_errors(tmp_path, recipe_text, match):
    recipe = tmp_path / "r.toml"
    if recipe_text is not None:
        recipe.write_text(f'data_root = "{tmp_path}"\n' + recipe_text)
    result = CliRunner().invoke(app, ["data", "build", str(recipe), "-o", str(tmp_path / "out")])
    one_line_error(result, match=match)


def test_train_without_corpus_is_a_usage_error():
    one_line_error(CliRunner().invoke(app, ["train"]), match="no corpus")


# --- promises in SECURITY.md -----------------------------------------------------------------

@pytest.fixture
def no_network(monkeypatch):
    """Any use of Python's socket API fails the command (it surfaces as an internal error)."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    for name in ("connect", "connect_ex", "bind", "sendto", "sendall"):
        monkeypatch.setattr(socket.socket, name, refuse)
    for name in ("getaddrinfo", "create_connection", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)


def test_commands_make_no_network_calls(run, tiny_model, conala_files, no_network):
    test, _ = conala_files
    for args, stdin in [([SORT], None), (["--json", "--explain", "-l", "bash", LS], None),
                        (["--batch"], f"{SORT}\n{LS}\n"),
                        (["model", "info", "-m", str(tiny_model)], None),
                        (["eval", str(test), "-m", str(tiny_model)], None)]:
        result = run(*args, input=stdin, model=args[0] not in ("model", "eval"))
        assert result.exit_code == 0, (args, result.stderr)


def test_generated_code_is_never_executed(run, scripted, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    python = ["__import__('pathlib').Path('PWNED').touch()", "open('PWNED', 'w')"]
    bash = ["touch PWNED", "echo x > PWNED"]
    for codes, args, stdin in [
        (python, ["-n", "2", "make a file"], None),
        (python, ["--json", "--explain", "-n", "2", "make a file"], None),
        (bash, ["-l", "bash", "-n", "2", "make a file"], None),
        (bash, ["--batch", "-l", "bash"], "make a file\n"),
    ]:
        scripted(codes)
        result = run(*args, input=stdin)
        assert result.exit_code == 0, result.stderr
        assert "PWNED" in result.stdout
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    assert all(p == "home" or p.startswith("home/history.db") for p in left), left  # the history, nothing run


# --- the real console script ---------------------------------------------------------------

def subprocess_env(**extra: str) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "lsp"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), **extra}


def nl2code_command() -> list[str]:
    """The installed console script when there is one (CI), else `python -m nl2code`."""
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    script = shutil.which("nl2code", path=search)
    return [script] if script else [sys.executable, "-m", "nl2code"]


def test_help_and_version_do_not_import_torch():
    probe = (
        "import sys\n"
        "from nl2code.cli import app\n"
        "for args in (['--help'], ['--version'], ['-V'], ['data', '--help'], ['model', 'info', '--help'],"
        " ['eval', '--help'], ['train', '--help'], ['some intent', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='nl2code')\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), (args, exc.code)\n"
        "heavy = sorted(m for m in ('torch', 'safetensors', 'sentencepiece') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"nl2code {__version__}" in proc.stdout


def test_pipe_end_to_end(tiny_model):
    cmd = shlex.join(nl2code_command())
    check = shlex.join([sys.executable, "-c", "import json, sys; r = json.load(sys.stdin); "
                                              "print(r['candidates'][0]['code'])"])
    pipeline = f"set -o pipefail; echo {shlex.quote(SORT)} | {cmd} --json | {check}"
    proc = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(NL2CODE_MODEL=str(tiny_model)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == SORTED + "\n"
    assert "Traceback" not in proc.stderr
