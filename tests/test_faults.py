"""Faults: a disk that fills up while training saves, and corpus files that fight back.

Disk full: the write of a checkpoint fails half-way (ENOSPC). The previous `last/` must
stay valid, no temporary folder may be left behind, the error must reach the caller as
the OSError it is, and `resume=True` must continue from the previous checkpoint.

Hostile data: JSON nested 100k deep, integers too long for Python to parse, a 2 MB line,
invalid UTF-8, a folder or a FIFO where a corpus file should be. Each is reported and
skipped, or a DataError naming the path; never a crash, and never a hang (a FIFO would
block open() until something wrote to it).
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from pathlib import Path

import pytest

from conftest import tiny_configs, write_toy_corpus
from nl2code import checkpoint
from nl2code.data import readers
from nl2code.data.build import build
from nl2code.data.records import Report
from nl2code.errors import DataError
from nl2code.train import train

# an eval (and so a save of last/) every 2 steps: saves at steps 2, 4 and 6
RUN = dict(max_steps=6, eval_every=2, log_every=1, dev_bleu_examples=2, save_every_minutes=60.0)


# -- disk full during a checkpoint save ---------------------------------------------------

def _fail_second_last_save(monkeypatch, where: str) -> None:
    """Make the second save of last/ hit a full disk half-way through writing `where`."""
    import safetensors.torch

    count = {"saves": 0}

    def disk_full(target: Path, partial: bytes) -> None:
        target.write_bytes(partial)  # what was written before the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(target))

    def second_last_save(target: Path) -> bool:
        if not target.parent.name.startswith(".last."):  # write_atomic_dir's temp folder
            return False
        count["saves"] += 1
        return count["saves"] == 2

    if where == "weights":
        real_save_file = safetensors.torch.save_file

        def save_file(tensors, filename, metadata=None):
            if second_last_save(Path(filename)):
                disk_full(Path(filename), b"\0" * 4096)
            return real_save_file(tensors, filename, metadata=metadata)

        monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    else:
        real_write_text = Path.write_text

        def write_text(self, data, *args, **kwargs):
            if self.name == checkpoint.CONFIG and second_last_save(self):
                disk_full(self, data[:10].encode())
            return real_write_text(self, data, *args, **kwargs)

        monkeypatch.setattr(Path, "write_text", write_text)


@pytest.mark.parametrize("where", ["weights", "config"])
def test_disk_full_during_save_keeps_last_and_resume_continues(tmp_path, where):
    corpus = write_toy_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    with pytest.MonkeyPatch.context() as full_disk, pytest.raises(OSError) as err:
        _fail_second_last_save(full_disk, where)
        train(*tiny_configs(corpus, out, **RUN))
    assert err.value.errno == errno.ENOSPC and err.value.filename.endswith(
        checkpoint.WEIGHTS if where == "weights" else checkpoint.CONFIG)

    last = out / "last"
    checkpoint.verify(last)  # the step-2 checkpoint, intact
    assert checkpoint.load_config(last)[1]["step"] == 2
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.jsonl"]  # no temp folders

    records: list[dict] = []
    best = train(*tiny_configs(corpus, out, **RUN), resume=True, log=records.append)
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == [3, 4, 5, 6]
    checkpoint.verify(last)
    checkpoint.verify(best)
    assert checkpoint.load_config(last)[1]["step"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["best", "last", "log.jsonl"]


# -- hostile corpus files -----------------------------------------------------------------

ARRAY_BOMB = b"[" * 100_000 + b"]" * 100_000
OBJECT_BOMB = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
HUGE_INT = b'{"intent": "x", "code": "y", "lang": ' + b"9" * 5000 + b"}"  # > sys.get_int_max_str_digits()
LONG_LINE = json.dumps({"intent": "a" * 2_000_000, "code": "x"}).encode()
GOOD = [{"intent": "sort list `xs`", "code": "xs.sort()"}, {"intent": "reverse list `xs`", "code": "xs[::-1]"}]


def _jsonl(*lines: bytes) -> bytes:
    return b"\n".join(lines) + b"\n"


@pytest.mark.timeout(30)
def test_hostile_jsonl_lines_are_reported_and_skipped(tmp_path):
    path = tmp_path / "hostile.jsonl"
    path.write_bytes(_jsonl(json.dumps(GOOD[0]).encode(), ARRAY_BOMB, OBJECT_BOMB, HUGE_INT, LONG_LINE,
                            b'{"intent": "caf\xe9", "code": "x"}', b"\xff\xfe\x00\x01",
                            json.dumps(GOOD[1]).encode()))
    report = Report()
    got = list(readers.read_jsonl(path, report, "s"))
    assert [(e.intent, e.code) for e in got] == [(g["intent"], g["code"]) for g in GOOD]
    assert report.drops == Counter({"bad JSON": 3, "line too long": 1, "undecodable bytes": 2})
    assert {p.split(": ")[0] for p in report.problems} == {f"{path}:{n}" for n in range(2, 8)}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("content", [ARRAY_BOMB, OBJECT_BOMB, b"[" + HUGE_INT + b"]", b"[\xff\xfe]"],
                         ids=["array-bomb", "object-bomb", "huge-int", "invalid-utf8"])
def test_hostile_conala_file_is_a_data_error(tmp_path, content):
    path = tmp_path / "conala.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match="conala.json"):
        list(readers.read_conala(path, Report()))


@pytest.mark.timeout(30)
def test_two_megabyte_single_line_files(tmp_path):
    """A CoNaLa file is one JSON value: one 2 MB line is fine. A 2 MB line in a line-based
    format is not an example: it is reported and its pair skipped."""
    records = [{"intent": f"sort list `xs{i}`", "snippet": f"xs{i}.sort()"} for i in range(40_000)]
    conala = tmp_path / "conala.json"
    conala.write_text(json.dumps(records))
    assert conala.stat().st_size > 2_000_000 and b"\n" not in conala.read_bytes()
    assert len(list(readers.read_conala(conala, Report()))) == 40_000

    (tmp_path / "t.nl").write_bytes(b"list files\n" + b"x" * 2_000_000 + b"\nshow disk usage\n")
    (tmp_path / "t.cm").write_bytes(b"ls\necho lost\ndu -sh\n")
    report = Report()
    got = list(readers.read_nl2bash(tmp_path / "t", report))
    assert [(e.intent, e.code) for e in got] == [("list files", "ls"), ("show disk usage", "du -sh")]
    assert report.drops["line too long"] == 1


def _not_a_file(path: Path, kind: str) -> Path:
    if kind == "folder":
        path.mkdir()
    else:
        os.mkfifo(path)  # nothing ever writes to it: opening it for reading would block
    return path


READERS = {
    "conala": lambda d: readers.read_conala(d / "train.json", Report()),
    "jsonl": lambda d: readers.read_jsonl(d / "train.json", Report(), "s"),
    "nl2bash": lambda d: readers.read_nl2bash(d / "train", Report()),
    "django": lambda d: readers.read_django(d / "train", Report()),
}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["folder", "fifo"])
@pytest.mark.parametrize("reader", list(READERS))
def test_folder_or_fifo_named_as_a_source_file(tmp_path, reader, kind):
    if reader in ("nl2bash", "django"):  # the first file of the pair is the bad one
        first, second = (".nl", ".cm") if reader == "nl2bash" else (".anno", ".code")
        _not_a_file(tmp_path / f"train{first}", kind)
        (tmp_path / f"train{second}").write_text("ls\n")
        bad = tmp_path / f"train{first}"
    else:
        bad = _not_a_file(tmp_path / "train.json", kind)
    with pytest.raises(DataError, match="not a regular file") as err:
        list(READERS[reader](tmp_path))
    assert str(bad) in str(err.value)


def _recipe(tmp_path: Path, source: str, guard: str = "") -> Path:
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'name = "hostile"\ndata_root = "{tmp_path / "data"}"\n\n{source}\n{guard}\n')
    return recipe


@pytest.mark.timeout(30)
def test_build_reports_hostile_lines(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "api.jsonl").write_bytes(_jsonl(json.dumps(GOOD[0]).encode(), ARRAY_BOMB, HUGE_INT, LONG_LINE,
                                            b"\xff", json.dumps(GOOD[1]).encode()))
    stats = build(_recipe(tmp_path, '[[source]]\nname = "api"\nkind = "jsonl"\npath = "api.jsonl"'), tmp_path / "out")
    assert stats["train"] == 2
    assert stats["drops"] == {"bad JSON": 2, "line too long": 1, "undecodable bytes": 1}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", ["folder", "fifo"])
@pytest.mark.parametrize("role", ["source", "leak_guard"])
def test_build_refuses_a_folder_or_fifo(tmp_path, kind, role):
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.jsonl").write_text(json.dumps(GOOD[0]) + "\n")
    _not_a_file(data / "bad.json", kind)
    if role == "source":
        recipe = _recipe(tmp_path, '[[source]]\nname = "c"\nkind = "conala"\npath = "bad.json"')
    else:
        recipe = _recipe(tmp_path, '[[source]]\nname = "g"\nkind = "jsonl"\npath = "good.jsonl"',
                         '[[leak_guard]]\nkind = "conala"\npath = "bad.json"')
    with pytest.raises(DataError, match="bad.json: not a regular file"):
        build(recipe, tmp_path / "out")
