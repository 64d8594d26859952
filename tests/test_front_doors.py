"""The front doors a new user meets (issue 15 B1, B3) and the CLI's use of the engine's verbs.

B1: `nl2code --help` lists the options of `nl2code INTENT` (-n, -l, --json, --batch ...),
which usage errors point to; `nl2code help [COMMAND]` is help, never an intent.
B3: --batch answers line k of stdin on line k of stdout (a blank line gets an error record
and exit 1); a reader that closes the pipe ends nl2code quietly (exit 141, nothing on stderr).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import nl2code.cli.generate as cli_generate
from nl2code.cli import app

ROOT = Path(__file__).resolve().parents[1]
SORT, SORTED = "sort list `xs` in descending order", "xs.sort(reverse=True)"
GENERATE_OPTIONS = ("-n, --num", "-l, --lang", "-b, --beam", "-m, --model", "--json", "--batch", "--explain",
                    "--precision", "--no-log")


def env(**extra: str) -> dict[str, str]:
    paths = [str(ROOT), str(ROOT / "lsp"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "NL2CODE_LOG": "0",
            "OMP_NUM_THREADS": "1", **extra}


def no_model(monkeypatch):
    """Any attempt to load a model fails the test: help must not generate."""

    def refuse(model, precision=None):
        raise AssertionError("help tried to load a model")

    monkeypatch.setattr(cli_generate, "load_generator", refuse)


# --- B1: help -------------------------------------------------------------------------------

def test_root_help_lists_the_intent_options(monkeypatch):
    no_model(monkeypatch)
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for option in GENERATE_OPTIONS:
        assert option in out, option
    assert "INTENT" in out.splitlines()[0]
    for command in ("explain", "train", "eval", "serve", "log", "lsp", "data", "model"):
        assert f"\n  {command} " in out, command
    assert "generate" not in out.split("Commands:")[1]  # the hidden command stays hidden


def test_usage_error_points_to_help_that_names_the_option(monkeypatch):
    no_model(monkeypatch)
    runner = CliRunner()
    err = runner.invoke(app, ["-n", "0", SORT])
    assert err.exit_code == 2 and "see nl2code --help" in err.stderr and "--num" in err.stderr
    assert "--num" in runner.invoke(app, ["--help"]).stdout


@pytest.mark.parametrize("args, same_as", [(["help"], ["--help"]), (["help", "eval"], ["eval", "--help"]),
                                           (["help", "model"], ["model", "--help"]),
                                           (["help", "no-such-command"], ["--help"])])
def test_help_word_shows_help(monkeypatch, args, same_as):
    no_model(monkeypatch)
    runner = CliRunner()
    got, want = runner.invoke(app, args), runner.invoke(app, same_as)
    assert got.exit_code == 0 and got.stderr == ""
    assert got.stdout == want.stdout and "Usage" in got.stdout


def test_help_in_a_longer_intent_is_an_intent(tiny_model):
    """Only `nl2code help [COMMAND]` is help; `--` makes even a bare "help" an intent."""
    result = CliRunner().invoke(app, ["-m", str(tiny_model), "--json", "--", "help"])
    assert json.loads(result.stdout)["intent"] == "help"
    result = CliRunner().invoke(app, ["-m", str(tiny_model), "--json", "help me sort list `xs`"])
    assert json.loads(result.stdout)["intent"] == "help me sort list `xs`"


# --- B3: --batch lines up with its input -----------------------------------------------------

def test_batch_blank_lines_get_error_records(tiny_model):
    lines = [SORT, "", "   ", "reverse list `xs`", "\t"]
    result = CliRunner().invoke(app, ["-m", str(tiny_model), "--batch"], input="\n".join(lines) + "\r\n")
    assert result.exit_code == 1
    recs = [json.loads(line) for line in result.stdout.split("\n") if line]
    assert [r["intent"] for r in recs] == lines  # record k answers line k
    for k in (1, 2, 4):
        assert recs[k]["candidates"] == [] and "empty intent" in recs[k]["error"]
    for k in (0, 3):
        assert recs[k]["error"] is None and recs[k]["candidates"]
    assert recs[0]["candidates"][0]["code"] == SORTED


@pytest.mark.parametrize("stdin, code, n_records", [("", 2, 0), ("\n", 1, 1), ("\n  \n", 1, 2), ("x y\n\n", 0, None)])
def test_batch_counts_lines_as_given(tiny_model, stdin, code, n_records):
    """Only the final newline ends a line without starting one; no input at all is a usage error."""
    result = CliRunner().invoke(app, ["-m", str(tiny_model), "--batch"], input=stdin)
    recs = [json.loads(line) for line in result.stdout.split("\n") if line]
    if code == 2:
        assert result.exit_code == 2 and "no intents" in result.stderr and recs == []
    elif n_records is not None:
        assert result.exit_code == code and len(recs) == n_records
        assert all("empty intent" in r["error"] for r in recs)
    else:  # "x y" then one blank line: two records, the second an error
        assert len(recs) == 2 and recs[1]["error"] and result.exit_code == 1


def test_batch_decodes_in_groups_with_the_same_answers(tiny_model, monkeypatch):
    """float32 decodes --batch lines together (int8 one at a time); answers equal one by one."""
    from nl2code import decode as decode_mod
    from nl2code.engine import BATCH_WIDTH

    intents = [f"sort list `xs{i}` in descending order" if i % 3 else f"reverse list `ys{i}`"
               for i in range(BATCH_WIDTH + 3)]
    rows = []
    real = decode_mod.decode
    monkeypatch.setattr(decode_mod, "decode", lambda m, src, mask, cfg, *a: rows.append(len(src)) or real(m, src, mask, cfg, *a))
    runner = CliRunner()
    args = ["-m", str(tiny_model), "--precision", "float32", "-n", "2"]
    batch = runner.invoke(app, [*args, "--batch"], input="\n".join(intents) + "\n")
    assert rows == [BATCH_WIDTH, 3]
    got = [json.loads(line) for line in batch.stdout.splitlines()]
    for intent, rec in zip(intents, got, strict=True):
        single = json.loads(runner.invoke(app, [*args, "--json", intent]).stdout)
        assert rec["candidates"] == single["candidates"], intent
    assert batch.exit_code == (1 if any(r["error"] for r in got) else 0)


# --- B3: a closed pipe ends quietly ------------------------------------------------------------

def _nl2code(*args: str) -> list[str]:
    return [sys.executable, "-m", "nl2code", *args]


def test_closed_stdout_ends_quietly(tiny_model):
    """The reader is gone before the first answer: no "Broken pipe", no traceback, exit 141."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(_nl2code("-m", str(tiny_model), "--batch"), input=f"{SORT}\n" * 3, stdout=write_end,
                          stderr=subprocess.PIPE, text=True, env=env(), timeout=120)
    os.close(write_end)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_batch_into_head_ends_quietly(tiny_model, tmp_path):
    """`nl2code --batch < f | head -1`: the first record, and nothing on stderr."""
    intents = tmp_path / "intents.txt"
    intents.write_text(f"{SORT}\n" * 200)
    cmd = shlex.join(_nl2code("-m", str(tiny_model), "--batch"))
    proc = subprocess.run(["bash", "-c", f"{cmd} < {shlex.quote(str(intents))} | head -1; "
                                         f"echo \"status ${{PIPESTATUS[0]}}\" >&2"],
                          capture_output=True, text=True, env=env(), timeout=300)
    assert json.loads(proc.stdout)["candidates"][0]["code"] == SORTED
    assert proc.stderr.strip() in ("status 141", "status 0"), proc.stderr  # 0: all written before head left


