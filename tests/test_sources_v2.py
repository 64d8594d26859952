"""tldr pages, documentation pages, free-form variants and the execution-suite leak guard.

Fixtures are written here in the sources' formats (never copied from the real corpora).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl2code.data import build
from nl2code.data.pydoc import clean_code, clean_prose, read_pydoc
from nl2code.data.records import Report
from nl2code.data.tldr import clean_description, example_value, fill_command, read_tldr

PAGE = """# archiver

> Packs files.
> More information: <https://example.org>.

- [c]reate an archive and write it to a [f]ile:

`archiver cf {{path/to/target.arc}} {{path/to/file1 path/to/file2 ...}}`

- E[x]tract an archive into a directory:

`archiver xf {{path/to/source.arc[.gz|.xz]}} {{[-C|--directory]}} {{path/to/directory}}`

- Show the version of archiver:

`archiver {{--version|-V}}`

- Broken example:

`archiver "unterminated`
"""


def test_tldr_description_and_placeholders():
    assert clean_description("- [c]reate a g[z]ipped archive:") == "create a gzipped archive"
    assert clean_description("- E[x]tract [f]iles [v]erbosely:") == "Extract files verbosely"
    assert example_value("[-C|--directory]") == "-C"
    assert example_value("[ls|list]") == "ls"
    assert example_value("path/to/source.tar[.gz|.bz2]") == "source.tar"
    assert example_value("path/to/file1 path/to/file2 ...") == "file1 file2"
    assert example_value("--tcp|--udp") == "--tcp"
    assert example_value("100") == "100"
    assert fill_command("tar xf {{path/to/a.tar}} {{[-C|--directory]}} {{path/to/directory}}") == "tar xf a.tar -C directory"


def test_tldr_reader_pages(tmp_path: Path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "archiver.md").write_text(PAGE)
    (tmp_path / "common" / "bad.md").write_bytes(b"# bad\n\n- desc:\n\n`x \xff`\n")
    report = Report()
    ex = list(read_tldr(tmp_path, report))
    plain = [e for e in ex if e.source == "tldr"]
    named = [e for e in ex if e.source == "tldr-named"]
    assert [(e.intent, e.code) for e in plain] == [
        ("create an archive and write it to a file", "archiver cf target.arc file1 file2"),
        ("Extract an archive into a directory", "archiver xf source.arc -C directory"),
        ("Show the version of archiver", "archiver --version"),
    ]
    assert all(e.lang == "bash" for e in ex)
    # a description that does not name its command also comes with the command named
    assert [e.intent for e in named] == ["create an archive and write it to a file using archiver",
                                         "Extract an archive into a directory using archiver"]
    assert report.drops["tldr command does not parse"] == 1
    assert report.drops["undecodable bytes"] == 1


RST = """Reading files
=============

To read a table from a comma-separated file, use :func:`read_csv` with the ``sep``
argument::

    df = pd.read_csv("data.csv", sep=",")
    df

Sorting
-------

Sort the rows of a frame by the values of one column:

.. ipython:: python

   df.sort_values(by="B")

.. ipython::

   @verbatim
   In [1]: df.<TAB>

Count how often each word occurs in a list of words.

>>> from collections import Counter
>>> Counter(["a", "b", "a"])
Counter({'a': 2, 'b': 1})

A block that is not Python:

.. code-block:: bash

   ls -la
"""


def test_rst_reader(tmp_path: Path):
    (tmp_path / "guide.rst.txt").write_text(RST)
    (tmp_path / "whatsnew").mkdir()
    (tmp_path / "whatsnew" / "v1.rst.txt").write_text(RST)  # release notes are skipped
    report = Report()
    ex = list(read_pydoc(tmp_path, report))
    pairs = [(e.intent, e.code) for e in ex]
    assert pairs == [
        ("To read a table from a comma-separated file, use read_csv with the sep argument",
         'df = pd.read_csv("data.csv", sep=",")'),
        ("Sort the rows of a frame by the values of one column", 'df.sort_values(by="B")'),
        ("Count how often each word occurs in a list of words",
         'from collections import Counter\nCounter(["a", "b", "a"])'),
    ]


def test_rst_code_cleaning():
    assert clean_code(["   a = 1; b = 2", "   c = a + b"]) == "a = 1; b = 2\nc = a + b"
    assert clean_code(["   df"]) is None  # displays a name only
    assert clean_code(["   def broken(:"]) is None
    assert clean_code(["   import os"]) is None
    assert clean_prose("Use :meth:`DataFrame.head <pandas.DataFrame.head>` to see ``n`` rows::") == \
        "Use DataFrame.head to see n rows"


def test_freeform_variants():
    assert build.freeform_intent("sort list `xs` by key 'name'") == "sort list xs by key name"
    assert build.freeform_intent("get the user's name") == "get the user's name"
    from nl2code.data.records import Example

    items = [Example("reverse list `xs`", "xs[::-1]", "python", "conala"),
             Example("print hello", "print('hello')", "python", "conala")]
    free = build.freeform_variants(items, "conala-free")
    assert [(e.intent, e.code, e.source) for e in free] == [("reverse list xs", "xs[::-1]", "conala-free")]


def _recipe(tmp_path: Path, extra: str = "") -> Path:
    data = tmp_path / "data"
    data.mkdir()
    records = [{"intent": "reverse list `xs`", "rewritten_intent": "reverse list `xs`", "snippet": "xs[::-1]"},
               {"intent": "sort list `xs`", "rewritten_intent": "sort list `xs`", "snippet": "xs.sort()"},
               {"intent": "sum of `nums`", "rewritten_intent": "sum of `nums`", "snippet": "total = sum(nums)"}]
    (data / "c.json").write_text(json.dumps(records))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "t"
data_root = "{data}"
[[source]]
name = "conala"
kind = "conala"
path = "c.json"
freeform_weight = 2.0
{extra}
""")
    return recipe


def test_build_keeps_free_variants_and_weights(tmp_path: Path):
    stats = build.build(_recipe(tmp_path), tmp_path / "out")
    assert stats["by_source_tag"] == {"conala": 3, "conala-free": 3}
    assert stats["weights"] == {"conala": 1.0, "conala-free": 2.0}
    assert stats["sources"]["conala"]["train_free"] == 3


def test_exec_suite_leak_guard(tmp_path: Path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "py.toml").write_text('[[case]]\nid = "a"\nlang = "python"\nintent = "add up the numbers"\n'
                                   'reference = "total = sum(nums)"\n')
    (suite / "sh.jsonl").write_text(json.dumps({"intent": "sort list `xs`", "reference": "", "lang": "python"}) + "\n")
    guard = '[[leak_guard]]\nkind = "exec"\npath = "suite"\n'
    stats = build.build(_recipe(tmp_path, guard), tmp_path / "out")
    kept = [json.loads(x)["code"] for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert "total = sum(nums)" not in kept  # the suite's reference code
    assert "xs.sort()" not in kept  # the suite's intent
    assert "xs[::-1]" in kept
    assert stats["leak_guard_removed"] == 4  # two pairs, each with its free-form variant


def test_exec_suite_leak_guard_missing_is_an_error(tmp_path: Path):
    guard = '[[leak_guard]]\nkind = "exec"\npath = "nowhere"\n'
    with pytest.raises(Exception, match="execution suite"):
        build.build(_recipe(tmp_path, guard), tmp_path / "out")
