"""History in SQLite (issue 20): schema migrations, search, acceptance, concurrent writers
in separate processes, and a writer killed with SIGKILL mid-write."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nl2code import history
from nl2code.errors import UsageError
from nl2code.history import History

ROOT = Path(__file__).resolve().parents[1]

WRITER = r"""
import sys, time
from nl2code.history import History
path, source, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
h = History(path)
i = 0
while n < 0 or i < n:
    rid = h.record(source, f"{source} intent {i}", "python", [{"code": "x" * 2000, "score": 1.0}] * 5,
                   latency_ms=1.0)
    print(rid, flush=True)  # acknowledged: committed before this line is written
    i += 1
"""


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "lsp")])}


def test_record_read_search_and_accept(tmp_path):
    with History(tmp_path / "h.db") as h:
        assert h.version == history.SCHEMA_VERSION
        a = h.record("cli", "sort list `xs`", "python", [{"code": "xs.sort()"}, {"code": "sorted(xs)"}],
                     latency_ms=12.5)
        b = h.record("server", "count lines in 'a.txt'", "bash", [], error="no parseable candidate")
        c = h.record("lsp", "100% of x_y", "python", [{"code": "x_y * 1.0"}])
        assert [r.id for r in h.recent(10)] == [c, b, a]
        assert h.get(a).chosen == 0 and h.get(a).chosen_code == "xs.sort()"
        assert h.get(b).chosen is None and h.get(b).error == "no parseable candidate"
        assert [r.id for r in h.recent(10, "SORTED")] == [a]  # code matches too, case-insensitive
        assert [r.id for r in h.recent(10, "100%")] == [c]  # % and _ are literal, not wildcards
        assert h.recent(10, "0%_") == [] and h.recent(10, "x_y")[0].id == c
        assert [r.id for r in h.recent(1)] == [c]
        assert h.accepted() == []
        assert h.accept(a, 1)
        rec = h.get(a)
        assert rec.accepted and rec.chosen == 1 and rec.chosen_code == "sorted(xs)"
        assert not h.accept(9999, 0)
        with pytest.raises(UsageError):
            h.accept(a, 7)
        # accepting code for an intent marks the latest matching record, else stores a new one
        assert h.accept_pair("lsp", "100% of x_y", "python", "x_y / 100", index=None) == c
        assert h.get(c).accepted_code == "x_y / 100" and h.get(c).chosen is None
        new = h.accept_pair("lsp", "never asked", "python", "pass")
        assert new not in (a, b, c) and h.get(new).accepted
        assert [r.id for r in h.accepted()] == [a, c, new]
        assert h.integrity() == "ok"


def test_migrates_an_old_database_keeping_its_records(tmp_path):
    path = tmp_path / "h.db"
    db = sqlite3.connect(path)
    db.executescript(history.MIGRATIONS[0])
    db.execute("INSERT INTO generations (ts, source, intent, lang, candidates, chosen) VALUES (1.0, 'cli', 'old', "
               "'python', '[{\"code\": \"pass\"}]', 0)")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with History(path) as h:
        assert h.version == history.SCHEMA_VERSION == 2
        (rec,) = h.recent(5)
        assert rec.intent == "old" and rec.chosen_code == "pass" and not rec.accepted
        assert h.accept(rec.id, 0) and h.accepted()[0].id == rec.id


def test_newer_or_broken_database_is_a_clear_error(tmp_path):
    newer = tmp_path / "newer.db"
    db = sqlite3.connect(newer)
    db.execute(f"PRAGMA user_version = {history.SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(UsageError, match="newer nl2code"):
        History(newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a usable history"):
        History(junk)


def test_logging_switch(monkeypatch, tmp_path):
    assert history.enabled()
    assert not history.enabled(no_log=True)
    for off in ("0", "false", "OFF", "no"):
        monkeypatch.setenv("NL2CODE_LOG", off)
        assert not history.enabled()
        assert history.record_quietly("cli", "x", "python", []) is None
    assert not history.default_path().exists()
    monkeypatch.setenv("NL2CODE_LOG", "1")
    assert history.record_quietly("cli", "x", "python", []) is not None
    assert History().count() == 1


def test_model_hash_comes_from_the_manifest(tiny_model, tmp_path):
    digest = json.loads((tiny_model / "manifest.json").read_text())["files"]["model.safetensors"]
    assert history.model_hash(tiny_model) == digest
    assert history.model_hash(tmp_path) is None and history.model_hash(None) is None
    with History(tmp_path / "h.db") as h:
        rid = h.record("cli", "x", "python", [], model=tiny_model)
        assert h.get(rid).model_hash == digest and h.get(rid).model == str(tiny_model)


def test_concurrent_writers_in_separate_processes_lose_nothing(tmp_path):
    path = tmp_path / "h.db"
    History(path).close()
    n = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), src, str(n)], env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for src in ("cli", "server", "lsp", "cli2")]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    acked = [int(x) for out, _ in outs for x in out.split()]
    assert len(acked) == 4 * n and len(set(acked)) == 4 * n
    with History(path) as h:
        assert h.count() == 4 * n
        for src in ("cli", "server", "lsp", "cli2"):
            intents = {r.intent for r in h.recent(10_000) if r.source == src}
            assert intents == {f"{src} intent {i}" for i in range(n)}
        assert h.integrity() == "ok"


@pytest.mark.parametrize("delay", [0.6, 1.1])
def test_sigkill_mid_write_leaves_a_sound_database(tmp_path, delay):
    path = tmp_path / "h.db"
    History(path).close()
    err = open(tmp_path / "err.txt", "w+")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "killed", "-1"], env=_env(),
                            stdout=subprocess.PIPE, stderr=err, text=True)
    first = proc.stdout.readline()  # the writer is past its imports and writing
    assert first.strip().isdigit(), (tmp_path / "err.txt").read_text()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read()  # the same buffered reader: nothing read ahead is lost
    proc.wait(timeout=30)
    err.close()
    acked = [int(first)] + [int(x) for x in rest.split() if x.isdigit()]
    assert proc.returncode == -signal.SIGKILL
    db = sqlite3.connect(path)  # a plain reader, as after a crash: SQLite recovers the WAL
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    ids = {r[0] for r in db.execute("SELECT id FROM generations")}
    db.close()
    assert set(acked) <= ids  # every acknowledged record is there
    assert len(ids) - len(acked) <= 1  # at most the in-flight one (committed, not yet printed)
    with History(path) as h:  # and the history keeps working
        h.record("cli", "after the crash", "python", [])
        assert h.integrity() == "ok"
