"""The reverse model (code -> intent): reconstruction scores for reranking, and `explain`.

A model folder may carry a second model, trained by the same trainer with `task = "explain"`
and the same tokenizer: `explain.safetensors` + `explain.json`, covered by the folder's
manifest like the main weights. Reranking uses log P(intent | code) per intent token
(reconstruction reranking, Yin & Neubig 2019): a candidate that explains the intent well
is more likely to do what was asked. `nl2code explain CODE` decodes an intent from code.

Both sides are slot-canonical, as in training: the intent's quoted values and backticked
names are placeholders, and the candidate's code uses the same placeholders.
"""

from __future__ import annotations

import json
from pathlib import Path

from nl2code.config import DecodeConfig, to_dict
from nl2code.errors import CheckpointError, UsageError

EXPLAIN_WEIGHTS = "explain.safetensors"
EXPLAIN_CONFIG = "explain.json"
MAX_CODE_CHARS = 20_000


def has_explainer(folder: Path) -> bool:
    return (Path(folder) / EXPLAIN_WEIGHTS).is_file() and (Path(folder) / EXPLAIN_CONFIG).is_file()


def attach(main_tokenizer: bytes, src_model_folder: Path) -> dict[str, bytes]:
    """The files that carry the reverse model at src_model_folder into a model folder whose
    tokenizer is main_tokenizer (the reverse model must use it: train it from the main model)."""
    import torch
    from safetensors.torch import save

    from nl2code.checkpoint import load_model

    model, cfg, tok, meta = load_model(src_model_folder)
    if tok.proto != main_tokenizer:
        raise UsageError(f"{src_model_folder}: its tokenizer is not the main model's; train it with "
                         "init_from the main model or tokenizer = its tokenizer.model")
    if meta.get("task") != "explain":
        raise UsageError(f"{src_model_folder} is not a reverse (task = \"explain\") model")
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    config = {"model": {**to_dict(cfg), "weights_dtype": "float16"},
              "meta": {k: meta[k] for k in ("task", "step", "dev_bleu", "corpus_size") if k in meta}}
    return {EXPLAIN_WEIGHTS: save(state), EXPLAIN_CONFIG: json.dumps(config, indent=2).encode()}


def teacher_forced_logprobs(module, srcs: list[list[int]], tgts: list[list[int]]) -> list[tuple[float, int]]:
    """(sum log P(tgt | src), len(tgt)) for each pair, one batched forward pass of a
    training-form model. Targets end with EOS.

    When every pair has the same source (the forward model scoring retrieved code for one
    intent) the encoder runs once and its memory is shared by the rows: the same numbers as
    encoding identical rows (row-wise maths; a dynamic int8 matmul's input scale is the
    same for one row as for copies of it), for a fraction of the encoder's cost. Only the
    target positions are projected onto the vocabulary (not the padding), the largest
    matmul of the pass."""
    import torch
    import torch.nn.functional as F

    from nl2code.tokenizer import BOS, PAD

    states = hasattr(module, "decode_states")
    shared = len(srcs) > 1 and all(s == srcs[0] for s in srcs[1:]) and states
    rows = srcs[:1] if shared else srcs
    S, T = max(len(s) for s in rows), max(len(t) for t in tgts)
    src = torch.full((len(rows), S), PAD, dtype=torch.long)
    tin = torch.full((len(tgts), T), PAD, dtype=torch.long)
    tout = torch.full((len(tgts), T), PAD, dtype=torch.long)
    for i, s in enumerate(rows):
        src[i, : len(s)] = torch.tensor(s)
    for i, t in enumerate(tgts):
        tin[i, : len(t)] = torch.tensor([BOS] + t[:-1])
        tout[i, : len(t)] = torch.tensor(t)
    with torch.inference_mode():
        if states:
            mem = module.encode(src, src != PAD)
            if shared:  # encoded once, one memory row per target
                mem = module.expand_memory(mem, torch.zeros(len(tgts), dtype=torch.long))
            keep = tout != PAD
            logits = module.logits(module.decode_states(mem, tin)[keep]).float()  # (positions, vocab)
            nll = torch.zeros(len(tgts), dtype=torch.float32).index_add_(
                0, keep.nonzero()[:, 0], F.cross_entropy(logits, tout[keep], reduction="none"))
        else:  # a model without decode_states (the GRU): every position, padding ignored
            logits = module(src, src != PAD, tin).float()
            # rows of logits, not (B, V, T): the transposed layout takes cross_entropy's slow path (~3x)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD,
                                  reduction="none").view(tout.shape).sum(1)
    return [(-float(v), len(t)) for v, t in zip(nll, tgts)]


class Explainer:
    """The reverse model, loaded from a verified model folder (the caller verified it)."""

    def __init__(self, folder: Path, tokenizer):
        from nl2code.checkpoint import _parse_config, _read_member, model_from_weights

        folder = Path(folder)
        cfg, _ = _parse_config(_read_member(folder, EXPLAIN_CONFIG), folder / EXPLAIN_CONFIG)
        if cfg.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(f"{folder / EXPLAIN_CONFIG}: vocabulary {cfg.vocab_size} is not the tokenizer's")
        self.model = model_from_weights(cfg, _read_member(folder, EXPLAIN_WEIGHTS), folder / EXPLAIN_WEIGHTS)
        self.cfg, self.tok = cfg, tokenizer

    def scores(self, intent_canon: str, codes_canon: list[str], lang: str) -> list[float]:
        """log P(intent | code) per intent token, for each code (same order)."""
        from nl2code.tokenizer import EOS

        if not codes_canon:
            return []
        L = self.cfg.max_len
        tgt = (self.tok.encode(intent_canon) + [EOS])[: L - 1]
        srcs = [self.tok.encode_source(c[:MAX_CODE_CHARS], lang)[:L] for c in codes_canon]
        return [lp / n for lp, n in teacher_forced_logprobs(self.model, srcs, [tgt] * len(srcs))]

    def explain(self, code: str, lang: str, n: int = 1, beam: int = 5) -> list[str]:
        """Intents for code, best first (slot placeholders restored to the code's values)."""
        import torch

        from nl2code.decode import decode
        from nl2code.tokenizer import PAD

        ids = self.tok.encode_source(code[:MAX_CODE_CHARS], lang)[: self.cfg.max_len]
        src = torch.tensor([ids])
        cfg = DecodeConfig(strategy="beam", beam_size=max(beam, n), n_best=max(beam, n),
                           max_len=min(64, self.cfg.max_len - 1))
        hyps = decode(self.model, src, src != PAD, cfg)[0]
        out: list[str] = []
        for h in hyps:
            text = " ".join(self.tok.decode(h.ids).split())
            if text and text not in out:
                out.append(text)
        return out[:n]