def test_single_answer_into_closed_pipe(tiny_model):
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(_nl2code("-m", str(tiny_model), "-n", "3", SORT), stdout=write_end,
                          stderr=subprocess.PIPE, text=True, env=env(), timeout=120)
    os.close(write_end)
    assert proc.stderr == "" and proc.returncode == 141


# --- A3: the model card and the training log live in the library -------------------------------

def test_model_info_is_the_library_card(tiny_model, monkeypatch):
    from nl2code.card import model_card
    from nl2code.engine import Generator

    monkeypatch.setenv("NL2CODE_PRECISION", "float32")
    cli = CliRunner().invoke(app, ["model", "info", "-m", str(tiny_model), "--json"])
    assert cli.exit_code == 0, cli.stderr
    card = model_card(tiny_model)
    assert json.loads(cli.stdout) == card
    info = Generator.from_checkpoint(tiny_model).info()
    shared = set(card) - {"size_bytes", "sha256"}
    assert {k: info[k] for k in shared} == {k: card[k] for k in shared}
    assert info["precision"] == card["precision"] == "float32"


def test_training_log_is_written_by_the_library_on_rank_0_only(tmp_path):
    from nl2code.train import run_log

    printed = []
    run_log(tmp_path / "r0", 0, printed.append)({"event": "step", "step": 1})
    run_log(tmp_path / "r1", 1, printed.append)({"event": "step", "step": 1})
    assert printed == [{"event": "step", "step": 1}] * 2  # every rank may print
    assert (tmp_path / "r0" / "log.jsonl").read_text() == '{"event": "step", "step": 1}\n'
    assert not (tmp_path / "r1").exists()  # other ranks never write the shared file


def test_train_without_the_cli_writes_its_log(tmp_path):
    from conftest import tiny_configs, write_toy_corpus
    from nl2code.train import train

    corpus = write_toy_corpus(tmp_path / "corpus", copies=2)
    tcfg, mcfg = tiny_configs(corpus, tmp_path / "run", max_steps=4, log_every=1, eval_every=4)
    train(tcfg, mcfg)  # no log callback: the file is still written
    events = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "step" for e in events)
