"""Hostile files and streams around the CLI (issue 16, items 6, 8 and 10): writes that
would follow links, reads that would not be bounded, FIFOs where files belong, bad recipe
values, closed or odd standard streams.

Anything that used to hang or exhaust memory runs in a subprocess with a timeout and a
memory cap (conftest.run_limited).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TOY, cli, code_env, run_limited
from nl2code.data.build import build, load_recipe
from nl2code.errors import DataError

BIG = 600 << 20  # a 600 MB line or file (sparse: no disk), read under a 300 MB cap
READER_CAP_MB = 300


def toy_jsonl(path: Path) -> Path:
    path.write_text("".join(json.dumps({"intent": i, "code": c, "lang": l}) + "\n" for i, c, l in TOY))
    return path


def recipe(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.toml"
    path.write_text(f'data_root = "{tmp_path}"\n' + body)
    return path


TOY_SOURCE = '[[source]]\nname = "toy"\nkind = "jsonl"\npath = "toy.jsonl"\n'


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


# -- item 6: outputs are created without following links -----------------------------------

@pytest.mark.parametrize("name", ["stats.json", ".train.jsonl.tmp", ".stats.json.tmp", "train.jsonl"])
def test_data_build_never_writes_through_a_link(tmp_path, name):
    toy_jsonl(tmp_path / "toy.jsonl")
    out = tmp_path / "corpus"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, out / name)
    stats = build(recipe(tmp_path, TOY_SOURCE), out)
    assert victim.read_text() == "precious\n"
    assert stats["train"] == len(TOY)
    for final in ("train.jsonl", "dev.jsonl", "stats.json"):
        assert not (out / final).is_symlink() and (out / final).is_file()
    assert json.loads((out / "stats.json").read_text())["train"] == len(TOY)


# -- item 8: every read is bounded ---------------------------------------------------------

READ_CHILD = """
import sys
from pathlib import Path
from nl2code.data import readers
from nl2code.data.records import Report
from nl2code.errors import DataError
report = Report()
kind, path = sys.argv[1], Path(sys.argv[2])
try:
    if kind == "jsonl":
        got = list(readers.read_jsonl(path, report, "t"))
    elif kind == "nl2bash":
        got = list(readers.read_nl2bash(path, report, "t"))
    else:
        got = list(readers.read_conala(path, report))
except DataError as exc:
    print("DataError:", exc)
    sys.exit(3)
