"""CoNaLa-style BLEU, exact match, parse rate.

BLEU is computed as the official CoNaLa evaluation does: every character outside
[A-Za-z0-9_] becomes its own token, a lowerCamel boundary is split once, both quote kinds
become a backtick, then corpus BLEU-4, unsmoothed, with the brevity penalty
(Papineni et al. 2002).
"""

from __future__ import annotations

import math
import re
from collections import Counter


def tokenize_for_bleu(code: str) -> list[str]:
    code = re.sub(r"([^A-Za-z0-9_])", r" \1 ", code)
    code = re.sub(r"([a-z])([A-Z])", r"\1 \2", code)
    code = re.sub(r"\s+", " ", code)
    code = code.replace('"', "`").replace("'", "`")
    return [t for t in code.split(" ") if t]


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def corpus_bleu(references: list[list[str]], hypotheses: list[list[str]], max_order: int = 4) -> float:
    """Corpus BLEU over token lists (one reference each), in [0, 100]."""
    matches = [0] * max_order
    possible = [0] * max_order
    ref_len = hyp_len = 0
    for ref, hyp in zip(references, hypotheses):
        ref_len += len(ref)
        hyp_len += len(hyp)
        for n in range(1, max_order + 1):
            overlap = _ngrams(hyp, n) & _ngrams(ref, n)
            matches[n - 1] += sum(overlap.values())
            possible[n - 1] += max(len(hyp) - n + 1, 0)
    if min(possible) == 0 or min(matches) == 0:
        return 0.0
    log_p = sum(math.log(m / p) for m, p in zip(matches, possible)) / max_order
    ratio = hyp_len / ref_len if ref_len else 0.0
    bp = 1.0 if ratio > 1.0 else (math.exp(1 - 1 / ratio) if ratio > 0 else 0.0)
    return 100.0 * bp * math.exp(log_p)


def conala_bleu(references: list[str], hypotheses: list[str]) -> float:
    return corpus_bleu([tokenize_for_bleu(r) for r in references], [tokenize_for_bleu(h) for h in hypotheses])


def exact_match(references: list[str], hypotheses: list[str]) -> float:
    if not references:
        return 0.0
    same = sum(tokenize_for_bleu(r) == tokenize_for_bleu(h) for r, h in zip(references, hypotheses))
    return 100.0 * same / len(references)


def sentence_bleu(reference: str, hypothesis: str, max_order: int = 4) -> float:
    """BLEU of one hypothesis, in [0, 100], add-one smoothed for n > 1 (Lin and Och 2004).

    Corpus BLEU of a single pair is 0 whenever one 4-gram is missing; the smoothing keeps
    near misses apart from nonsense, which is what ranking single examples needs.
    """
    ref, hyp = tokenize_for_bleu(reference), tokenize_for_bleu(hypothesis)
    if not hyp or not ref:
        return 100.0 if hyp == ref else 0.0
    log_p = 0.0
    for n in range(1, max_order + 1):
        m = sum((_ngrams(hyp, n) & _ngrams(ref, n)).values())
        p = max(len(hyp) - n + 1, 0)
        if n == 1:
            if m == 0:
                return 0.0
            log_p += math.log(m / p)
        else:
            log_p += math.log((m + 1) / (p + 1))
    bp = 1.0 if len(hyp) > len(ref) else math.exp(1 - len(ref) / len(hyp))
    return 100.0 * bp * math.exp(log_p / max_order)
