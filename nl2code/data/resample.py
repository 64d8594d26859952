"""Resampling mined and documentation pairs toward the curated (CoNaLa-like) distribution.

After Xu et al. (ACL 2020, "Incorporating External Knowledge through Pre-training for
Natural Language to Code Generation"): API-documentation pairs helped only once they were
resampled toward the snippets people ask for. Here each pair of a resampled source is
scored by two bigram language models estimated on the reference sources' training pairs
(one over code tokens, one over intent words; interpolated with an add-one unigram model):
the score is the mean log-probability per token, code and intent averaged. A pair's
weight is exp(score / temperature), and `keep` of each resampled source is drawn *without
replacement* with those weights (Efraimidis-Spirakis keys, seeded), so nothing is
duplicated: pairs unlike the reference become rarer, not copied.

Recipe switch (datasets/default.toml):

    [resample]
    enabled = true
    to = ["conala"]        # reference sources
    keep = 0.5             # fraction of each resampled source kept
    temperature = 1.0
    seed = 0

and `resample = true` on each [[source]] to resample.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nl2code.data.records import Example, Report
from nl2code.errors import DataError

_CODE_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+(?:\.\d+)?|\S")
_WORD = re.compile(r"[a-z]+|\d+")
LAMBDA = 0.7  # weight of the bigram estimate against the unigram backoff


@dataclass
class ResampleConfig:
    enabled: bool = False
    to: tuple[str, ...] = ("conala",)
    keep: float = 0.5
    temperature: float = 1.0
    seed: int = 0


def resample_config(raw: Any, where: str) -> ResampleConfig:
    """The recipe's [resample] table, checked (DataError naming the bad key)."""
    if raw is None:
        return ResampleConfig()
    if not isinstance(raw, dict):
        raise DataError(f"{where}: resample must be a table ([resample])")
    unknown = set(raw) - {"enabled", "to", "keep", "temperature", "seed"}
    if unknown:
        raise DataError(f"{where}: resample has unknown key(s) {sorted(unknown)}")
    cfg = ResampleConfig()
    if not isinstance(raw.get("enabled", False), bool):
        raise DataError(f"{where}: resample.enabled must be true or false")
    to = raw.get("to", list(cfg.to))
    if not isinstance(to, list) or not to or not all(isinstance(x, str) for x in to):
        raise DataError(f"{where}: resample.to must be a non-empty list of source names")
    keep, temp, seed = raw.get("keep", cfg.keep), raw.get("temperature", cfg.temperature), raw.get("seed", 0)
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
        raise DataError(f"{where}: resample.keep = {keep!r} must be a number in (0, 1]")
    if isinstance(temp, bool) or not isinstance(temp, (int, float)) or not 0 < temp <= 100:
        raise DataError(f"{where}: resample.temperature = {temp!r} must be a number in (0, 100]")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{where}: resample.seed = {seed!r} must be an integer")
    return ResampleConfig(raw.get("enabled", False), tuple(to), float(keep), float(temp), seed)


def code_tokens(code: str) -> list[str]:
    return _CODE_TOKEN.findall(code)


def intent_words(intent: str) -> list[str]:
    return _WORD.findall(intent.lower())


class BigramLM:
    """Interpolated bigram model with an add-one unigram backoff; <s>/</s> boundaries."""

    def __init__(self, sequences: Iterable[list[str]]):
        self.uni: Counter = Counter()
        self.bi: Counter = Counter()
        for seq in sequences:
            toks = ["<s>", *seq, "</s>"]
            self.uni.update(toks[1:])
            self.bi.update(zip(toks, toks[1:]))
        self.context: Counter = Counter()
        for (prev, _), n in self.bi.items():
            self.context[prev] += n
        self.total = sum(self.uni.values())
        self.vocab = len(self.uni) + 1  # + unknown

    def logprob(self, seq: list[str]) -> float:
        """Mean log-probability per token of seq (with the end marker)."""
        toks = ["<s>", *seq, "</s>"]
        total = 0.0
        for prev, tok in zip(toks, toks[1:]):
            p_uni = (self.uni[tok] + 1) / (self.total + self.vocab)
            ctx = self.context[prev]
            p_bi = self.bi[(prev, tok)] / ctx if ctx else 0.0
            total += math.log(LAMBDA * p_bi + (1 - LAMBDA) * p_uni if ctx else p_uni)
        return total / (len(toks) - 1)


class Scorer:
    """Similarity of a pair to the reference pairs: mean of the code and intent scores."""

    def __init__(self, reference: list[Example]):
        if not reference:
            raise DataError("resample: the reference sources gave no training pairs")
        self.code_lm = BigramLM(code_tokens(e.code) for e in reference)
        self.intent_lm = BigramLM(intent_words(e.intent) for e in reference)

    def score(self, ex: Example) -> float:
        return 0.5 * (self.code_lm.logprob(code_tokens(ex.code)) + self.intent_lm.logprob(intent_words(ex.intent)))


def weighted_sample(items: list[Example], scores: list[float], k: int, temperature: float,
                    rng: random.Random) -> list[Example]:
    """k items drawn without replacement with weight exp(score / temperature), in their
    original order (Efraimidis-Spirakis: the k largest u ** (1 / w))."""
    if k >= len(items):
        return list(items)
    top = max(scores) if scores else 0.0
    keys = []
    for i, s in enumerate(scores):
        w = math.exp((s - top) / temperature)  # <= 1; shifting leaves the draw unchanged
        u = rng.random() or 1e-300
        keys.append((math.log(u) / max(w, 1e-300), i))
    chosen = sorted(i for _, i in sorted(keys, reverse=True)[:k])
    return [items[i] for i in chosen]


def resample(train: list[Example], cfg: ResampleConfig, reference_tags: set[str],
             resampled: dict[str, set[str]], report: Report) -> tuple[list[Example], dict[str, dict[str, Any]]]:
    """train with each resampled source cut to `keep` of its pairs, drawn by similarity to the
    reference pairs. `resampled` maps a source name to its tags (a miner has several)."""
    scorer = Scorer([e for e in train if e.source in reference_tags])
    rng = random.Random(cfg.seed)
    drop: set[int] = set()
    summary: dict[str, dict[str, Any]] = {}
    for name, tags in resampled.items():
        idx = [i for i, e in enumerate(train) if e.source in tags]
        if not idx:
            continue
        items = [train[i] for i in idx]
        scores = [scorer.score(e) for e in items]
        k = max(1, round(cfg.keep * len(items)))
        kept = {id(e) for e in weighted_sample(items, scores, k, cfg.temperature, rng)}
        for i, e in zip(idx, items):
            if id(e) not in kept:
                drop.add(i)
                report.drop("resample: not drawn")
        mean_all = sum(scores) / len(scores)
        mean_kept = sum(s for s, e in zip(scores, items) if id(e) in kept) / len(kept)
        summary[name] = {"before": len(items), "kept": len(kept), "mean_score_before": round(mean_all, 3),
                         "mean_score_kept": round(mean_kept, 3)}
    return [e for i, e in enumerate(train) if i not in drop], summary
