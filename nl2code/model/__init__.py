"""Models behind one protocol used by decode.py.

    encode(src_ids, src_mask) -> memory
    step(tgt_ids, memory, cache) -> (logits, cache)      # tgt_ids: (B, 1), the last token
    reorder_cache(cache, beam_idx) -> cache
    expand_memory(memory, beam_idx) -> memory

and `forward(src, src_mask, tgt_in) -> logits` for teacher-forced training.

`for_inference` wraps a trained model for decoding: the transformer gets its fast
inference form (nl2code/model/fast.py), optionally with int8 weights.
"""

from __future__ import annotations

import os

from nl2code.config import ModelConfig
from nl2code.errors import UsageError


def build_model(cfg: ModelConfig):
    if cfg.arch == "transformer":
        from nl2code.model.transformer import Transformer

        return Transformer(cfg)
    if cfg.arch == "rnn":
        from nl2code.model.rnn import GRUSeq2Seq

        return GRUSeq2Seq(cfg)
    raise UsageError(f"unknown architecture {cfg.arch!r}: use transformer or rnn")


PRECISIONS = ("float32", "int8")  # what the inference form computes in (nl2code/model/fast.py)


def resolve_precision(precision: str | None = None) -> str:
    """Explicit value, else NL2CODE_PRECISION, else auto: int8 where PyTorch can run it."""
    value = (precision or os.environ.get("NL2CODE_PRECISION") or "auto").strip().lower()
    if value != "auto" and value not in PRECISIONS:
        raise UsageError(f"unknown precision {value!r}: use auto, {', '.join(reversed(PRECISIONS))}")
    if value == "auto":
        from nl2code.model.fast import available_precisions

        return available_precisions()[-1]
    return value


def precision_for(arch: str, precision: str | None = None) -> str:
    """The precision a model of this architecture runs at: only the transformer has an int8
    form; for it, resolve_precision(precision)."""
    value = resolve_precision(precision)  # a bad value is refused for every architecture
    return value if arch == "transformer" else "float32"


def for_inference(model, precision: str | None = None):
    """-> (decoding model, precision it runs at)."""
    value = precision_for(model.cfg.arch, precision)
    if model.cfg.arch != "transformer":
        return model, value
    from nl2code.model.fast import FastTransformer

    return FastTransformer(model, value), value
