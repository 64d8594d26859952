"""Training data as the model sees it: encoded examples, deterministic batches, the lr schedule.

The data order is a pure function of (seed, epoch), so a resumed run continues exactly as an
uninterrupted one would. Source and target tokens are budgeted separately per batch.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Callable

import torch

from nl2code import slots
from nl2code.config import ModelConfig, TrainConfig
from nl2code.data.records import Example
from nl2code.languages import BOS, EOS, PAD
from nl2code.tokenizer import Tokenizer


@dataclass
class Encoded:
    src: list[int]
    tgt: list[int]  # code ids + EOS
    source: str
    example: Example


_POOL_STATE: tuple | None = None  # (tokenizer, config) inherited by forked encode workers


def _encode_chunk(chunk: list[Example]) -> list[Encoded]:
    tok, cfg, model_cfg = _POOL_STATE
    return _encode_serial(chunk, tok, cfg, model_cfg)


def encode_examples(examples: list[Example], tok: Tokenizer, cfg: TrainConfig,
                    model_cfg: ModelConfig | None = None) -> list[Encoded]:
    """Encode a corpus; large ones in forked worker processes (same result, in order).
    model_cfg.context_k > 0: each example's retrieved context joins its source."""
    global _POOL_STATE
    workers = min(os.cpu_count() or 1, 16)
    if len(examples) < 50_000 or workers < 4 or "fork" not in __import__("multiprocessing").get_all_start_methods():
        return _encode_serial(examples, tok, cfg, model_cfg)
    import multiprocessing

    size = -(-len(examples) // (workers * 4))
    chunks = [examples[i : i + size] for i in range(0, len(examples), size)]
    _POOL_STATE = (tok, cfg, model_cfg)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_encode_chunk, chunks)
    finally:
        _POOL_STATE = None
    return [e for part in parts for e in part]


def _encode_serial(examples: list[Example], tok: Tokenizer, cfg: TrainConfig,
                   model_cfg: ModelConfig | None = None) -> list[Encoded]:
    """task "code": intent -> code; task "explain" (the reverse model): code -> intent.

    Both sides are slot-canonical, so the reverse model scores (intent, code) pairs in the
    same form the forward model produced them."""
    from nl2code.context import source_ids

    out = []
    explain = cfg.task == "explain"
    k = model_cfg.context_k if model_cfg is not None and not explain else 0
    for ex in examples:
        intent, code, _ = slots.canonicalize_pair(ex.intent, ex.code)
        if explain:
            intent, code = code, intent
        src = tok.encode_source(intent, ex.lang)[: cfg.max_src_len]
        if k:
            src = source_ids(tok, src, list(ex.context), ex.lang, k, model_cfg.context_tokens, model_cfg.max_len)
        tgt = tok.encode(code) + [EOS]
        if len(tgt) > cfg.max_tgt_len or len(tgt) < 2:
            continue  # cut code would teach the model to stop mid-statement
        out.append(Encoded(src, tgt, ex.source, ex))
    return out


def tokenizer_texts(examples: list[Example]) -> list[str]:
    texts = []
    for ex in examples:
        intent, code, _ = slots.canonicalize_pair(ex.intent, ex.code)
        texts.append(intent)
        texts.append(code)
    return texts


def source_weight(weights: dict[str, float], source: str) -> float:
    if source in weights:
        return weights[source]
    return weights.get(source.split("-")[0], 1.0)


def epoch_batches(data: list[Encoded], cfg: TrainConfig, weights: dict[str, float], epoch: int,
                  should_stop: Callable[[], bool] | None = None) -> list[list[int]]:
    """Deterministic batches for an epoch: weighted upsampling, length buckets, shuffle.

    Source and target tokens are budgeted separately (long API-doc intents would otherwise
    make target batches tiny). should_stop is polled between chunks (a signal arrived): the
    batches built so far are returned and the caller stops.
    """
    rng = random.Random(cfg.seed * 1_000_003 + epoch)
    idx: list[int] = []
    for i, e in enumerate(data):
        w = source_weight(weights, e.source)
        copies = int(w) + (1 if rng.random() < w - int(w) else 0)
        idx.extend([i] * copies)
    rng.shuffle(idx)
    # sort within large chunks by target length so batches have little padding
    chunk = 100 * 64
    batches = []
    for c in range(0, len(idx), chunk):
        if should_stop is not None and should_stop():
            return batches
        part = sorted(idx[c : c + chunk], key=lambda i: (len(data[i].tgt), len(data[i].src)))
        cur: list[int] = []
        ms = mt = 0
        for i in part:
            s, t = len(data[i].src), len(data[i].tgt)
            if cur and (max(ms, s) * (len(cur) + 1) > cfg.batch_tokens or max(mt, t) * (len(cur) + 1) > cfg.batch_tokens):
                batches.append(cur)
                cur, ms, mt = [], 0, 0
            cur.append(i)
            ms, mt = max(ms, s), max(mt, t)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(items: list[Encoded]) -> tuple[torch.Tensor, ...]:
    S = max(len(e.src) for e in items)
    T = max(len(e.tgt) for e in items)
    src = torch.full((len(items), S), PAD, dtype=torch.long)
    tgt = torch.full((len(items), T + 1), PAD, dtype=torch.long)
    for r, e in enumerate(items):
        src[r, : len(e.src)] = torch.tensor(e.src)
        tgt[r, 0] = BOS
        tgt[r, 1 : len(e.tgt) + 1] = torch.tensor(e.tgt)
    return src, src != PAD, tgt[:, :-1], tgt[:, 1:]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then inverse-square-root decay (Vaswani et al. 2017)."""
    step = max(step, 1)
    return cfg.lr * min(step / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / step))
