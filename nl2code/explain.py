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

from nl2code.config import DecodeConfig, ModelConfig, from_dict
from nl2code.errors import CheckpointError, UsageError

EXPLAIN_WEIGHTS = "explain.safetensors"
EXPLAIN_CONFIG = "explain.json"
MAX_CODE_CHARS = 20_000


def has_explainer(folder: Path) -> bool:
    return (Path(folder) / EXPLAIN_WEIGHTS).is_file() and (Path(folder) / EXPLAIN_CONFIG).is_file()


def attach(folder: Path, src_model_folder: Path) -> dict[str, bytes]:
    """The files that carry the reverse model at src_model_folder into another folder.

    Its tokenizer must be the main model's (the reverse model was trained from it)."""
    import torch
    from safetensors.torch import save

    from nl2code.checkpoint import load_model

    model, cfg, tok, meta = load_model(src_model_folder)
    main_tok = (Path(folder) / "tokenizer.model").read_bytes()
    if tok.proto != main_tok:
        raise UsageError(f"{src_model_folder}: its tokenizer is not the main model's; train it with "
                         "init_from the main model or tokenizer = its tokenizer.model")
    if meta.get("task") != "explain":
        raise UsageError(f"{src_model_folder} is not a reverse (task = \"explain\") model")
    state = {k: v.detach().to(torch.float16).contiguous() if v.is_floating_point() else v.contiguous()
             for k, v in model.state_dict().items()}
    config = {"model": {**cfg.__dict__, "weights_dtype": "float16"},
              "meta": {k: meta[k] for k in ("task", "step", "dev_bleu", "corpus_size") if k in meta}}
    return {EXPLAIN_WEIGHTS: save(state), EXPLAIN_CONFIG: json.dumps(config, indent=2).encode()}


class Explainer:
    """The reverse model, loaded from a verified model folder (the caller verified it)."""

    def __init__(self, folder: Path, tokenizer):
        import torch
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        from nl2code.model import build_model

        folder = Path(folder)
        try:
            raw = json.loads((folder / EXPLAIN_CONFIG).read_text(encoding="utf-8"))
            cfg = from_dict(ModelConfig, raw["model"])
        except (OSError, ValueError, KeyError, TypeError, UsageError) as exc:
            raise CheckpointError(f"{folder / EXPLAIN_CONFIG} is not a valid reverse-model config: {exc}") from None
        if cfg.vocab_size != tokenizer.vocab_size:
            raise CheckpointError(f"{folder / EXPLAIN_CONFIG}: vocabulary {cfg.vocab_size} is not the tokenizer's")
        try:
            state = load_file(str(folder / EXPLAIN_WEIGHTS))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{folder / EXPLAIN_WEIGHTS} is not valid safetensors: {exc}") from None
        state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
        model = build_model(cfg)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{folder / EXPLAIN_WEIGHTS} does not fit its config: "
                                  f"{str(exc).splitlines()[0]}") from None
        model.eval()
        self.model, self.cfg, self.tok = model, cfg, tokenizer

    def scores(self, intent_canon: str, codes_canon: list[str], lang: str) -> list[float]:
        """log P(intent | code) per intent token, for each code (same order)."""
        import torch
        import torch.nn.functional as F

        from nl2code.tokenizer import BOS, EOS, PAD

        if not codes_canon:
            return []
        L = self.cfg.max_len
        tgt = (self.tok.encode(intent_canon) + [EOS])[: L - 1]
        srcs = [self.tok.encode_source(c[:MAX_CODE_CHARS], lang)[:L] for c in codes_canon]
        S = max(len(s) for s in srcs)
        src = torch.full((len(srcs), S), PAD, dtype=torch.long)
        for i, s in enumerate(srcs):
            src[i, : len(s)] = torch.tensor(s)
        tin = torch.tensor([[BOS] + tgt[:-1]] * len(srcs))
        tout = torch.tensor([tgt] * len(srcs))
        with torch.inference_mode():
            logits = self.model(src, src != PAD, tin).float()
            lp = -F.cross_entropy(logits.transpose(1, 2), tout, reduction="none").sum(1)
        return (lp / len(tgt)).tolist()

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