print(len(got), dict(report.drops))
"""


def _long_line_file(path: Path, before: str, after: str) -> None:
    with open(path, "wb") as fh:
        fh.write(before.encode())
        fh.seek(BIG, os.SEEK_CUR)  # a hole: reads back as 600 MB of zero bytes, no newline
        fh.write(b"\n" + after.encode())


def _read(kind: str, path: Path) -> tuple[int, str]:
    rc, out, err = run_limited([sys.executable, "-c", READ_CHILD, kind, str(path)], timeout=120,
                               mem_mb=READER_CAP_MB)
    assert "MemoryError" not in err, err
    return rc, out


def test_jsonl_line_longer_than_memory_is_skipped(tmp_path):
    """The reader read a whole line before checking its length: a file with no newline
    for 4 GB was a MemoryError. Now the line is skipped in chunks and the next one read."""
    good = json.dumps({"intent": "print hello world", "code": "print('hello world')"})
    _long_line_file(tmp_path / "big.jsonl", good + "\n", good + "\n")
    rc, out = _read("jsonl", tmp_path / "big.jsonl")
    assert rc == 0, out
    assert out.startswith("2 ") and "line too long" in out


def test_nl2bash_line_longer_than_memory_is_skipped(tmp_path):
    _long_line_file(tmp_path / "big.nl", "list files\n", "count lines\n")
    (tmp_path / "big.cm").write_text("ls\nx\nwc -l\n")
    rc, out = _read("nl2bash", tmp_path / "big")
    assert rc == 0, out
    assert out.startswith("2 ") and "line too long" in out


def test_conala_file_larger_than_the_limit_is_refused_before_reading(tmp_path):
    """The CoNaLa reader read the whole file at once."""
    with open(tmp_path / "big.json", "wb") as fh:
        fh.write(b"[")
        fh.truncate(BIG)
    rc, out = _read("conala", tmp_path / "big.json")
    assert rc == 3 and "larger than" in out


@pytest.mark.parametrize("what", ["recipe", "train config", "meta file"])
def test_fifo_inputs_do_not_hang_the_cli(tmp_path, tiny_model, what):
    fifo = tmp_path / "input.fifo"
    os.mkfifo(fifo)
    args = {"recipe": ["data", "build", str(fifo), "--out", str(tmp_path / "c")],
            "train config": ["train", str(fifo), "--corpus", str(tmp_path), "--out", str(tmp_path / "r")],
            "meta file": ["model", "package", str(tiny_model), "--out", str(tmp_path / "p"),
                          "--meta-file", f"k={fifo}"]}[what]
    rc, _, err = run_limited(cli(*args), timeout=180, mem_mb=3000)
    assert rc == 2 and "FIFO" in one_line(err)


# -- item 10: recipe values, --out '' --------------------------------------------------------

@pytest.mark.parametrize("body,match", [
    (TOY_SOURCE + TOY_SOURCE, "used by another source"),
    ('[[source]]\nname = "m"\nkind = "mine"\nroots = "/etc"\n', "roots"),
    (TOY_SOURCE + "weight = 0\n", "weight"),
    (TOY_SOURCE + "weight = nan\n", "weight"),
    (TOY_SOURCE + "weight = 1e308\n", "weight"),
    (TOY_SOURCE + 'weight = "heavy"\n', "weight"),
    (TOY_SOURCE + "dev_first = 2.5\n", "dev_first"),
    (TOY_SOURCE + "cap = 0\n", "cap"),
    ('dedup_near = "yes"\n' + TOY_SOURCE, "dedup_near"),
    ('source = 3\n', "source"),
    (TOY_SOURCE + '[[leak_guard]]\npath = 3\n', "path"),
])
def test_bad_recipe_values_are_one_error_naming_the_key(tmp_path, body, match):
    """Duplicate source names merged silently; roots = "/etc" was read character by
    character; weights of 0, NaN or 1e308 reached training."""
    toy_jsonl(tmp_path / "toy.jsonl")
    with pytest.raises(DataError, match=match):
        load_recipe(recipe(tmp_path, body))


def test_data_build_with_empty_out_writes_nothing(tmp_path):
    toy_jsonl(tmp_path / "toy.jsonl")
    rcp = recipe(tmp_path, TOY_SOURCE)
    work = tmp_path / "work"
    work.mkdir()
    rc, _, err = run_limited(cli("data", "build", str(rcp), "--out", ""), timeout=180, mem_mb=3000, cwd=work)
    assert rc == 2 and "--out" in one_line(err)
    assert list(work.iterdir()) == []


# -- item 10: standard streams ---------------------------------------------------------------

def _shell(cmd: str, tmp_path: Path, **env) -> tuple[int, str]:
    """Run `cmd` through sh (for >&- and <&-); -> (returncode, stderr)."""
    proc = subprocess.run(["sh", "-c", cmd], env=code_env(**env), cwd=tmp_path, timeout=300,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stderr.decode("utf-8", "replace")


def test_closed_stdout_is_one_error_line(tmp_path, tiny_model):
    py = f"{sys.executable} -m nl2code"
    for args in (f"model info -m {tiny_model}", f"'print hello world' -m {tiny_model}"):
        rc, err = _shell(f"{py} {args} >&-", tmp_path)
        assert rc == 2 and "stdout is closed" in one_line(err)


def test_closed_stdin_reads_as_empty(tmp_path, tiny_model):
    rc, err = _shell(f"{sys.executable} -m nl2code -m {tiny_model} <&-", tmp_path)
    assert rc == 2 and "empty intent" in one_line(err)


def test_full_stdout_is_one_error_line(tmp_path, tiny_model):
    for args in (f"model info -m {tiny_model}", f"--json 'print hello world' -m {tiny_model}"):
        rc, err = _shell(f"{sys.executable} -m nl2code {args} > /dev/full", tmp_path)
        assert rc == 2 and "No space left on device" in one_line(err)


def test_stdout_encoding_without_the_answer_characters(tmp_path, tiny_model):
    """PYTHONIOENCODING=ascii and a JSON record with é in it (the intent, echoed): was
    "internal error: UnicodeEncodeError"."""
    rc, err = _shell(f"{sys.executable} -m nl2code --json \"print 'h\u00e9llo w\u00f6rld'\" -m {tiny_model}",
                     tmp_path, PYTHONIOENCODING="ascii")
    assert rc == 2 and "PYTHONIOENCODING=utf-8" in one_line(err)
