"""Readers: every corpus format, malformed input reported with file:line, never a crash."""

from __future__ import annotations

import ast
import json

import pytest

from nl2code.data import readers
from nl2code.data.records import Example, Report
from nl2code.errors import DataError


def _problems_at(report: Report, path) -> list[str]:
    return [p for p in report.problems if p.startswith(str(path))]


# --- CoNaLa JSON ---------------------------------------------------------------------------

def test_conala_rewritten_intent_with_fallback(tmp_path):
    recs = [
        {"intent": "How to sort?", "rewritten_intent": "sort list `xs`", "snippet": "xs.sort()"},
        {"intent": "reverse a list `xs`", "rewritten_intent": None, "snippet": "xs[::-1]"},
        {"intent": "  strip me  ", "snippet": "s.strip()"},  # key absent
    ]
    path = tmp_path / "conala.json"
    path.write_text(json.dumps(recs))
    report = Report()
    got = list(readers.read_conala(path, report))
    assert got == [
        Example("sort list `xs`", "xs.sort()", "python", "conala"),
        Example("reverse a list `xs`", "xs[::-1]", "python", "conala"),
        Example("strip me", "s.strip()", "python", "conala"),
    ]
    assert not report.drops


def test_conala_title_intent_keeps_the_same_records(tmp_path):
    """intent_field="title": the question's title, else the rewrite; the same records are
    skipped as with the rewrite, so dev_first cuts the same records for both."""
    recs = [
        {"intent": "How to sort?", "rewritten_intent": "sort list `xs`", "snippet": "xs.sort()"},
        {"intent": None, "rewritten_intent": "reverse list `xs`", "snippet": "xs[::-1]"},
        {"intent": "   ", "rewritten_intent": None, "snippet": "x"},  # neither: skipped by both
        {"intent": " Strip a string? ", "rewritten_intent": "   ", "snippet": "s.strip()"},
    ]
    path = tmp_path / "conala.json"
    path.write_text(json.dumps(recs))
    titles = list(readers.read_conala(path, Report(), "conala-title", intent_field="title"))
    rewrites = list(readers.read_conala(path, Report()))
    assert [e.intent for e in titles] == ["How to sort?", "reverse list `xs`", "Strip a string?"]
    assert [e.intent for e in rewrites] == ["sort list `xs`", "reverse list `xs`", "Strip a string?"]
    assert [e.code for e in titles] == [e.code for e in rewrites]
    assert {e.source for e in titles} == {"conala-title"}
    with pytest.raises(DataError, match="intent = 'question'"):
        list(readers.read_conala(path, Report(), intent_field="question"))


def test_conala_bad_records_reported_and_counted(tmp_path):
    recs = [
        "not an object",
        {"intent": "ok", "snippet": "x"},
        {"intent": None, "rewritten_intent": None, "snippet": "x"},
        {"intent": "no snippet"},
        {"intent": "snippet not text", "snippet": 42},
        [1, 2],
        {"intent": "   ", "snippet": "x"},
    ]
    path = tmp_path / "conala.json"
    path.write_text(json.dumps(recs))
    report = Report()
    got = list(readers.read_conala(path, report, source="c"))
    assert got == [Example("ok", "x", "python", "c")]
    assert report.drops["record is not an object"] == 2
    assert report.drops["missing intent or snippet"] == 4
    assert f"{path}:[0]: record is not an object" in report.problems
    assert any(p.startswith(f"{path}:[2]") for p in report.problems)


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe garbage", b'{"a": 1}', b""])
def test_conala_unreadable_file_is_data_error(tmp_path, content):
    path = tmp_path / "conala.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="conala.json"):
        list(readers.read_conala(path, Report()))


def test_conala_missing_file(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope.json")):
        list(readers.read_conala(tmp_path / "nope.json", Report()))


# --- JSON lines ----------------------------------------------------------------------------

def test_jsonl_conala_style_and_generic(tmp_path):
    lines = [
        json.dumps({"intent": "sort `xs`", "snippet": "xs.sort()"}),
        json.dumps({"intent": "list files", "code": "ls -la", "lang": "bash"}),
        json.dumps({"intent": "print hi", "code": "print('hi')"}),
        json.dumps({"intent": "show dir", "code": "pwd", "lang": "sh"}),  # alias
        "",
    ]
    path = tmp_path / "mined.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = Report()
    got = list(readers.read_jsonl(path, report, "mined"))
    assert got == [
        Example("sort `xs`", "xs.sort()", "python", "mined"),
        Example("list files", "ls -la", "bash", "mined"),
        Example("print hi", "print('hi')", "python", "mined"),
        Example("show dir", "pwd", "bash", "mined"),
    ]
    assert not report.drops


def test_jsonl_default_lang_parameter(tmp_path):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps({"intent": "list", "code": "ls"}) + "\n")
    assert list(readers.read_jsonl(path, Report(), "b", lang="bash"))[0].lang == "bash"


