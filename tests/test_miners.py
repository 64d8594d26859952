"""Tests for nl2code.data.miners: the three miners, the filters, and a safe file walk."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import textwrap
from pathlib import Path

import pytest

from nl2code.data import miners
from nl2code.data.miners import iter_python_files, mine, reject_reason, resolve_root
from nl2code.data.records import Example, Report
from nl2code.errors import DataError


def write(root: Path, name: str, source: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def mine_folder(root: Path, kinds=miners.KINDS, **kwargs) -> tuple[list[Example], Report]:
    report = Report()
    examples, _ = mine([str(root)], kinds, report=report, **kwargs)
    return examples, report


# --------------------------------------------------------------------------- the miners


def test_docstring_miner_yields_function_without_docstring(tmp_path):
    write(tmp_path, "calc.py", '''
        class Calculator:
            def add(self, a, b):
                """Return the sum of two numbers.

                Longer explanation that is not part of the intent.
                """

                total = a + b
                return total
        ''')
    examples, _ = mine_folder(tmp_path, ("docstring",))
    assert examples == [
        Example(
            "Return the sum of two numbers.",
            "def add(self, a, b):\n    total = a + b\n    return total",
            "python",
            "mined-docstring",
        )
    ]


def test_docstring_miner_stops_intent_at_field_list_and_skips_stubs(tmp_path):
    write(tmp_path, "m.py", '''
        def scale(values, factor):
            """Multiply every value by a factor.
            :param values: the numbers
            """
            return [v * factor for v in values]

        def abstract(self):
            """Subclasses compute the result here."""
            raise NotImplementedError
        ''')
    examples, report = mine_folder(tmp_path, ("docstring",))
    assert [e.intent for e in examples] == ["Multiply every value by a factor."]
    assert report.drops["mined: stub function"] == 1


def test_comment_miner_yields_statements_up_to_blank_line(tmp_path):
    write(tmp_path, "c.py", """
        def order(items):
            # sort the items in reverse order
            items = sorted(items, reverse=True)
            first = items[0]

            return first
        """)
    examples, _ = mine_folder(tmp_path, ("comment",))
    assert examples == [
        Example(
            "sort the items in reverse order",
            "items = sorted(items, reverse=True)\nfirst = items[0]",
            "python",
            "mined-comment",
        )
    ]


def test_comment_miner_joins_a_comment_run_and_stops_at_next_comment(tmp_path):
    write(tmp_path, "c.py", """
        # read the whole configuration file
        # into a single string
        text = open("settings.ini").read()
        # split the text into separate lines
        lines = text.splitlines()
        """)
    examples, _ = mine_folder(tmp_path, ("comment",))
    assert [(e.intent, e.code) for e in examples] == [
        ("read the whole configuration file into a single string",
         'text = open("settings.ini").read()'),
        ("split the text into separate lines", "lines = text.splitlines()"),
    ]


def test_doctest_miner_pairs_prose_with_block_without_output(tmp_path):
    write(tmp_path, "d.py", '''
        def square(x):
            """Square.

            Compute the square of a small number:

            >>> x = 3
            >>> x * x
            9

            Examples
            --------
            >>> square(2)
            4
            """
            return x * x
        ''')
    examples, report = mine_folder(tmp_path, ("doctest",))
    assert examples == [
        Example("Compute the square of a small number", "x = 3\nx * x", "python", "mined-doctest")
    ]
    assert report.drops["mined: doctest without prose"] == 1


def test_doctest_continuation_lines_keep_their_indentation(tmp_path):
    write(tmp_path, "d.py", '''
        """Module docstring.

        Print every number in a short list:
        >>> for n in [1, 2]:
        ...     print(n)
        1
        2
        """
        ''')
    examples, _ = mine_folder(tmp_path, ("doctest",))
    assert [e.code for e in examples] == ["for n in [1, 2]:\n    print(n)"]


def test_commented_out_code_and_licence_headers_are_excluded(tmp_path):
    write(tmp_path, "skip.py", """
        # Copyright 2024 Example Corp. Licensed under the MIT License.
        import os

        def f(x):
            # y = compute(x) + 1
            y = x * 2
            # import sys
            z = y + 1
            # TODO make this faster somehow
            w = z * z
            return w
        """)
    examples, report = mine_folder(tmp_path, ("comment",))
    assert examples == []
    assert report.drops["mined: licence comment"] == 1
    assert report.drops["mined: commented-out code"] == 2
    assert report.drops["mined: todo comment"] == 1


# --------------------------------------------------------------------------- filters


@pytest.mark.parametrize(
    "intent, code, reason",
    [
        ("Add", "x = 1", "mined: intent too short"),
        ("word " * 41, "x = 1", "mined: intent too long"),
        ("x.y(1, 2) == {3: 4} [5]", "x = 1", "mined: intent not English-looking"),
        ("Return the value of it", "", "mined: empty code"),
        ("Return the value of it", "x = 1\n" * 16, "mined: code too long"),
        ("Return the value of it", "def f(:\n    pass", "mined: code does not compile"),
        ("Return the value of it", "x = 1", None),
    ],
)
def test_quality_filters(intent, code, reason):
    assert reject_reason(intent, code) == reason


# --------------------------------------------------------------------------- the walk


def test_undecodable_file_is_reported_and_skipped(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_bytes(b'def f():\n    """Return \xff the value of it."""\n    return 1\n')
    write(tmp_path, "good.py", '''
        def g(a):
            """Return the value plus one."""
            return a + 1
        ''')
    examples, report = mine_folder(tmp_path)
    assert [e.intent for e in examples] == ["Return the value plus one."]
    assert report.drops["undecodable"] == 1
    assert any(p.startswith(str(bad)) for p in report.problems)


def test_symlinks_are_never_followed(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    write(root, "pkg/real.py", "x = 1\n")
    write(outside, "secret.py", "y = 2\n")
    os.symlink(root, root / "pkg" / "loop")  # a loop back to the root
    os.symlink(outside, root / "escape")  # a folder outside the root
    os.symlink(outside / "secret.py", root / "linked.py")  # a file outside the root
    report = Report()
    found = [path for path, _ in iter_python_files(root, report)]
    assert found == [root / "pkg" / "real.py"]
    assert report.drops["symlink not followed"] == 1


@pytest.mark.timeout(20)
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifo_is_not_read(tmp_path):
    os.mkfifo(tmp_path / "pipe.py")  # opening this for reading would block forever
    write(tmp_path, "ok.py", "x = 1\n")
    report = Report()
    found = [path for path, _ in iter_python_files(tmp_path, report)]
    assert found == [tmp_path / "ok.py"]
    assert report.drops["not a regular file"] == 1


def test_test_hidden_and_cache_folders_and_large_files_are_skipped(tmp_path):
    for folder in ("tests", "test", ".hidden", "__pycache__"):
        write(tmp_path, f"{folder}/x.py", "x = 1\n")
    write(tmp_path, "big.py", "x = 1\n" * 100)
    write(tmp_path, "small.py", "x = 1\n")
    report = Report()
    found = [path for path, _ in iter_python_files(tmp_path, report, max_bytes=100)]
    assert found == [tmp_path / "small.py"]
    assert report.drops["file too large"] == 1


def test_a_crashing_file_is_reported_not_raised(tmp_path, monkeypatch):
    write(tmp_path, "a.py", "x = 1\n")
    monkeypatch.setattr(miners, "parse_file", lambda path, text: 1 / 0)
    examples, report = mine_folder(tmp_path)
    assert examples == [] and report.drops["miner error"] == 1


# --------------------------------------------------------------------------- roots and mine()


def test_missing_root_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="nope"):
        resolve_root(str(tmp_path / "nope"))
    with pytest.raises(DataError, match="no_such_package_for_nl2code"):
        mine(["no_such_package_for_nl2code"])


def test_stdlib_root():
    path, version = resolve_root("stdlib")
    assert (path / "os.py").is_file()
    assert version == platform.python_version()


def test_package_root_is_found_without_importing_it():
    name = "mpmath"
    if name in sys.modules:
        pytest.skip(f"{name} already imported")
    try:
        expected = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{name} not installed")
    path, version = resolve_root(name)
    assert (path / "__init__.py").is_file()
    assert version == expected
    assert name not in sys.modules


def test_cap_per_source_is_respected_in_source_order(tmp_path):
    funcs = "".join(
        f'def f{i}(x):\n    """Return the input times {i} for now."""\n    return x * {i}\n\n'
        for i in range(5)
    )
    write(tmp_path, "many.py", funcs)
    examples, _ = mine_folder(tmp_path, ("docstring",), cap_per_source=2)
    assert [e.code.split("(")[0] for e in examples] == ["def f0", "def f1"]


def test_mine_is_deterministic_and_reports_progress(tmp_path):
    for name in ("b.py", "a.py", "sub/c.py"):
        write(tmp_path, name, '''
            def h(a, b):
                """Join two strings with a space."""
                return a + " " + b
            ''')
    seen: list[Path] = []
    first, _ = mine_folder(tmp_path, progress=seen.append)
    second, _ = mine_folder(tmp_path)
    assert first == second
    assert len(first) == 1  # the same pair in three files is kept once
    assert seen == [tmp_path / "a.py", tmp_path / "b.py", tmp_path / "sub" / "c.py"]


def test_unknown_miner_kind_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="unknown miner"):
        mine([str(tmp_path)], ("docstrings",))
