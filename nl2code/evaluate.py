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
from dataclasses import dataclass
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
        items = list(readers.read_jsonl(p, report, "eval", intent_key="intent", code_key="code"))
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


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def run_model(gen, data: list[Example], lang: str, n: int = 5, beam: int = 5,
              progress: Callable[[], None] | None = None) -> list[Row]:
    from nl2code.config import DecodeConfig

    cfg = DecodeConfig(strategy="beam", beam_size=beam, n_best=beam)
    rows = []
    for ex in data:
        t = time.perf_counter()
        # every candidate (repairs included), so the plain top-1 below is the model's own
        cands = gen.generate_batch([ex.intent], lang, n=4 * beam, config=cfg, keep_unparsed=True,
                                   raise_empty=False)[0]
        ms = (time.perf_counter() - t) * 1000
        parsing = [c for c in cands if c.parses]
        by_model = sorted((c for c in cands if not c.features.get("repaired")),
                          key=lambda c: -c.features["norm_logprob"])
        plain = by_model[0] if by_model else None
        rows.append(Row(ex.intent, ex.code, parsing[0].code if parsing else None,
                        plain.code if plain else "", bool(plain and plain.parses), ms))
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
        rows.append(Row(ex.intent, ex.code, code, code, ok, ms))
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