def test_jsonl_malformed_lines_reported_never_crash(tmp_path):
    good = json.dumps({"intent": "sum `nums`", "code": "sum(nums)"}).encode()
    huge = json.dumps({"intent": "big", "code": "x" * (readers.MAX_LINE_BYTES + 10)}).encode()
    lines = [
        good,                                            # 1
        b'{"intent": "broken", "code": ',                # 2 bad JSON
        b'{"intent": "caf\xe9", "code": "x"}',           # 3 invalid UTF-8 (latin-1 byte)
        b"[1, 2, 3]",                                    # 4 not an object
        b'"just a string"',                              # 5 not an object
        huge,                                            # 6 huge line
        b'{"intent": "no code"}',                        # 7 missing code
        b'{"intent": "x", "code": "y", "lang": 3}',      # 8 bad lang
        b'{"intent": "x", "code": "y", "lang": "cobol"}',  # 9 language we cannot train
        b"[" * 100_000,                                  # 10 deeply nested JSON
        b'{"intent": "ok again", "code": "y"}\r',        # 11 CRLF line ending
    ]
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    report = Report()
    got = list(readers.read_jsonl(path, report, "s"))
    assert [e.intent for e in got] == ["sum `nums`", "ok again"]
    assert got[1].code == "y"
    assert report.drops["bad JSON"] == 2
    assert report.drops["undecodable bytes"] == 1
    assert report.drops["record is not an object"] == 2
    assert report.drops["line too long"] == 1
    assert report.drops["missing intent or code"] == 1
    assert report.drops["bad lang"] == 1
    assert report.drops["unsupported lang"] == 1
    assert sum(report.drops.values()) == 9
    where = {p.split(": ", 1)[0] for p in report.problems}
    assert where == {f"{path}:{n}" for n in (2, 3, 4, 5, 6, 7, 8, 9, 10)}


