"""Retrieval: the training pairs nearest to an intent, from an SQLite FTS5 index (bm25).

The index is one SQLite file built from a corpus (`nl2code data build` writes it) and
shipped in the model folder, where the manifest's sha256 covers it like the weights. It is
opened read-only, lazily, on the first query; a file that is not an nl2code index, or
whose schema is off, is refused with a CheckpointError before any query uses it.

    pairs(id, intent, code, lang, source)       the pairs, in corpus order
    pairs_fts(intent, lang)                     FTS5 over the intents (porter stemming)
    info(key, value)                            schema version and build facts
    postings(term, docs, tfs)                   FTS5's own index, exported per term (optional)
    rowdata(name, data)                         per pair: token count and language (optional)

Results are deterministic: bm25, then the pair's id.

Scoring. FTS5's bm25() costs about 1.5 us per matching row, and a query that falls back to
OR-ing its words matches 10-15k of the bundled index's 81k intents (common words: file,
list, directory): 10-20 ms, the largest part of a warm answer after the model. So the
build also exports FTS5's index (the porter-stemmed terms of every intent, with the rows
that hold them and how often; read from the fts5vocab table, so FTS5 stays the tokenizer
and the index) and a query computes FTS5's bm25 formula over those postings with numpy
(`_Postings`): the same rows and the same scores (the same operations in the same order;
equal within 1e-12 in the tests), in well under a millisecond. The query's words go
through FTS5's tokenizer too (a temporary in-memory FTS5 table). A word FTS5 splits into
several tokens (`read_csv`: the phrase "read csv") and an index without postings (built
before them) take FTS5's own query, as before.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
import zlib
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
        _write_postings(con)
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


BM25_K1, BM25_B = 1.2, 0.75  # FTS5's bm25() constants


def _write_postings(con: sqlite3.Connection) -> None:
    """Export the FTS5 index of pairs_fts: per term, the rows (ids) holding it and how many
    times; per row, its token count and language code. Read from FTS5 itself."""
    import numpy as np

    con.executescript("""
        DROP TABLE IF EXISTS postings; DROP TABLE IF EXISTS rowdata;
        CREATE TABLE postings(term TEXT PRIMARY KEY, docs BLOB NOT NULL, tfs BLOB NOT NULL) WITHOUT ROWID;
        CREATE TABLE rowdata(name TEXT PRIMARY KEY, data BLOB NOT NULL);
        CREATE VIRTUAL TABLE temp.nl2code_vocab USING fts5vocab(main, 'pairs_fts', 'instance');
    """)
    max_id = con.execute("SELECT coalesce(max(id), 0) FROM pairs").fetchone()[0]
    rows = con.execute("SELECT count(*) FROM pairs").fetchone()[0]
    langs = sorted(r[0] for r in con.execute("SELECT DISTINCT lang FROM pairs"))
    if len(langs) >= 255:
        raise ValueError("255 languages or more in one index: cannot export its postings")
    code = np.full(max_id + 1, 255, dtype=np.uint8)  # 255: no such row
    for i, lang in enumerate(langs):
        ids = np.array([r[0] for r in con.execute("SELECT id FROM pairs WHERE lang = ?", (lang,))], dtype=np.int64)
        code[ids] = i
    doclen = np.zeros(max_id + 1, dtype=np.int64)
    out, term, docs = [], None, {}

    def flush():
        if term is not None:
            d = np.fromiter(docs.keys(), dtype=np.int32)
            order = np.argsort(d, kind="stable")
            f = np.fromiter(docs.values(), dtype=np.int32)[order]
            out.append((term, zlib.compress(d[order].tobytes()), zlib.compress(f.astype(np.uint16).tobytes())))

    for t, doc, _col, _off in con.execute("SELECT term, doc, col, offset FROM temp.nl2code_vocab"):
        if t != term:
            flush()
            term, docs = t, {}
        docs[doc] = docs.get(doc, 0) + 1
        doclen[doc] += 1
    flush()
    con.execute("DROP TABLE temp.nl2code_vocab")
    if doclen.max(initial=0) >= 2 ** 16:
        raise ValueError("an intent of 65536 tokens or more: cannot export the index")
    con.executemany("INSERT INTO postings VALUES (?, ?, ?)", out)
    meta = {"rows": rows, "tokens": int(doclen.sum()), "max_id": max_id, "langs": langs}
    con.executemany("INSERT INTO rowdata VALUES (?, ?)", [
        ("meta", json.dumps(meta).encode()), ("doclen", zlib.compress(doclen.astype(np.uint16).tobytes())),
        ("lang", zlib.compress(code.tobytes()))])


def add_postings(path: str | Path) -> None:
    """Add the exported postings to an index built without them (in place, atomically:
    a copy is written, then renamed over the file). The pairs and FTS5 tables are untouched."""
    import shutil

    path = Path(path)
    Index(path)._open()  # a valid index, or CheckpointError
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(path, tmp)
    con = sqlite3.connect(tmp)
    try:
        _write_postings(con)
        con.commit()
        con.execute("VACUUM")
    finally:
        con.close()
    tmp.replace(path)


class _Postings:
    """FTS5's bm25() over the exported postings (numpy): the same formula, in the same
    order of floating-point operations, as SQLite's fts5Bm25Function with unit weights."""

    CACHE = 4096  # decoded terms kept

    def __init__(self, con: sqlite3.Connection, path: Path):
        import numpy as np

        self.np, self.con, self.path = np, con, path
        try:
            data = dict(con.execute("SELECT name, data FROM rowdata"))
            meta = json.loads(data["meta"])
            self.doclen = np.frombuffer(zlib.decompress(data["doclen"]), dtype=np.uint16).astype(np.float64)
            self.lang = np.frombuffer(zlib.decompress(data["lang"]), dtype=np.uint8)
            self.rows, self.langs = int(meta["rows"]), list(meta["langs"])
            self.avgdl = float(meta["tokens"]) / float(self.rows) if self.rows else 1.0
            n = int(meta["max_id"]) + 1
        except (KeyError, TypeError, ValueError, zlib.error, sqlite3.Error) as exc:
            raise CheckpointError(f"{path}: the exported postings are damaged: {exc}") from None
        if len(self.doclen) != n or len(self.lang) != n:
            raise CheckpointError(f"{path}: the exported postings are damaged (row arrays of the wrong length)")
        self.in_lang = {lang: self.lang == i for i, lang in enumerate(self.langs)}  # per query otherwise
        con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.nl2code_q USING fts5(w, tokenize='porter unicode61')")
        con.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.nl2code_qv USING fts5vocab(temp, 'nl2code_q', 'instance')")
        self._stems: dict[str, list[str]] = {}
        self._terms: dict[str, tuple] = {}

    def stems(self, words: list[str]) -> list[list[str]]:
        """Each word's tokens, as FTS5's tokenizer makes them."""
        new = [w for w in dict.fromkeys(words) if w not in self._stems]
        if new:
            self.con.executemany("INSERT INTO temp.nl2code_q(rowid, w) VALUES (?, ?)", list(enumerate(new)))
            toks: dict[int, list[tuple[int, str]]] = {}
            for term, doc, off in self.con.execute("SELECT term, doc, offset FROM temp.nl2code_qv"):
                toks.setdefault(doc, []).append((off, term))
            self.con.execute("DELETE FROM temp.nl2code_q")
            if len(self._stems) > 100_000:
                self._stems.clear()
            for i, w in enumerate(new):
                self._stems[w] = [t for _, t in sorted(toks.get(i, []))]
        return [self._stems[w] for w in words]

    def postings(self, term: str):
        got = self._terms.get(term)
        if got is None:
            np = self.np
            row = self.con.execute("SELECT docs, tfs FROM postings WHERE term = ?", (term,)).fetchone()
            if row is None:
                got = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64))
            else:
                try:
                    docs = np.frombuffer(zlib.decompress(row[0]), dtype=np.int32).astype(np.int64)
                    tfs = np.frombuffer(zlib.decompress(row[1]), dtype=np.uint16).astype(np.float64)
                except (zlib.error, ValueError) as exc:
                    raise CheckpointError(f"{self.path}: the postings of {term!r} are damaged: {exc}") from None
                if len(docs) != len(tfs) or (len(docs) and (docs.min() < 0 or docs.max() >= len(self.doclen))):
                    raise CheckpointError(f"{self.path}: the postings of {term!r} are damaged")
                got = (docs, tfs)
            if len(self._terms) >= self.CACHE:
                self._terms.pop(next(iter(self._terms)))
            self._terms[term] = got
        return got

    def search(self, terms: list[str], lang: str, k: int) -> list[tuple[int, float]]:
        """[(id, bm25 as FTS5 signs it)] of the rows holding every term (best first), then,
        when fewer than k, of those holding any: FTS5's AND query, then its OR query."""
        np = self.np
        in_lang = self.in_lang.get(lang)
        if in_lang is None:
            return []
        n = len(self.doclen)
        score = np.zeros(n, dtype=np.float64)
        hits = np.zeros(n, dtype=np.int32)
        k1, b = BM25_K1, BM25_B
        for term in terms:  # phrase by phrase, in query order, as fts5Bm25Function sums
            docs, f = self.postings(term)
            if not len(docs):
                continue
            idf = math.log((self.rows - len(docs) + 0.5) / (len(docs) + 0.5))
            if idf <= 0.0:
                idf = 1e-6
            score[docs] += idf * ((f * (k1 + 1.0)) / (f + k1 * (1 - b + b * self.doclen[docs] / self.avgdl)))
            hits[docs] += 1
        out = self._best(np.flatnonzero(in_lang & (hits == len(terms))), score, k)
        if len(out) < k and len(terms) > 1:
            seen = {i for i, _ in out}
            out += [r for r in self._best(np.flatnonzero(in_lang & (hits > 0)), score, k) if r[0] not in seen]
        return out[:k]

    def _best(self, ids, score, k: int) -> list[tuple[int, float]]:
        np = self.np
        if not len(ids):
            return []
        s = -score[ids]  # FTS5's sign: lower is better
        if len(ids) > k:
            cut = np.partition(s, k - 1)[k - 1]
            keep = s <= cut
            ids, s = ids[keep], s[keep]
        order = np.lexsort((ids, s))[:k]
        return [(int(ids[i]), float(s[i])) for i in order]


