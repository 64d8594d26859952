"""History: every generation, from every front door, in one SQLite file.

`$NL2CODE_HOME/history.db`, in WAL mode so the CLI, the HTTP server and the language server
can write at the same time (writers queue on SQLite's lock, readers never wait). Each record
is one short transaction: a writer killed mid-write loses at most its own record, never the
file. The schema is versioned with `PRAGMA user_version`; MIGRATIONS[i] takes version i to
i + 1, and opening a database applies the missing ones in one transaction.

A record: time, source (cli, server, lsp), intent, language, model path and weights sha256,
the candidates (JSON), which one was chosen (the one shown or the completion accepted),
whether the user accepted it, latency, and the error when nothing was answered. Accepted
records are what `nl2code train --from-history` learns from.

Logging is on unless NL2CODE_LOG=0 (or a front door's --no-log). Nothing here imports torch.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nl2code.errors import UsageError
from nl2code.paths import home

BUSY_TIMEOUT_MS = 10_000
MAX_FIELD_CHARS = 100_000  # a record is bounded: huge candidates are cut, not stored whole

MIGRATIONS = [
    # 0 -> 1: the generations table
    """
    CREATE TABLE generations (
        id          INTEGER PRIMARY KEY,
        ts          REAL    NOT NULL,
        source      TEXT    NOT NULL,
        intent      TEXT    NOT NULL,
        lang        TEXT    NOT NULL,
        model       TEXT,
        model_hash  TEXT,
        candidates  TEXT    NOT NULL DEFAULT '[]',
        chosen      INTEGER,
        latency_ms  REAL,
        error       TEXT
    );
    CREATE INDEX generations_ts ON generations(ts);
    """,
    # 1 -> 2: acceptance (the code the user kept, which may differ from every candidate)
    """
    ALTER TABLE generations ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE generations ADD COLUMN accepted_code TEXT;
    CREATE INDEX generations_accepted ON generations(accepted) WHERE accepted = 1;
    CREATE INDEX generations_intent ON generations(intent, lang);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def enabled(no_log: bool = False) -> bool:
    """Whether to record: not with --no-log, not with NL2CODE_LOG=0/false/no/off."""
    if no_log:
        return False
    return os.environ.get("NL2CODE_LOG", "1").strip().lower() not in ("0", "false", "no", "off")


def default_path() -> Path:
    return home() / "history.db"


_hash_cache: dict[tuple[str, float], str | None] = {}


def model_hash(model_dir: str | Path | None) -> str | None:
    """The weights' sha256 from the model folder's manifest (no hashing: the manifest has it)."""
    if not model_dir:
        return None
    manifest = Path(model_dir) / "manifest.json"
    try:
        key = (str(manifest), manifest.stat().st_mtime)
        if key not in _hash_cache:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", {})
            _hash_cache[key] = files.get("model.safetensors")
        return _hash_cache[key]
    except (OSError, ValueError, AttributeError):
        return None


class Record:
    """One stored generation (a plain class: the CLI's fast path imports this module)."""

    FIELDS = ("id", "ts", "source", "intent", "lang", "model", "model_hash", "candidates", "chosen",
              "latency_ms", "error", "accepted", "accepted_code")

    def __init__(self, *values):
        for name, value in zip(self.FIELDS, values, strict=True):
            setattr(self, name, value)

    def __eq__(self, other) -> bool:
        return isinstance(other, Record) and all(getattr(self, f) == getattr(other, f) for f in self.FIELDS)

    def __repr__(self) -> str:
        return f"Record(id={self.id}, source={self.source!r}, intent={self.intent!r})"

    @property
    def chosen_code(self) -> str | None:
        if self.accepted_code is not None:
            return self.accepted_code
        if self.chosen is not None and 0 <= self.chosen < len(self.candidates):
            return self.candidates[self.chosen].get("code")
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.ts, "source": self.source, "intent": self.intent,
                "lang": self.lang, "model": self.model, "model_hash": self.model_hash,
                "candidates": self.candidates, "chosen": self.chosen, "chosen_code": self.chosen_code,
                "accepted": self.accepted, "latency_ms": self.latency_ms, "error": self.error}