def test_jsonl_missing_file(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl"):
        list(readers.read_jsonl(tmp_path / "missing.jsonl", Report(), "s"))


def test_report_problem_list_is_capped(tmp_path):
    path = tmp_path / "many.jsonl"
    path.write_text("{bad\n" * 200)
    report = Report()
    assert list(readers.read_jsonl(path, report, "s")) == []
    assert report.drops["bad JSON"] == 200
    assert len(report.problems) == report.max_problems


# --- NL2Bash ---------------------------------------------------------------------------------

def test_nl2bash_pairs(tmp_path):
    (tmp_path / "train.nl").write_text("list all files\ncount lines in log.txt  \n")
    (tmp_path / "train.cm").write_text("ls -la\nwc -l log.txt\n")
    got = list(readers.read_nl2bash(tmp_path / "train", Report()))
    assert got == [
        Example("list all files", "ls -la", "bash", "nl2bash"),
        Example("count lines in log.txt", "wc -l log.txt", "bash", "nl2bash"),
    ]


def test_nl2bash_unpaired_and_malformed(tmp_path):
    (tmp_path / "t.nl").write_bytes(b"list files\n\xff\xfe bad\n\nshow disk usage\nextra intent\n")
    (tmp_path / "t.cm").write_bytes(b"ls\nls -l\npwd\ndu -sh ~\n")
    report = Report()
    got = list(readers.read_nl2bash(tmp_path / "t", report))
    assert got == [Example("list files", "ls", "bash", "nl2bash"),
                   Example("show disk usage", "du -sh ~", "bash", "nl2bash")]
    assert report.drops["undecodable bytes"] == 1
    assert report.drops["empty line"] == 1
    unpaired = [r for r in report.drops if r.startswith("unpaired files")]
    assert unpaired == ["unpaired files (5 vs 4 lines); extra lines ignored"]
    assert f"{tmp_path / 't.nl'}:2: undecodable bytes" in report.problems
    assert f"{tmp_path / 't.nl'}:3: empty line" in report.problems
    # the unpaired report names the file and the first line without a partner
    assert any(p.startswith(f"{tmp_path / 't.nl'}:5: unpaired") for p in report.problems)


def test_nl2bash_missing_half(tmp_path):
    (tmp_path / "t.nl").write_text("list files\n")
    with pytest.raises(DataError, match=r"t\.cm"):
        list(readers.read_nl2bash(tmp_path / "t", Report()))


# --- Django ---------------------------------------------------------------------------------

DJANGO = [
    ("import settings from django.conf module.", "from django . conf import settings"),
    ("define the method __init__ with arguments self and value.", "def __init__ ( self , value ) :"),
    ("return element of self._cache under key.", "return self . _cache [ key ]"),
    ("if value is not an instance of list or tuple,", "if not isinstance ( value , ( list , tuple ) ) :"),
    ("catch ValueError exception, substitute it for e.", "except ValueError , e :"),  # Python 2
    ("try,", "try :"),
    ("call the function foo with string 'a . b , c'.", "foo ( 'a . b , c' )"),
    ("x is 1.5.", "x = 1 . 5"),
    ("print hi.", 'print "hi"'),  # Python 2
    ("d is a dictionary.", "d = { 'a' : 1 , 'b' : [ 2 , 3 ] }"),
    ("else perform the following,", "else :"),
    ("this line is broken.", "x = = )"),
]


def test_django_detokenised_to_real_python(tmp_path):
    (tmp_path / "all.anno").write_text("\n".join(a for a, _ in DJANGO) + "\n")
    (tmp_path / "all.code").write_text("\n".join(c for _, c in DJANGO) + "\n")
    report = Report()
    got = list(readers.read_django(tmp_path / "all", report))
    codes = [e.code for e in got]
    assert codes == [
        "from django.conf import settings",
        "def __init__(self, value):",
        "return self._cache[key]",
        "if not isinstance(value, (list, tuple)):",
        "try:",
        "foo('a . b , c')",  # string literal untouched
        "x = 1.5",
        "d = {'a': 1, 'b': [2, 3]}",
        "else:",
    ]
    assert all(e.lang == "python" and e.source == "django" for e in got)
    assert got[0].intent == "import settings from django.conf module."
    # each kept line is Python (block headers with a dummy body)
    for code in codes:
        if code.endswith(":"):
            code = ("if 1: pass\n" if code == "else:" else "") + code + " pass" + (
                "\nfinally: pass" if code == "try:" else "")
        ast.parse(code)
    assert report.drops["django line does not parse after detokenising"] == 3
    dropped = {p.split(": ", 1)[0] for p in report.problems}
    assert dropped == {f"{tmp_path / 'all'}.code:{n}" for n in (5, 9, 12)}


def test_django_range(tmp_path):
    (tmp_path / "all.anno").write_text("\n".join(a for a, _ in DJANGO) + "\n")
    (tmp_path / "all.code").write_text("\n".join(c for _, c in DJANGO) + "\n")
    got = list(readers.read_django(tmp_path / "all", Report(), start=1, stop=3))
    assert [e.code for e in got] == ["def __init__(self, value):", "return self._cache[key]"]


def test_django_malformed_bytes(tmp_path):
    (tmp_path / "all.anno").write_bytes(b"call f.\n\xff bad\n")
    (tmp_path / "all.code").write_bytes(b"f ( )\ng ( )\n")
    report = Report()
    got = list(readers.read_django(tmp_path / "all", report))
    assert [e.code for e in got] == ["f()"]
    assert report.drops["undecodable bytes"] == 1


def test_django_missing(tmp_path):
    with pytest.raises(DataError, match=r"all\.anno"):
        list(readers.read_django(tmp_path / "all", Report()))


@pytest.mark.parametrize("raw,expected", [
    ("result = foo ( x ) . bar", "result = foo(x).bar"),
    ("return a [ 1 : ]", "return a[1:]"),
    ("lambda x : x + 1", "lambda x: x + 1"),
    ("raise ValueError ( \"bad %s\" % name )", "raise ValueError(\"bad %s\" % name)"),
])
def test_detokenize_python(raw, expected):
    assert readers.detokenize_python(raw) == expected
