"""Run a Generator (or a trivial baseline) over a dataset and report quality and latency.

Datasets are read by path: CoNaLa JSON (optionally its first N records, the dev split),
NL2Bash `.nl`/`.cm` pairs (give the prefix or either file), or JSONL of {intent, code, lang}.
One beam search per intent yields both numbers the reranker is judged by: the reranked
top-1 (only parseable code) and the plain beam top-1 (the model's own first choice).
"""

from __future__ import annotations

import re
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from nl2code import metrics, syntax
from nl2code.data import readers
from nl2code.data.records import Example, Report
from nl2code.errors import DataError, UsageError


def load_dataset(path: str | Path, fmt: str = "auto", first: int = 0, skip: int = 0) -> list[Example]:
    p = Path(path)
    report = Report()
    if fmt == "auto":
        if p.suffix == ".json":
            fmt = "conala"
        elif p.suffix in (".nl", ".cm") or p.with_suffix(".nl").exists():
            fmt = "nl2bash"
        elif p.suffix == ".jsonl":
            fmt = "jsonl"
        else:
            raise UsageError(f"cannot tell the format of {p}: pass --format conala|nl2bash|jsonl")
    if fmt == "conala":
        items = list(readers.read_conala(p, report))
    elif fmt == "nl2bash":
        items = list(readers.read_nl2bash(p.with_suffix(""), report))
    elif fmt == "jsonl":
        items = list(readers.read_jsonl(p, report, p.stem, intent_key="intent", code_key="code",
                                        source_key="source"))
    else:
        raise UsageError(f"unknown format {fmt!r}: use conala, nl2bash or jsonl")
    items = items[skip:]
    if first:
        items = items[:first]
    if not items:
        raise DataError(f"{p}: no examples to evaluate")
    return items


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]+", text.lower()))


class NearestIntent:
    """Baseline: the code of the training example whose intent shares the most words."""

    def __init__(self, train: list[Example]):
        self.train = train
        self.index: dict[str, list[int]] = {}
        self.sets = [_words(e.intent) for e in train]
        for i, ws in enumerate(self.sets):
            for w in ws:
                self.index.setdefault(w, []).append(i)

    def __call__(self, intent: str) -> str:
        q = _words(intent)
        counts: Counter = Counter()
        for w in q:
            for i in self.index.get(w, ()):
                counts[i] += 1
        if not counts:
            return self.train[0].code
        best = max(counts, key=lambda i: (counts[i] / len(q | self.sets[i]), -i))
        return self.train[best].code


@dataclass
class Row:
    intent: str
    reference: str
    top1: str | None  # reranked answer (parses) or None when unanswered
    plain: str  # the model's own first choice, parses or not
    plain_parses: bool
    ms: float
    source: str = ""
    lang: str = ""
    candidates: list[dict[str, Any]] = field(default_factory=list)  # the first few, ranked


KEEP_CANDIDATES = 5  # candidates per example kept in the per-example records
LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 15), (16, 20), (21, None))  # intent length in words


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_model(gen, data: list[Example], lang: str, beam: int = 5,
              progress: Callable[[], None] | None = None) -> list[Row]:
    rows = []
    for ex in data:
        t = time.perf_counter()
        # every candidate (repairs included), and the model's own top-1 for the plain score
        every = gen.candidates(ex.intent, lang, beam=beam)
        ms = (time.perf_counter() - t) * 1000
        cands, parsing, plain = every.ranked, every.parsing, every.top1
        shown = [{"code": c.code, "parses": c.parses, "score": round(c.score, 4),
                  "repaired": bool(c.features.get("repaired")),
                  "coverage": round(c.features.get("coverage", 1.0), 3)} for c in cands[:KEEP_CANDIDATES]]
        rows.append(Row(ex.intent, ex.code, parsing[0].code if parsing else None,
                        plain.code if plain else "", bool(plain and plain.parses), ms,
                        ex.source, ex.lang, shown))
        if progress:
            progress()
    return rows


