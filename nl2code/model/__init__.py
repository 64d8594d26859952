"""Models behind one protocol used by decode.py.

    encode(src_ids, src_mask) -> memory
    step(tgt_ids, memory, cache) -> (logits, cache)      # tgt_ids: (B, 1), the last token
    reorder_cache(cache, beam_idx) -> cache
    expand_memory(memory, beam_idx) -> memory

and `forward(src, src_mask, tgt_in) -> logits` for teacher-forced training.
"""

from __future__ import annotations

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
