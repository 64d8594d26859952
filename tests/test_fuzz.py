"""Fuzz the front doors (issue 9): hostile intents never crash nl2code.

Hypothesis feeds random unicode, control characters, NUL bytes, lone surrogates, empty and
very long intents to the Generator and to the CLI (in-process, on the session's tiny
model). A handful of fixed nasty inputs also go through the real CLI in a subprocess. The
promises checked: no exception but the typed nl2code errors, exit codes in {0, 1, 2}, no
traceback, and every candidate that claims to parse passes nl2code.syntax.check.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TOY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import nl2code.cli as cli
import nl2code.cli.generate as cli_generate
from nl2code import safety, syntax
from nl2code.engine import MAX_INTENT_CHARS
from nl2code.errors import Nl2CodeError

ROOT = Path(__file__).resolve().parents[1]
LANGS = st.sampled_from(["python", "bash"])
# Bounded: the whole file runs in well under a minute on two busy cores. No example
# database, so a run leaves nothing behind in the checkout.
FUZZ = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _splice(base: str, junk: str, at: int) -> str:
    at %= len(base) + 1
    return base[:at] + junk + base[at:]


controls = st.text(st.characters(max_codepoint=0x1F) | st.sampled_from("\x7f\x85\u200b\u2028\ufeff\udcff\ud800"),
                   max_size=20)
intents = st.one_of(
    st.text(max_size=200),  # any unicode
    controls,  # control characters, NUL, lone surrogates
    # toy intents with junk spliced in: the model answers some, so candidates get checked
    st.builds(_splice, st.sampled_from([i for i, _, _ in TOY]), st.text(max_size=10) | controls,
              st.integers(0, 200)),
    # either side of the length limit
    st.builds(lambda ch, extra: ch * (MAX_INTENT_CHARS + extra), st.sampled_from("aé😀\x00`'"),
              st.integers(-1, 1)),
    st.sampled_from(["", " ", "``", "''", "`" * 51, "' " * 30, "`x` " * 12, "\x00", "-", "--help"]),
)


@pytest.fixture(scope="module")
def gen(tiny_model):
    from nl2code.engine import Generator

    return Generator.from_checkpoint(tiny_model)


@pytest.fixture(scope="module")
def cli_on_gen(gen):
    """CLI runs reuse the module's Generator: loading is not what is fuzzed here."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(cli_generate, "load_generator", lambda model, precision=None: gen)
        yield


def check_candidates(records: list[dict], lang: str) -> None:
    for rec in records:
        for c in rec["candidates"]:
            assert c["parses"] is True, c
            assert syntax.check(c["code"], lang).ok, c


def check_cli(result, lang: str, batch: bool = False, explain: bool = False) -> list[dict]:
    """Exit code in {0,1,2}, no traceback, one error line; returns the JSON records."""
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output[-500:])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    err = result.stderr.splitlines()
    if explain:  # the --explain table is on stderr too
        err = [line for line in err if line.startswith("nl2code: ")]
    assert all(line.startswith("nl2code: ") for line in err), result.stderr[-500:]
    if result.exit_code and not batch:
        assert sum(line.startswith("nl2code: error: ") for line in err) == 1, result.stderr[-500:]
    records = [json.loads(line) for line in result.stdout.split("\n") if line]
    check_candidates(records, lang)
    return records


@FUZZ
@given(intent=intents, lang=LANGS, keep_unparsed=st.booleans())
def test_generator(gen, intent, lang, keep_unparsed):
    try:
        cands = gen.candidates(intent, lang).ranked[:3] if keep_unparsed else gen.generate(intent, lang, n=3)
        if not any(c.parses for c in cands):
            return
    except Nl2CodeError:  # UsageError (empty, too long) or NoParseableCandidate
        return
    assert 1 <= len(cands) <= 3 and any(c.parses for c in cands)
    for c in cands:
        assert c.lang == lang
        assert keep_unparsed or c.parses
        if c.parses:
            assert syntax.check(c.code, lang).ok, c.code
        assert c.danger == (safety.dangers(c.code) if lang == "bash" else [])


@FUZZ
@given(intent=intents, lang=LANGS)
def test_cli_argument(cli_on_gen, intent, lang):
    result = CliRunner().invoke(cli.app, ["-m", "fuzz", "--json", "-l", lang, "--", intent])
    records = check_cli(result, lang)
    if result.exit_code == 0:
        assert len(records) == 1 and records[0]["candidates"]


@FUZZ
@given(data=st.binary(max_size=300) | intents.map(lambda s: s.encode("utf-8", "surrogatepass")),
       lang=LANGS, explain=st.booleans())
def test_cli_stdin(cli_on_gen, data, lang, explain):
    args = ["-m", "fuzz", "--json", "-l", lang] + (["--explain"] if explain else [])
    check_cli(CliRunner().invoke(cli.app, args, input=data), lang, explain=explain)


@FUZZ
@given(lines=st.lists(intents, max_size=4), lang=LANGS)
def test_cli_batch(cli_on_gen, lines, lang):
    data = "\n".join(lines).encode("utf-8", "surrogatepass")
    result = CliRunner().invoke(cli.app, ["-m", "fuzz", "--batch", "-l", lang], input=data)
    check_cli(result, lang, batch=True)


# --- the real CLI in a subprocess: fixed nasty inputs ---------------------------------------

SORT = "sort list `xs` in descending order"
NUL_SORT = SORT.replace(" in ", " \x00in ").encode()
# name -> (arguments, stdin, allowed exit codes). Only the last two load the model (a torch
# import each). Linux caps one argument at 128 KiB, so the megabyte goes through stdin.
NASTY = {
    "only NUL and control bytes": ([], b"\x00\x00\x1b\x07\x7f\r\n", {2}),
    "invalid UTF-8": ([], b"\xff\xfe\x00sort \xc3\x28", {2}),
    "1 MB on stdin": ([], b"sort list " * 100_000, {2}),
    "120 KB argument": (["x" * 120_000], b"", {2}),
    "undecodable argv bytes": ([b"sort list `xs` \xff\xfe in descending order"], b"", {0, 1}),
    "batch: NUL line, NUL inside, empty, too long": (
        ["--batch"], b"\x00\n\n" + NUL_SORT + b"\n" + b"y" * 20_000, {1}),
}


@pytest.mark.parametrize("name", list(NASTY))
def test_real_cli_nasty_input(tiny_model, name):
    args, stdin, codes = NASTY[name]
    batch = "--batch" in args
    cmd = [sys.executable, "-m", "nl2code", *([] if batch else ["--json"]), *args]
    paths = [str(ROOT), str(ROOT / "lsp"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p),
           "NL2CODE_MODEL": str(tiny_model), "NO_COLOR": "1"}
    proc = subprocess.run(cmd, input=stdin, capture_output=True, env=env, timeout=120)
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode in codes, stderr
    assert "Traceback" not in stderr
    assert all(line.startswith("nl2code: ") for line in stderr.splitlines()), stderr
    records = [json.loads(line) for line in proc.stdout.decode("utf-8").split("\n") if line]
    check_candidates(records, "python")
    if batch:
        assert len(records) == 4  # one record per input line, the empty one included
        assert [bool(r["candidates"]) for r in records] == [False, False, True, False]