def _cut(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_FIELD_CHARS else text[:MAX_FIELD_CHARS]


class History:
    """One connection to the history database; safe to share between threads."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise UsageError(f"{self.path}: cannot switch the history to WAL mode (got {mode})")
            self._db.execute("PRAGMA synchronous = NORMAL")  # WAL + NORMAL: a crashed process loses nothing
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path} is not a usable history database ({exc}); "
                             f"move it away to start a new history") from None

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise UsageError(f"{self.path} was written by a newer nl2code (schema {version}, "
                             f"this one knows {SCHEMA_VERSION}): upgrade nl2code")
        if version == SCHEMA_VERSION:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # one migrator at a time; the others wait
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                for i in range(version, SCHEMA_VERSION):
                    for stmt in MIGRATIONS[i].split(";"):
                        if stmt.strip():
                            self._db.execute(stmt)
                self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "History":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    # -- writing -------------------------------------------------------------------------

    def record(self, source: str, intent: str, lang: str, candidates: Iterable[dict[str, Any]],
               model: str | Path | None = None, chosen: int | None = None, latency_ms: float | None = None,
               error: str | None = None, ts: float | None = None) -> int:
        """Store one generation; returns its id."""
        cands = [{k: (_cut(v) if isinstance(v, str) else v) for k, v in c.items()} for c in candidates]
        if chosen is None and cands:
            chosen = 0  # the front doors show the best candidate first
        row = (ts or time.time(), source, _cut(intent), lang, str(model) if model else None,
               model_hash(model), json.dumps(cands, ensure_ascii=False), chosen, latency_ms, _cut(error))
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO generations (ts, source, intent, lang, model, model_hash, candidates, chosen,"
                " latency_ms, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            return int(cur.lastrowid)

    def accept(self, record_id: int, index: int | None = None, code: str | None = None) -> bool:
        """Mark a record's candidate (by index, or code the user kept) as accepted."""
        if index is None and code is None:
            raise UsageError("accept needs a candidate index or the accepted code")
        with self._lock:
            row = self._db.execute("SELECT candidates FROM generations WHERE id = ?", (record_id,)).fetchone()
            if row is None:
                return False
            cands = json.loads(row[0])
            if index is not None and not 0 <= index < len(cands):
                raise UsageError(f"record {record_id} has {len(cands)} candidate(s); no index {index}")
            if code is None:
                code = cands[index]["code"]
            elif index is None:
                index = next((i for i, c in enumerate(cands) if c.get("code") == code), None)
            self._db.execute("UPDATE generations SET accepted = 1, chosen = ?, accepted_code = ? WHERE id = ?",
                             (index, _cut(code), record_id))
            return True

    def accept_pair(self, source: str, intent: str, lang: str, code: str, index: int | None = None,
                    model: str | Path | None = None, within_s: float = 86_400.0) -> int:
        """Accept code for an intent: marks the latest matching record (within a day), or
        stores a new accepted record when there is none. Returns the record id."""
        with self._lock:
            row = self._db.execute(
                "SELECT id FROM generations WHERE intent = ? AND lang = ? AND ts >= ? ORDER BY id DESC LIMIT 1",
                (intent, lang, time.time() - within_s)).fetchone()
        if row is not None and self.accept(row[0], None, code):
            return int(row[0])
        rid = self.record(source, intent, lang, [{"code": code}], model=model, chosen=0)
        self.accept(rid, 0)
        return rid

    # -- reading -------------------------------------------------------------------------

    def _rows(self, sql: str, args: tuple) -> list[Record]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, ts, source, intent, lang, model, model_hash, candidates, chosen, latency_ms, error,"
                " accepted, accepted_code FROM generations " + sql, args).fetchall()
        return [Record(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), r[8], r[9], r[10],
                       bool(r[11]), r[12]) for r in rows]

    def get(self, record_id: int) -> Record | None:
        rows = self._rows("WHERE id = ?", (record_id,))
        return rows[0] if rows else None

    def recent(self, n: int = 20, query: str | None = None) -> list[Record]:
        """The n latest records, newest first; query: case-insensitive text in the intent or code."""
        if n < 1:
            raise UsageError("-n must be at least 1")
        if query:
            like = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            return self._rows("WHERE intent LIKE ? ESCAPE '\\' OR candidates LIKE ? ESCAPE '\\'"
                              " OR accepted_code LIKE ? ESCAPE '\\' ORDER BY id DESC LIMIT ?",
                              (like, like, like, n))
        return self._rows("ORDER BY id DESC LIMIT ?", (n,))

    def accepted(self) -> list[Record]:
        """Accepted records, oldest first."""
        return self._rows("WHERE accepted = 1 ORDER BY id", ())

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def integrity(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]


def record_quietly(source: str, intent: str, lang: str, candidates: Iterable[dict[str, Any]], **kw) -> int | None:
    """Record if logging is on; a history that cannot be written never fails a generation.

    Returns the record id, or None when not recorded.
    """
    if not enabled():
        return None
    try:
        with History() as h:
            return h.record(source, intent, lang, candidates, **kw)
    except (UsageError, OSError, sqlite3.Error) as exc:
        import sys

        sys.stderr.write(f"nl2code: warning: history not recorded: {' '.join(str(exc).split())}\n")
        return None