def run_baseline(fn: Callable[[str], str], data: list[Example], lang: str) -> list[Row]:
    """Baselines are scored on their raw output: no parse filter stands between them and BLEU."""
    rows = []
    for ex in data:
        t = time.perf_counter()
        code = fn(ex.intent)
        ms = (time.perf_counter() - t) * 1000
        ok = syntax.parses(code, lang)
        rows.append(Row(ex.intent, ex.code, code, code, ok, ms, ex.source, ex.lang,
                        [{"code": code, "parses": ok}]))
    return rows


def summarise(rows: list[Row], lang: str) -> dict[str, Any]:
    refs = [r.reference for r in rows]
    answered = [r for r in rows if r.top1 is not None]
    top1 = [r.top1 if r.top1 is not None else "" for r in rows]
    plain = [r.plain for r in rows]
    lat = [r.ms for r in rows]
    return {
        "examples": len(rows),
        "lang": lang,
        "bleu": round(metrics.conala_bleu(refs, top1), 2),
        "exact_match": round(metrics.exact_match(refs, top1), 2),
        "answered_rate": round(100.0 * len(answered) / len(rows), 2),
        "top1_parse_rate_of_answered": round(
            100.0 * sum(syntax.parses(r.top1, lang) for r in answered) / max(len(answered), 1), 2),
        "plain_beam_top1_bleu": round(metrics.conala_bleu(refs, plain), 2),
        "plain_beam_top1_parse_rate": round(100.0 * sum(r.plain_parses for r in rows) / len(rows), 2),
        "latency_ms_p50": round(statistics.median(lat), 1) if lat else 0.0,
        "latency_ms_p95": round(_pct(lat, 0.95), 1),
    }


def _group(rows: list[Row]) -> dict[str, Any]:
    refs = [r.reference for r in rows]
    top1 = [r.top1 if r.top1 is not None else "" for r in rows]
    return {
        "examples": len(rows),
        "bleu": round(metrics.conala_bleu(refs, top1), 2),
        "exact_match": round(metrics.exact_match(refs, top1), 2),
        "answered_rate": round(100.0 * sum(r.top1 is not None for r in rows) / len(rows), 2),
    }


def length_bucket(intent: str) -> str:
    words = len(intent.split())
    for lo, hi in LENGTH_BUCKETS:
        if hi is None or words <= hi:
            return f"{lo}+" if hi is None else f"{lo}-{hi}"
    raise AssertionError("unreachable: the last bucket is open")


def details(rows: list[Row]) -> dict[str, Any]:
    """Breakdowns by source and by intent length, and one record per example.

    The groups use the same corpus BLEU as the summary; each record carries a smoothed
    sentence BLEU (for ranking the worst cases) of the answer and of every kept candidate.
    """
    by_source: dict[str, list[Row]] = {}
    by_length: dict[str, list[Row]] = {f"{lo}+" if hi is None else f"{lo}-{hi}": [] for lo, hi in LENGTH_BUCKETS}
    for r in rows:
        by_source.setdefault(r.source or "unknown", []).append(r)
        by_length[length_bucket(r.intent)].append(r)
    cases = []
    for i, r in enumerate(rows):
        answer = r.top1 if r.top1 is not None else ""
        cases.append({
            "id": i, "intent": r.intent, "reference": r.reference, "source": r.source or "unknown",
            "lang": r.lang, "answer": r.top1, "answered": r.top1 is not None,
            "bleu": round(metrics.sentence_bleu(r.reference, answer), 2),
            "exact": metrics.exact_match([r.reference], [answer]) == 100.0,
            "plain": r.plain, "plain_parses": r.plain_parses,
            "plain_bleu": round(metrics.sentence_bleu(r.reference, r.plain), 2),
            "candidates": [{**c, "bleu": round(metrics.sentence_bleu(r.reference, c["code"]), 2)}
                           for c in r.candidates],
            "ms": round(r.ms, 2),
        })
    return {
        "by_source": {k: _group(v) for k, v in sorted(by_source.items())},
        "by_intent_length": {k: _group(v) for k, v in by_length.items() if v},
        "cases": cases,
    }
