"""syntax.check: tree-sitter plus Python's compiler; error locations; language names."""

from __future__ import annotations

import pytest

from nl2code.errors import UsageError
from nl2code.syntax import canonical_lang, check, parses


@pytest.mark.parametrize("code", [
    "x = 1",
    "df = pd.read_csv('data.csv')",
    "def square(x):\n    return x * x",
    "for k, v in d.items():\n    print(k, v)\n",
    "class A:\n    def f(self):\n        if self.x:\n            return [i for i in range(3)]\n        return None",
    "if a:\r\n    b = 1\r\n",
    "s = 'héllo 😀 世界'",
    "名前 = 1",
    "x = (1,\n     2)",
    "print('x')",
    "\n\nx = 1\n\n",
])
def test_valid_python(code):
    result = check(code, "python")
    assert result.ok, result.errors
    assert result.errors == []
    assert parses(code)


@pytest.mark.parametrize("code", [
    "def (:",
    "x = = 1",
    "print 'x'",  # Python 2: tree-sitter accepts it, the compiler does not
    "def f():\nreturn 1",  # missing indentation
    "if x:\n    y = 1\n  z = 2",  # inconsistent dedent
    "    x = 1",  # unexpected indent
    "x = [1,\n2,\n3)",
    "s = 'unterminated",
    "for i in range(3)\n    print(i)",
])
def test_invalid_python(code):
    result = check(code, "python")
    assert not result.ok
    assert result.errors
    assert not parses(code, "python")


def test_python_error_line_reported():
    code = "a = 1\nb = 2\nc = (\nd = 4"
    result = check(code, "python")
    assert not result.ok
    assert result.errors[0].line in (3, 4)
    code = "x = 1\ny = 2\ndef f():\nreturn 1"
    result = check(code, "python")
    assert [e.line for e in result.errors] == [4]
    assert "indent" in result.errors[0].message


def test_print_statement_message():
    result = check("print 'x'", "python")
    assert result.errors[0].line == 1
    assert "print" in result.errors[0].message


@pytest.mark.parametrize("code", [
    "ls -la",
    "find . -name '*.py' | xargs wc -l",
    "for f in *.txt; do\n  echo \"$f\"\ndone",
    "if [ -f x ]; then\n  echo yes\nfi",
    "echo 'héllo 😀'",
    "du -sh ~",
    "grep -rn 'error' /var/log > out.txt 2>&1",
])
def test_valid_bash(code):
    assert check(code, "bash").ok


@pytest.mark.parametrize("code", [
    "echo 'unterminated",
    "if [ -f x ]; then\n  echo y\n",
    "foo(",
    "for do done",
    "echo $((1+))",
])
def test_invalid_bash(code):
    result = check(code, "bash")
    assert not result.ok
    assert result.errors


def test_bash_error_line_reported():
    result = check("echo a\necho b\nif true; then\n  echo c\n", "bash")
    assert not result.ok
    assert all(e.line >= 3 for e in result.errors)
    result = check("ls\nls\necho 'x", "bash")
    assert result.errors[0].line == 3


@pytest.mark.parametrize("lang", ["python", "bash"])
@pytest.mark.parametrize("code", ["", "   ", "\n\n\t"])
def test_empty_input_rejected(code, lang):
    result = check(code, lang)
    assert not result.ok
    assert result.errors[0].line == 1


def test_nul_byte_rejected():
    assert not check("x = 1\x00", "python").ok
    assert not check("ls\x00", "bash").ok


@pytest.mark.parametrize("alias,name", [
    ("shellscript", "bash"), ("sh", "bash"), ("shell", "bash"), ("zsh", "bash"),
    ("py", "python"), ("python3", "python"), ("Python", "python"), ("BASH", "bash"),
])
def test_aliases(alias, name):
    assert canonical_lang(alias) == name
    good = "ls -la" if name == "bash" else "x = 1"
    assert check(good, alias).ok


def test_alias_behaves_like_bash():
    assert not check("echo 'x", "shellscript").ok
    assert check("echo 'x'", "sh").ok


@pytest.mark.parametrize("lang", ["cobol", "", "pyhton"])
def test_unknown_language_is_usage_error(lang):
    with pytest.raises(UsageError, match="unknown language"):
        check("x = 1", lang)


def test_check_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    codes = [("x = 1", "python", True), ("print 'x'", "python", False), ("ls", "bash", True),
             ("echo 'x", "bash", False)] * 25
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda c: check(c[0], c[1]).ok, codes))
    assert got == [c[2] for c in codes]
