"""Denoising pre-training (target auto-encoding): corrupted code -> the same code, clean.

A training run with `denoise_ratio > 0` (task "code") adds to its NL -> code pairs examples
whose source is the language tag followed by a corrupted copy of a training pair's code and
whose target is that code, clean (Norouzi et al. 2021 trained the decoder this way on code
without intents). The code comes from the corpus's own code side, every source and both
languages, each distinct (language, code) once; it is the slot-canonical code the decoder
learns to write anyway, and its clean form must fit the source budget (max_src_len), so a
source is never cut.

Noise, on token ids (no re-tokenization): spans of code pieces (geometric lengths, mean
`denoise_span`) covering `denoise_mask` of the pieces are each replaced by one sentinel,
and every other piece is deleted with probability `denoise_drop`. The sentinel is the
tokenizer's <unk> id: with byte fallback the tokenizer never produces it for real text, so it
marks a gap and nothing else, and every existing tokenizer has it.

Per epoch, `round(denoise_ratio * weighted pairs)` examples (the pairs counted after their
source weights) are drawn as a window over the codes in a seeded order, so successive epochs
cover different code, and each gets fresh noise. Codes and noise are a pure function of
(seed, epoch): a resumed run, or every rank under torchrun, sees the same examples.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from nl2code.batches import Encoded, source_weight
from nl2code.config import TrainConfig
from nl2code.data.records import Example
from nl2code.languages import UNK

SENTINEL = UNK  # one masked span in a corrupted source
SOURCE = "denoise"  # the source name of the denoising examples (weight 1: the ratio sets their share)


def corrupt(ids: list[int], rng: random.Random, mask: float, span: float, drop: float) -> list[int]:
    """A corrupted copy of ids: masked spans -> one SENTINEL each, other pieces dropped with
    probability drop. At least one piece is always masked, so the copy always differs."""
    n = len(ids)
    if n == 0:
        return [SENTINEL]
    hidden = [False] * n
    target = min(n, max(1, round(mask * n)))
    count = 0
    stop = 1.0 / span
    while count < target:
        length = 1 if span <= 1 else 1 + int(math.log(1.0 - rng.random()) / math.log(1.0 - stop))
        start = rng.randrange(n)
        for i in range(start, min(n, start + length)):
            if count >= target:
                break
            if not hidden[i]:
                hidden[i] = True
                count += 1
    out: list[int] = []
    prev = False
    for tok, h in zip(ids, hidden):
        if h:
            if not prev:
                out.append(SENTINEL)
        elif not (drop and rng.random() < drop):
            out.append(tok)
        prev = h
    return out


@dataclass
class Denoiser:
    """The denoising examples of a run: `items` join the training data, and `refresh(epoch)`
    fills them with that epoch's codes and noise (before the epoch's batches are built)."""

    cfg: TrainConfig
    codes: list[tuple[int, list[int], Example]]  # (language tag id, clean target ids + EOS, example)
    items: list[Encoded] = field(default_factory=list)

    def refresh(self, epoch: int) -> None:
        cfg = self.cfg
        rng = random.Random(f"{SOURCE}/{cfg.seed}/{epoch}")
        start = epoch * len(self.items)
        for j, item in enumerate(self.items):
            lang_id, tgt, example = self.codes[(start + j) % len(self.codes)]
            item.src = [lang_id] + corrupt(tgt[:-1], rng, cfg.denoise_mask, cfg.denoise_span, cfg.denoise_drop)
            item.tgt = tgt
            item.example = example


def build(pairs: list[Encoded], lang_ids: dict[str, int], cfg: TrainConfig,
          weights: dict[str, float]) -> Denoiser | None:
    """The denoising examples for encoded NL -> code pairs, or None when the run has none
    (denoise_ratio 0, or no code that fits the source budget). cfg carries the run's length
    limits (max_src_len already cut to the model's max_len)."""
    if cfg.denoise_ratio <= 0:
        return None
    examples = {lang: Example("", "", lang, SOURCE) for lang in lang_ids}
    seen: set[tuple[str, tuple[int, ...]]] = set()
    codes = []
    for e in pairs:
        lang = e.example.lang
        if len(e.tgt) > cfg.max_src_len or lang not in lang_ids:
            continue  # tag + clean code (no EOS) must fit: a cut source would teach invention
        key = (lang, tuple(e.tgt))
        if key not in seen:
            seen.add(key)
            codes.append((lang_ids[lang], e.tgt, examples[lang]))
    weighted = sum(source_weight(weights, e.source) for e in pairs)
    n = round(cfg.denoise_ratio * weighted)
    if not codes or n < 1:
        return None
    random.Random(f"{SOURCE}/{cfg.seed}").shuffle(codes)
    items = [Encoded([], [], SOURCE, codes[0][2]) for _ in range(n)]
    return Denoiser(cfg, codes, items)
