"""The execution suite: schema errors, the real suite's self-test, confinement, scoring, CLI."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nl2code.cli import app
from nl2code.data.records import Example
from nl2code.errors import NoParseableCandidate
from nl2code.execrun import isolation
from nl2code.execsuite import SuiteError, load_examples, load_suite, report, run_snippet, score, self_test

SUITE = Path(__file__).resolve().parent.parent / "benchmarks" / "exec"
DATA_TAGS = {"pandas", "numpy", "matplotlib"}


def case(**over) -> dict:
    base = {"id": "c1", "lang": "python", "intent": "reverse list `xs`", "style": "conala",
            "tags": ["list"], "setup": "xs = [1, 2, 3]", "check": "assert found_eq([3, 2, 1])",
            "reference": "xs[::-1]", "wrong": "xs"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def write_suite(path: Path, cases: list[dict]) -> Path:
    path.write_text("".join(json.dumps(c) + "\n" for c in cases))
    return path


def one_case(**over):
    return load_suite(write_suite(Path(os.environ["NL2CODE_HOME"]).parent / "one.jsonl", [case(**over)]))[0]


# --- schema ---------------------------------------------------------------------------------

@pytest.mark.parametrize("over, match", [
    ({"intent": None}, "missing field 'intent'"),
    ({"lang": "ruby"}, "lang must be one of python, bash"),
    ({"style": "casual"}, "style must be free or conala"),
    ({"style": "free"}, "free-form intent has no backticks or quotes"),
    ({"intent": "reverse the list"}, "conala-style intent names something"),
    ({"tags": []}, "tags must be a non-empty list"),
    ({"tags": "list"}, "tags must be a non-empty list"),
    ({"check": "assert (("}, "check is not valid Python"),
    ({"reference": 3}, "field 'reference' must be a string"),
    ({"wrong": "  "}, "field 'wrong' is empty"),
    ({"wrong": "xs[::-1]"}, "reference and wrong are the same"),
    ({"timeout": 0}, "timeout must be a number"),
    ({"expected": 1}, "unknown field(s) expected"),
    ({"variants": "xs = []"}, "variants must be a list of setup strings"),
    ({"variants": ["xs = ("]}, "variant 1 is not valid Python"),
    ({"lang": "bash", "variants": ["touch a"]}, "variants are for python cases only"),
])
def test_schema_errors_name_the_case_and_field(tmp_path, over, match):
    with pytest.raises(SuiteError, match=None) as err:
        load_suite(write_suite(tmp_path / "s.jsonl", [case(**over)]))
    assert match in str(err.value) and "s.jsonl:1" in str(err.value)


def test_apostrophes_are_free_form(tmp_path):
    cases = load_suite(write_suite(tmp_path / "s.jsonl", [case(style="free", intent="don't keep the list's order")]))
    assert cases[0].style == "free"


def test_suite_file_errors(tmp_path):
    write_suite(tmp_path / "a.jsonl", [case(), case()])
    with pytest.raises(SuiteError, match="duplicate id"):
        load_suite(tmp_path / "a.jsonl")
    (tmp_path / "b.jsonl").write_text('{"id": \n')
    with pytest.raises(SuiteError, match="b.jsonl:1: invalid JSON"):
        load_suite(tmp_path / "b.jsonl")
    (tmp_path / "c.toml").write_text("[[case]]\nid = \n")
    with pytest.raises(SuiteError, match="invalid TOML"):
        load_suite(tmp_path / "c.toml")
    (tmp_path / "d.toml").write_text('title = "x"\n')
    with pytest.raises(SuiteError, match="only \\[\\[case\\]\\] tables"):
        load_suite(tmp_path / "d.toml")
    (tmp_path / "e.txt").write_text("")
    with pytest.raises(SuiteError, match="a suite is a .toml or .jsonl file"):
        load_suite(tmp_path / "e.txt")
    with pytest.raises(SuiteError, match="suite not found"):
        load_suite(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SuiteError, match="no cases"):
        load_suite(tmp_path / "empty")
    with pytest.raises(SuiteError, match="no bash cases"):
        load_suite(write_suite(tmp_path / "f.jsonl", [case()]), lang="bash")


def test_bad_suite_is_one_cli_line(tmp_path):
    bad = write_suite(tmp_path / "s.jsonl", [case(lang="ruby")])
    result = CliRunner().invoke(app, ["eval", "--exec", str(bad), "--self-test"])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: ") and "lang must be one of" in lines[0]


# --- the real suite -------------------------------------------------------------------------

def test_real_suite_shape():
    cases = load_suite(SUITE)
    data = [c for c in cases if c.lang == "python" and DATA_TAGS & set(c.tags)]
    stdlib = [c for c in cases if c.lang == "python" and not DATA_TAGS & set(c.tags)]
    bash = [c for c in cases if c.lang == "bash"]
    assert len(cases) >= 210 and len(stdlib) >= 105 and len(data) >= 42 and len(bash) >= 63
    assert sum(c.style == "free" for c in cases) >= 0.45 * len(cases)
    assert len({(c.lang, c.intent) for c in cases}) == len(cases)


def test_real_suite_self_test():
    """Every reference passes and every plausible wrong solution fails (~570 child processes)."""
    assert self_test(load_suite(SUITE)) == []


def test_load_examples_for_the_leak_guard():
    examples = load_examples(SUITE)
    cases = load_suite(SUITE)
    assert len(examples) == len(cases) and all(isinstance(e, Example) for e in examples)
    assert examples[0] == Example(cases[0].intent, cases[0].reference, cases[0].lang, "exec-suite")


def test_variants_catch_constant_answers(tmp_path):
    pred = one_case(intent="check if list `xs` is empty", setup="xs = []\nexpected = True",
                    variants=["xs = [0]\nexpected = False"], check="assert truth_is(expected)",
                    reference="not xs", wrong="xs == None")
    assert run_snippet(pred, "len(xs) == 0").passed
    assert run_snippet(pred, "if not xs:\n    print(True)\nelse:\n    print(False)").passed
    constant = run_snippet(pred, "True")
    assert constant.status == "fail" and constant.error.startswith("variant 1:")
    assert run_snippet(pred, "xs").status == "fail"  # a list is not an answer to a yes/no question


def test_iterators_compare_as_lists_but_are_not_lists():
    listy = one_case(check="assert found_eq([3, 2, 1])")
    strict = one_case(check="assert found(lambda v: type(v) is list and v == [3, 2, 1])")
    assert run_snippet(listy, "reversed(xs)").passed
    assert not run_snippet(strict, "reversed(xs)").passed and run_snippet(strict, "xs[::-1]").passed


# --- confinement ----------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("fork_server", [True, False])
def test_timeout_kills_an_infinite_loop(fork_server):
    res = run_snippet(one_case(), "while True:\n    pass", timeout=1, fork_server=fork_server)
    assert res.status == "timeout" and not res.passed


@pytest.mark.timeout(60)
def test_memory_bomb_is_stopped_by_the_rlimit():
    res = run_snippet(one_case(), "big = bytearray(16 * 1024 ** 3)")
    assert res.status == "error" and "MemoryError" in res.error


def reported(res) -> list:
    """What a check sent back in its failure message (a run can write nowhere else)."""
    return json.loads(res.error.splitlines()[-1].split("AssertionError: ", 1)[1])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fork_server", [True, False])
def test_runs_in_a_child_process_in_a_temporary_folder(fork_server):
    probe = one_case(check="import json\nassert False, json.dumps([os.getpid(), os.getcwd(), os.environ['HOME']])")
    res = run_snippet(probe, "xs[::-1]", fork_server=fork_server)
    pid, cwd, home = reported(res)
    assert res.status == "fail" and pid != os.getpid() and cwd == home != os.getcwd()
    assert not Path(cwd).exists()  # the temporary folder is gone


def running(marker: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            pass
    return found


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fork_server", [True, False])
def test_background_processes_are_killed(fork_server):
    marker = f"{os.getpid() % 1000}.{time.monotonic_ns() % 10 ** 9}"  # a unique sleep argument
    bash = one_case(lang="bash", intent="print 'x'", setup="", check="assert out.strip() == 'started'",
                    reference="echo started", wrong="echo y")
    res = run_snippet(bash, f"(sleep {marker} &) ; sleep {marker} > /dev/null & echo started",
                      fork_server=fork_server)
    assert res.passed, res.error
    assert running(marker) == []


@pytest.mark.skipif(isolation() != "namespaces", reason="no namespace isolation on this machine")
def test_isolation_read_only_outside_no_network(tmp_path):
    escape = tmp_path / "escape.txt"
    res = run_snippet(one_case(), f"open({str(escape)!r}, 'w').write('x')")
    assert res.status == "error" and "Read-only file system" in res.error and not escape.exists()
    res = run_snippet(one_case(), "import socket\nsocket.create_connection(('127.0.0.1', 9), timeout=2)")
    assert res.status == "error" and "unreachable" in res.error.lower()
    res = run_snippet(one_case(check="assert open('mine.txt').read() == 'ok'"), "open('mine.txt', 'w').write('ok')")
    assert res.passed, res.error


def test_root_without_isolation_refuses_generated_code(monkeypatch):
    from nl2code import execrun
    from nl2code.errors import UsageError

    monkeypatch.setattr(execrun, "_ISOLATION", ["none (test)"])
    monkeypatch.setattr(execrun.os, "geteuid", lambda: 0)
    monkeypatch.delenv("NL2CODE_EXEC_UNCONFINED", raising=False)
    with pytest.raises(UsageError, match="refusing to run generated code as root"):
        score(FakeGenerator({}), [one_case()])
    monkeypatch.setattr(execrun.os, "geteuid", lambda: 1000)
    assert execrun.untrusted_allowed() is None


def test_stdin_is_empty_and_crashes_are_reported():
    res = run_snippet(one_case(), "import sys\nassert sys.stdin.read() == ''\nxs[::-1]")
    assert res.passed, res.error
    res = run_snippet(one_case(), "import os\nos._exit(3)")
    assert res.status == "crash" and "exit 3" in res.error


# --- scoring --------------------------------------------------------------------------------

class FakeGenerator:
    path = "fake"

    def __init__(self, answers: dict):
        self.answers = answers

    def generate(self, intent, lang, n=5, beam=None):
        if not self.answers[intent]:
            raise NoParseableCandidate("none")
        return [type("Cand", (), {"code": c})() for c in self.answers[intent]][:n]


def test_score_pass_at_1_and_5(tmp_path):
    suite = write_suite(tmp_path / "s.jsonl", [
        case(id="a"),
        case(id="b", intent="sort list `xs` descending", tags=["list", "sort"], setup="xs = [2, 3, 1]",
             check="assert found_eq([3, 2, 1])", reference="sorted(xs, reverse=True)", wrong="sorted(xs)"),
        case(id="c", lang="bash", style="free", intent="print hello", tags=["shell"], setup="",
             check="assert out.strip() == 'hello'", reference="echo hello", wrong="echo bye"),
    ])
    gen = FakeGenerator({"reverse list `xs`": ["xs[::-1]", "xs"],
                         "sort list `xs` descending": ["sorted(xs)", "xs.sort()", "xs.sort(reverse=True)"],
                         "print hello": []})
    rep = report(score(gen, load_suite(suite)), str(suite), gen.path)
    assert (rep["cases"], rep["answered"], rep["pass@1"], rep["pass@5"]) == (3, 66.7, 33.3, 66.7)
    assert rep["by_lang"]["bash"] == {"cases": 1, "answered": 0.0, "pass@1": 0.0, "pass@5": 0.0}
    assert rep["by_lang"]["python"]["pass@5"] == 100.0
    assert rep["by_style"]["conala"] == {"cases": 2, "answered": 100.0, "pass@1": 50.0, "pass@5": 100.0}
    assert rep["by_tag"]["sort"]["pass@1"] == 0.0 and rep["by_tag"]["sort"]["pass@5"] == 100.0
    rows = {r["id"]: r for r in rep["results"]}
    assert rows["a"]["passed"] == [True, False] and rows["b"]["passed"] == [False, False, True]
    assert rows["c"]["candidates"] == [] and "AssertionError" in rows["b"]["errors"][0]


def test_cli_self_test_reports_a_wrong_that_passes(tmp_path):
    suite = write_suite(tmp_path / "s.jsonl", [case(), case(id="c2", wrong="list(reversed(xs))")])
    result = CliRunner().invoke(app, ["eval", "--exec", str(suite), "--self-test", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == ["c2: wrong solution passed"]


def test_cli_exec_with_tiny_model(tiny_model, tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('''
[[case]]
id = "rev"
lang = "python"
style = "conala"
intent = "reverse list `xs`"
tags = ["list"]
setup = "xs = [1, 2, 3]"
check = "assert found_eq([3, 2, 1])"
reference = "xs[::-1]"
wrong = "xs"

[[case]]
id = "len"
lang = "python"
style = "conala"
intent = "get the length of list `xs`"
tags = ["list"]
setup = "xs = [1, 2, 3]"
check = "assert found_eq(3)"
reference = "len(xs)"
wrong = "max(xs) - 1"

[[case]]
id = "pwd"
lang = "bash"
style = "free"
intent = "print the current working directory"
tags = ["shell"]
setup = ""
check = "assert out.strip() == os.getcwd()"
reference = "pwd"
wrong = "echo ~/.."
''')
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "--exec", str(suite), "-m", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.stderr
    rep = json.loads(result.stdout)
    assert rep["cases"] == 3 and rep["system"] == str(tiny_model)
    assert rep["pass@5"] >= rep["pass@1"] >= 50  # the tiny model memorised these intents
    assert set(rep["by_lang"]) == {"python", "bash"} and len(rep["results"]) == 3
    table = runner.invoke(app, ["eval", "--exec", str(suite), "-m", str(tiny_model), "--lang", "bash"])
    assert table.exit_code == 0, table.stderr
    assert "pass@1" in table.stdout and "lang=bash" in table.stdout and "lang=python" not in table.stdout
    clash = runner.invoke(app, ["eval", str(suite), "--exec", str(suite)])
    assert clash.exit_code == 2 and "takes no DATASET" in clash.stderr