class Index:
    """A read-only index. Thread-safe (one connection, one lock); opened on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.facts: dict = {}
        self._postings: _Postings | None = None

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
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            postings = _Postings(con, self.path) if {"postings", "rowdata"} <= tables else None
        except (sqlite3.Error, ValueError) as exc:
            raise CheckpointError(f"{self.path} is not a valid retrieval index: {exc}") from None
        self._con, self.facts, self._postings = con, facts, postings
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
            try:
                fast = self._fast(con, words, lang, k)
            except sqlite3.Error as exc:
                raise CheckpointError(f"{self.path}: retrieval query failed: {exc}") from None
            if fast is not None:
                return [Hit(i, c, lg, src, s, similarity(query, i)) for i, c, lg, src, s in fast]
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

    def _fast(self, con, words: list[str], lang: str, k: int) -> list[tuple] | None:
        """The exported-postings query, or None where FTS5's own query is needed."""
        if self._postings is None:
            return None
        stems = self._postings.stems(words)
        if any(len(s) != 1 for s in stems):  # a phrase (read_csv) or no token at all
            return None
        found = self._postings.search([s[0] for s in stems], lang, k)
        marks = ",".join("?" * len(found))
        rows = {r[0]: r[1:] for r in con.execute(  # one query for all hits
            f"SELECT id, intent, code, lang, source FROM pairs WHERE id IN ({marks})", [i for i, _ in found])}
        if len(rows) != len(found):
            raise CheckpointError(f"{self.path}: the exported postings name a pair that is not there")
        return [(*rows[i], s) for i, s in found]

    def close(self) -> None:
        with self._lock:
            self._postings = None
            if self._con is not None:
                self._con.close()
                self._con = None
