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
# tokens (sources + targets) up to which teacher forcing packs its rows: packed attention
# costs ~2 * n * d_model per token and layer, padded ~2 * row length * d_model; at 512 the
# extra is a third of a d256 layer's Linear work. Reranking's passes total ~100 tokens at
# the median and ~370 at the 99th percentile (16 of 5,150 passes over the dev sets exceed 512)
PACK_MAX_TOKENS = 512


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

    A Transformer scores the pairs packed into one sequence (Transformer.packed_states):
    no work on padding, and when every pair has the same source (the forward model scoring
    retrieved code for one intent) the encoder runs once for all of them. Packed attention
    grows with the square of the whole sequence, so past PACK_MAX_TOKENS (rarely, for
    reranking's short rows) the rows are padded instead."""
    import torch
    import torch.nn.functional as F

    from nl2code.tokenizer import BOS, PAD

    tins = [[BOS] + t[:-1] for t in tgts]
    shared = all(s == srcs[0] for s in srcs[1:])
    packed = sum(map(len, srcs[:1] if shared else srcs)) + sum(map(len, tgts))
    with torch.inference_mode():
        if hasattr(module, "packed_states") and packed <= PACK_MAX_TOKENS:
            logits = module.logits(module.packed_states(srcs[:1] if shared else srcs, tins)).float()
            lens = torch.tensor([len(t) for t in tgts])
            rows = torch.repeat_interleave(torch.arange(len(tgts)), lens)
            gold = torch.tensor([i for t in tgts for i in t])
            nll = torch.zeros(len(tgts)).index_add_(0, rows, F.cross_entropy(logits, gold, reduction="none"))
        else:  # the GRU, or long rows: padded rows, padding ignored
            S, T = max(len(s) for s in srcs), max(len(t) for t in tgts)
            src = torch.full((len(srcs), S), PAD, dtype=torch.long)
            tin = torch.full((len(tgts), T), PAD, dtype=torch.long)
            tout = torch.full((len(tgts), T), PAD, dtype=torch.long)
            for i, (s, ti, t) in enumerate(zip(srcs, tins, tgts)):
                src[i, : len(s)] = torch.tensor(s)
                tin[i, : len(t)] = torch.tensor(ti)
                tout[i, : len(t)] = torch.tensor(t)
            logits = module(src, src != PAD, tin).float()
            # rows of logits, not (B, V, T): the transposed layout takes cross_entropy's slow path (~3x)
            nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD,
                                  reduction="none").view(tout.shape).sum(1)
    return [(-float(v), len(t)) for v, t in zip(nll, tgts)]


NO_REPEAT_NGRAM = 3  # an explanation never repeats a 3-gram of itself


class _NoRepeat:
    """The decode protocol around a model whose steps never offer a token that would repeat
    an n-gram already in that row (the usual guard of summarisation decoding): a weak
    reverse model otherwise loops ("... 1, 1, 1, 1, ..."). Each row's tokens ride in the
    cache, so beam reordering keeps them with their hypothesis."""

    BANNED = -1e4  # added to a banned token's logit: far below any live choice, still finite

    def __init__(self, model, n: int):
        self.model, self.n = model, n

    def encode(self, src, src_mask):
        return self.model.encode(src, src_mask)

    def expand_memory(self, memory, idx):
        return self.model.expand_memory(memory, idx)

    def step(self, tgt_ids, memory, cache):
        inner, rows = (None, [[] for _ in range(tgt_ids.shape[0])]) if cache is None else cache
        rows = [h + t for h, t in zip(rows, tgt_ids.tolist())]
        logits, inner = self.model.step(tgt_ids, memory, inner)
        k, own = self.n - 1, False
        for r, h in enumerate(rows):
            last = h[len(h) - k:]
            banned = [h[i + k] for i in range(len(h) - k) if h[i:i + k] == last]
            if banned:
                if not own:  # never write into the model's own tensor
                    logits, own = logits.clone(), True
                logits[r, banned] += self.BANNED
        return logits, (inner, rows)

    def reorder_cache(self, cache, beam_idx):
        inner, rows = cache
        return self.model.reorder_cache(inner, beam_idx), [rows[i] for i in beam_idx.tolist()]


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
        hyps = decode(_NoRepeat(self.model, NO_REPEAT_NGRAM), src, src != PAD, cfg)[0]
        out: list[str] = []
        for h in hyps:
            text = " ".join(self.tok.decode(h.ids).split())
            if text and text not in out:
                out.append(text)
        return out[:n]
