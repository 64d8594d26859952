"""The CLI with a warm server (issue 20): the same answers as in-process, no torch (nor typer)
imported on the fast path, fallback when no server answers or it serves another model,
`serve --background` / `status` / `stop`, and `nl2code log`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nl2code.cli import app
from nl2code.history import History
from test_serve import Served

ROOT = Path(__file__).resolve().parents[1]
REVERSE = "reverse list `zz`"


def env_for(home: Path, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NL2CODE_")}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "lsp")]), NL2CODE_HOME=str(home),
               OMP_NUM_THREADS="1", NO_COLOR="1", **extra)
    return env


def cli(args, home, input=None, **extra):
    return subprocess.run([sys.executable, "-m", "nl2code", *args], env=env_for(home, **extra), input=input,
                          capture_output=True, text=True, timeout=120, cwd=ROOT)


@pytest.fixture(scope="module")
def warm(tiny_model, tmp_path_factory):
    """A server for the tiny model on $NL2CODE_HOME/server.sock, for the whole module."""
    from nl2code.engine import Generator
    from nl2code.serve.app import Settings, build_app

    home = tmp_path_factory.mktemp("home")
    server = Served(build_app(Generator.from_checkpoint(tiny_model), Settings(history_path=str(home / "history.db"))),
                    home / "server.sock")
    yield home, server
    server.stop()


def generate_count(server) -> int:
    import httpx

    text = httpx.get(server.url + "/metrics").text
    return sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith('nl2code_http_requests_total{endpoint="/v1/generate"'))


CASES = [
    [REVERSE],
    [REVERSE, "--json", "-n", "2", "-b", "4"],
    ["--json", "count lines in file 'log.txt'", "-l", "bash"],
    ["-n", "3", "sort list `xs` in descending order"],
    ["pwd", "-l", "sh"],  # one word: the full CLI, which asks the server too
    ["list all files", "-l", "cobol"],  # the same usage error
    ["   ", "--json"],  # empty intent: the same usage error
    ["-", "--json"],  # stdin
]


@pytest.mark.parametrize("args", CASES, ids=[" ".join(a) for a in CASES])
def test_same_answers_through_the_server_as_in_process(warm, tiny_model, args):
    home, server = warm
    args = ["-m", str(tiny_model), *args]
    stdin = "get the length of list `xs`\n" if "-" in args else None
    before = generate_count(server)
    served = cli(args, home, input=stdin)
    assert generate_count(server) == before + 1  # the server answered it
    local = cli(args, home, input=stdin, NL2CODE_SERVER="off")
    assert generate_count(server) == before + 1  # and not this one
    assert (served.returncode, served.stdout, served.stderr) == (local.returncode, local.stdout, local.stderr)
    assert served.stdout or served.stderr.startswith("nl2code: error:")


def test_fast_path_imports_neither_torch_nor_typer(warm, tiny_model):
    home, _ = warm
    code = ("import atexit, sys\n"
            "atexit.register(lambda: sys.stderr.write(repr(sorted(m for m in ('torch', 'typer', 'rich', "
            "'nl2code.engine') if m in sys.modules))))\n"
            "from nl2code.client import entry\n"
            f"sys.argv = ['nl2code', '-m', {str(tiny_model)!r}] + sys.argv[1:]\n"
            "entry()\n")
    fast = subprocess.run([sys.executable, "-c", code, REVERSE], env=env_for(home), capture_output=True,
                          text=True, timeout=60)
    assert fast.returncode == 0 and fast.stdout == "zz[::-1]\n"
    assert fast.stderr == "[]"
    # the full CLI's path (a one-word intent, stdin): typer, but still no torch
    full = subprocess.run([sys.executable, "-c", code, "-"], env=env_for(home), input=REVERSE, capture_output=True,
                          text=True, timeout=60)
    assert full.returncode == 0 and full.stdout == "zz[::-1]\n"
    assert full.stderr == "['rich', 'typer']" or full.stderr == "['typer']"


def test_falls_back_in_process_for_another_model_or_no_server(warm, tiny_model, tmp_path):
    home, server = warm
    other = tmp_path / "other"
    shutil.copytree(tiny_model, other)  # same weights, another folder: not the served model
    before = generate_count(server)
    r = cli(["-m", str(other), REVERSE, "--json"], home)
    assert r.returncode == 0 and json.loads(r.stdout)["model"] == str(other)
    assert generate_count(server) == before + 1  # asked, refused with 409, answered in-process
    empty = tmp_path / "nohome"
    empty.mkdir()
    (empty / "server.sock").write_text("")  # a stale socket file: nothing listens
    r = cli(["-m", str(tiny_model), REVERSE], empty)
    assert r.returncode == 0 and r.stdout == "zz[::-1]\n"


def test_history_of_cli_calls_through_the_server(warm, tiny_model):
    home, _ = warm
    h = History(home / "history.db")
    n0 = h.count()
    assert cli(["-m", str(tiny_model), "convert string `s` to lowercase"], home).returncode == 0
    assert h.count() == n0 + 1 and h.recent(1)[0].source == "cli"
    assert h.recent(1)[0].chosen_code == "s.lower()"
    assert cli(["-m", str(tiny_model), "convert string `s` to uppercase", "--no-log"], home).returncode == 0
    assert cli(["-m", str(tiny_model), "convert string `s` to uppercase"], home, NL2CODE_LOG="0").returncode == 0
    assert h.count() == n0 + 1


def test_in_process_generations_are_logged_unless_asked_not_to(tiny_model):
    runner = CliRunner()
    assert runner.invoke(app, ["-m", str(tiny_model), REVERSE]).exit_code == 0
    assert runner.invoke(app, ["-m", str(tiny_model), REVERSE, "--no-log"]).exit_code == 0
    assert runner.invoke(app, ["-m", str(tiny_model), "--batch", "-l", "bash"],
                         input="print the current working directory\nshow disk usage of the home directory\n"
                         ).exit_code == 0
    recs = History().recent(10)
    assert [r.intent for r in recs] == ["show disk usage of the home directory", "print the current working directory",
                                        REVERSE]
    assert recs[-1].chosen_code == "zz[::-1]" and recs[-1].model == str(tiny_model) and recs[-1].model_hash


def test_log_command(tiny_model):
    runner = CliRunner()
    r = runner.invoke(app, ["log"])
    assert r.exit_code == 0 and r.stdout == ""
    with History() as h:
        a = h.record("cli", "read csv file 'a.csv'", "python", [{"code": "pd.read_csv('a.csv')"}])
        h.record("lsp", "count lines", "bash", [], error="no parseable bash candidate")
        h.record("server", "sort `xs`", "python", [{"code": "xs.sort()"}])
        h.accept(a, 0)
    r = runner.invoke(app, ["log", "-n", "2"])
    assert r.exit_code == 0
    assert "sort `xs`" in r.stdout and "count lines" in r.stdout and "csv" not in r.stdout
    assert "(no answer: no parseable bash candidate)" in r.stdout
    r = runner.invoke(app, ["log", "--json", "-q", "CSV"])
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 1 and recs[0]["accepted"] and recs[0]["chosen_code"] == "pd.read_csv('a.csv')"
    r = runner.invoke(app, ["log", "-n", "0"])
    assert r.exit_code == 2


def test_serve_background_status_stop(tiny_model, tmp_path):
    home = tmp_path / "h"
    r = cli(["serve", "status"], home)
    assert r.returncode == 1 and "no server is running" in r.stderr
    r = cli(["serve", "--background", "-m", str(tiny_model), "--port", "0"], home)
    try:
        assert r.returncode == 0, r.stderr
        assert "server ready" in r.stderr
        status = cli(["serve", "status"], home)
        info = json.loads(status.stdout)
        assert info["model"] == str(tiny_model) and info["status"] == "ok"
        again = cli(["serve", "--background", "-m", str(tiny_model), "--port", "0"], home)
        assert again.returncode == 2 and "already runs" in again.stderr
        assert cli(["-m", str(tiny_model), REVERSE], home).stdout == "zz[::-1]\n"
        assert History(home / "history.db").recent(1)[0].source == "cli"
    finally:
        stop = cli(["serve", "stop"], home)
    assert stop.returncode == 0 and f"stopped the server (pid {info['pid']})" in stop.stderr
    assert not (home / "server.sock").exists() and not (home / "server.json").exists()
    assert cli(["serve", "stop"], home).stderr.strip() == "nl2code: no server was running"
    assert cli(["serve", "frobnicate"], home).returncode == 2
    r = cli(["serve", "--host", "0.0.0.0", "-m", str(tiny_model)], home)
    assert r.returncode == 2 and "token" in r.stderr
