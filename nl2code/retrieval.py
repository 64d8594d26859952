"""Retrieval: the training pairs nearest to an intent, from an SQLite FTS5 index (bm25).

The index is one SQLite file built from a corpus (`nl2code data build` writes it) and
shipped in the model folder, where the manifest's sha256 covers it like the weights. It is
opened read-only, lazily, on the first query; a file that is not an nl2code index, or
whose schema is off, is refused with a CheckpointError before any query uses it.

    pairs(id, intent, code, lang, source)       the pairs, in corpus order
    pairs_fts(intent, lang)                     FTS5 over the intents (porter stemming)
    info(key, value)                            schema version and build facts

Results are deterministic: bm25, then the pair's id.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from nl2code.errors import CheckpointError

SCHEMA = "nl2code-retrieval-1"
INDEX_FILE = "index.sqlite"
MAX_QUERY_TERMS = 24

STOP = frozenset("""a an the to of in on for from with by and or is are be as at it its this that these those
into than then there their them they you your i me my we our how do does can could would should will
what which who whom when where why all any each some using use used via please want need
""".split())

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+")


@dataclass(frozen=True)
class Hit:
    intent: str
    code: str
    lang: str
    source: str
    bm25: float
    similarity: float  # overlap F1 of content words, 0..1


def content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in STOP and len(w) > 1]


def similarity(a: str, b: str) -> float:
    """F1 overlap of the content words of two texts."""
    wa, wb = set(content_words(a)), set(content_words(b))
    if not wa or not wb:
        return 0.0
    common = len(wa & wb)
    if not common:
        return 0.0
    p, r = common / len(wb), common / len(wa)
    return 2 * p * r / (p + r)


def build(examples, path: str | Path, sources: set[str] | None = None) -> dict:
    """Write an index of examples (those whose source is in `sources`, when given)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.executescript("""
            PRAGMA journal_mode = OFF;
            PRAGMA page_size = 4096;
            CREATE TABLE info(key TEXT PRIMARY KEY, value TEXT);
            CREATE TABLE pairs(id INTEGER PRIMARY KEY, intent TEXT NOT NULL, code TEXT NOT NULL,
                               lang TEXT NOT NULL, source TEXT NOT NULL);
            CREATE VIRTUAL TABLE pairs_fts USING fts5(intent, lang UNINDEXED, content='pairs',
                               content_rowid='id', tokenize='porter unicode61');
        """)
        rows = [(e.intent, e.code, e.lang, e.source) for e in examples
                if sources is None or e.source in sources]
        con.executemany("INSERT INTO pairs(intent, code, lang, source) VALUES (?, ?, ?, ?)", rows)
        con.execute("INSERT INTO pairs_fts(rowid, intent, lang) SELECT id, intent, lang FROM pairs")
        con.execute("INSERT INTO pairs_fts(pairs_fts) VALUES ('optimize')")
        by_lang: dict[str, int] = {}
        for _, _, lang, _ in rows:
            by_lang[lang] = by_lang.get(lang, 0) + 1
        facts = {"schema": SCHEMA, "pairs": len(rows), "by_lang": by_lang}
        con.executemany("INSERT INTO info VALUES (?, ?)", [(k, json.dumps(v)) for k, v in facts.items()])
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    tmp.replace(path)
    return facts


class Index:
    """A read-only index. Thread-safe (one connection, one lock); opened on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.facts: dict = {}

    def _open(self) -> sqlite3.Connection:
        if self._con is not None:
            return self._con
        if not self.path.is_file():
            raise CheckpointError(f"retrieval index {self.path} is missing")
        try:
            con = sqlite3.connect(f"file:{self.path}?mode=ro&immutable=1", uri=True, check_same_thread=False)
            facts = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM info")}
            if facts.get("schema") != SCHEMA:
                raise CheckpointError(f"{self.path} is not an nl2code retrieval index ({SCHEMA})")
            con.execute("SELECT id, intent, code, lang, source FROM pairs LIMIT 1").fetchall()
            con.execute("SELECT rowid FROM pairs_fts WHERE pairs_fts MATCH 'a' LIMIT 1").fetchall()
        except (sqlite3.Error, ValueError) as exc:
            raise CheckpointError(f"{self.path} is not a valid retrieval index: {exc}") from None
        self._con, self.facts = con, facts
        return con

    def search(self, query: str, lang: str, k: int = 5) -> list[Hit]:
        words = list(dict.fromkeys(content_words(query)))[:MAX_QUERY_TERMS]
        if not words or k < 1:
            return []
        # every word first (a cheap intersection); all of them OR-ed only when that finds
        # fewer than k pairs (scoring every pair that shares one common word is slow)
        rows: list = []
        with self._lock:
            con = self._open()
            for op in (" AND ", " OR "):
                if op == " OR " and (len(rows) >= k or len(words) == 1):
                    break
                match = op.join(f'"{w}"' for w in words)
                try:
                    found = con.execute(
                        "SELECT p.intent, p.code, p.lang, p.source, bm25(pairs_fts) AS s, p.id FROM pairs_fts "
                        "JOIN pairs p ON p.id = pairs_fts.rowid WHERE pairs_fts MATCH ? AND p.lang = ? "
                        "ORDER BY s, p.id LIMIT ?", (match, lang, k)).fetchall()
                except sqlite3.Error as exc:
                    raise CheckpointError(f"{self.path}: retrieval query failed: {exc}") from None
                seen = {r[5] for r in rows}
                rows += [r for r in found if r[5] not in seen]
        rows = rows[:k]
        return [Hit(i, c, lg, src, float(s), similarity(query, i)) for i, c, lg, src, s, _ in rows]

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
