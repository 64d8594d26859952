"""Rerank: candidate features -> one score. Candidates that do not parse are dropped.

Syntax is a filter, then a feature. Among parsing candidates the score combines the
length-normalised log-probability, slot coverage (every placeholder from the intent used,
none invented) and the destructive-action flag (nl2code.safety: a flagged candidate goes last).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nl2code import languages, safety, slots, syntax


@dataclass
class RerankConfig:
    w_logprob: float = 1.0  # length-normalised log-probability
    w_coverage: float = 1.0  # fraction of intent placeholders the code uses
    w_invented: float = 2.0  # per placeholder the intent does not have
    w_length: float = 0.0  # log(1 + tokens); >0 favours longer code
    w_repaired: float = 0.5  # penalty for a candidate whose brackets nl2code balanced
    w_reconstruction: float = 0.5  # log P(intent | code) per intent token (reverse model)
    w_retrieved: float = 0.0  # bias for a retrieved training snippet
    w_similarity: float = 1.0  # retrieved: word overlap of its intent with the user's
    w_api: float = 1.0  # per name the candidate uses that its module does not have
    danger_penalty: float = 100.0
    # a candidate whose score (danger aside) is below this is marked low confidence, when the
    # reverse model scored it (its term sets the scale); None: never marked. Fitted per model
    # and language on dev data (benchmarks/confidence.md)
    low_confidence: float | None = None


@dataclass(init=False)
class Candidate:
    """One answer. Whether it parses and what it may destroy live once, in features
    ("parses", "danger"); the attributes of the same names read them."""

    code: str
    lang: str
    score: float
    logprob: float
    features: dict[str, Any]

    def __init__(self, code: str, lang: str, score: float, logprob: float, parses: bool = True,
                 features: dict[str, Any] | None = None, danger: list[str] | None = None):
        self.code, self.lang, self.score, self.logprob = code, lang, score, logprob
        self.features = features if features is not None else {}
        self.features["parses"] = bool(parses)
        self.features["danger"] = list(danger) if danger is not None else list(self.features.get("danger", []))

    @property
    def parses(self) -> bool:
        return self.features["parses"]

    @parses.setter
    def parses(self, value: bool) -> None:
        self.features["parses"] = bool(value)

    @property
    def danger(self) -> list[str]:
        return self.features["danger"]

    @danger.setter
    def danger(self, value: list[str]) -> None:
        self.features["danger"] = list(value)

    @property
    def low_confidence(self) -> bool | None:
        """True: probably wrong (nl2code.rerank.mark_confidence); None: not judged."""
        return self.features.get("low_confidence")

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "score": round(self.score, 4), "logprob": round(self.logprob, 4),
                "parses": self.parses, "danger": self.danger, "low_confidence": self.low_confidence}


def features(canon_code: str, n_tokens: int, logprob: float, norm_score: float,
             intent_placeholders: set[str], code: str, lang: str) -> dict[str, Any]:
    import math

    used = slots.placeholders_in(canon_code)
    result = syntax.check(code, lang)
    return {
        "norm_logprob": norm_score,
        "logprob": logprob,
        "tokens": n_tokens,
        "log_length": math.log1p(n_tokens),
        "coverage": len(used & intent_placeholders) / len(intent_placeholders) if intent_placeholders else 1.0,
        "invented": len(used - intent_placeholders),
        "parses": result.ok,
        "errors": len(result.errors),
        "danger": safety.dangers(code, lang) if languages.get(lang).danger_check else [],
        "retrieved": False,
        "similarity": 0.0,
        "reconstruction": None,
        "api_problems": [],
    }


def score(f: dict[str, Any], cfg: RerankConfig) -> float:
    s = (cfg.w_logprob * f["norm_logprob"] + cfg.w_coverage * f["coverage"]
         - cfg.w_invented * f["invented"] + cfg.w_length * f["log_length"]
         - cfg.w_repaired * f.get("repaired", False)
         + cfg.w_reconstruction * (f.get("reconstruction") or 0.0)
         + (cfg.w_retrieved + cfg.w_similarity * f.get("similarity", 0.0)) * f.get("retrieved", False)
         - cfg.w_api * len(f.get("api_problems", ())))
    if f["danger"] and not f.get("danger_asked"):  # last, unless the intent asked for it
        s -= cfg.danger_penalty
    return s


def mark_confidence(cands: list[Candidate], cfg: RerankConfig) -> None:
    """features["low_confidence"] of each parsing candidate: True when its score, without the
    danger penalty, is below cfg.low_confidence; None when the model has no threshold or the
    reverse model did not score the candidate (no reverse model, a latency budget that
    skipped it, or a candidate past the rows it scores): without its term the score has
    another scale. On the dev sets a marked answer was rarely right (benchmarks/confidence.md)."""
    for c in cands:
        if not c.parses:
            continue
        if cfg.low_confidence is None or not c.features.get("reconstruction_scored"):
            c.features["low_confidence"] = None
            continue
        plain = score(dict(c.features, danger=[]), cfg) if c.danger else c.score  # c.score is that score already
        c.features["low_confidence"] = plain < cfg.low_confidence


def rerank(cands: list[Candidate], keep_unparsed: bool = False) -> list[Candidate]:
    """Sort by score (ties keep model order); drop what does not parse unless asked."""
    kept = cands if keep_unparsed else [c for c in cands if c.parses]
    return sorted(kept, key=lambda c: -c.score)
