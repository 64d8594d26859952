"""What a model folder's auxiliary files add to generation: retrieved candidates, the
reverse model's reconstruction score and the API check.

- Retrieved candidates: the training pairs nearest to the intent (nl2code.retrieval); their
  code, slot-adapted (a pair `sort list `xs`` -> `xs.sort()` answers `sort list `ys`` with
  `ys.sort()`), joins the candidate pool. The forward model scores it by teacher forcing,
  so every candidate has a model log-probability.
- Reconstruction: log P(intent | code) per intent token from the reverse model.
- API problems: names a candidate uses that its modules do not have (nl2code.apicheck).

Each part is loaded on first use and only if the folder carries its file; a folder without
them generates as before.
"""

from __future__ import annotations

import threading
from pathlib import Path


RETRIEVE_K = 3


class Augmenter:
    def __init__(self, folder: Path, tokenizer, module, max_len: int, precision: str = "float32"):
        self.folder = Path(folder)
        self.tok = tokenizer
        self.precision = precision
        # the training-form model, for teacher-forced scores (int8 Linear layers at int8)
        self.module = _int8(module) if precision == "int8" else module
        self.max_len = max_len
        self._lock = threading.Lock()
        self._loaded: dict[str, object] = {}

    def _get(self, name: str):
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    def _load(self, name: str):
        if name == "index":
            from nl2code.retrieval import INDEX_FILE, Index

            f = self.folder / INDEX_FILE
            return Index(f) if f.is_file() else None
        if name == "api":
            from nl2code.apicheck import API_FILE, ApiTable

            f = self.folder / API_FILE
            return ApiTable.load(f) if f.is_file() else None
        if name == "explainer":
            from nl2code.explain import Explainer, has_explainer

            if not has_explainer(self.folder):
                return None
            ex = Explainer(self.folder, self.tok)
            if self.precision == "int8":
                ex.model = _int8(ex.model)
            return ex
        raise KeyError(name)

    @property
    def index(self):
        return self._get("index")

    @property
    def api(self):
        return self._get("api")

    @property
    def explainer(self):
        return self._get("explainer")

    def parts(self) -> dict[str, bool]:
        from nl2code.apicheck import API_FILE
        from nl2code.explain import has_explainer
        from nl2code.retrieval import INDEX_FILE

        return {"retrieval": (self.folder / INDEX_FILE).is_file(), "explain": has_explainer(self.folder),
                "api_check": (self.folder / API_FILE).is_file()}

    # -- retrieval ------------------------------------------------------------------------
    def retrieved(self, intent: str, slot_list: list, lang: str, k: int = RETRIEVE_K) -> list[tuple]:
        """[(code, canonical code, similarity, hit)] for the nearest training pairs."""
        index = self.index
        if index is None or k < 1:
            return []
        from nl2code.context import adapt

        out = []
        for hit in index.search(intent, lang, k):
            code, canon = adapt(intent, slot_list, hit, lang)
            out.append((code, canon, hit.similarity, hit))
        return out

    def forced_logprobs(self, src_ids: list[int], canon_codes: list[str]) -> list[tuple[float, int]]:
        """(sum log P(code | intent), tokens incl. EOS) for each code, teacher-forced."""
        from nl2code.explain import teacher_forced_logprobs
        from nl2code.tokenizer import EOS

        if not canon_codes:
            return []
        tgts = [(self.tok.encode(c) + [EOS])[: self.max_len - 1] for c in canon_codes]
        return teacher_forced_logprobs(self.module, [src_ids] * len(tgts), tgts)

    # -- reverse model and API check ----------------------------------------------------------
    def reconstruction(self, canon_intent: str, canon_codes: list[str], lang: str) -> list[float] | None:
        ex = self.explainer
        if ex is None or not canon_codes:
            return None
        return ex.scores(canon_intent, canon_codes, lang)

    def api_problems(self, code: str, lang: str) -> list[str]:
        api = self.api
        return api.problems(code, lang) if api is not None else []


def _int8(module):
    """A copy whose Linear layers run fbgemm's dynamic int8 kernels (teacher-forced scoring
    of a few sequences: ~1.8x faster here), and whose output projection (the tied embedding,
    not a Linear: the pass's largest matmul) runs them too, with per-channel weights as in
    the decoding form; the module itself if PyTorch cannot."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
            q = torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8)
            if hasattr(q, "embed") and hasattr(q, "dec_ln") and hasattr(q, "packed_states"):
                from nl2code.model.fast import _linear

                proj, norm = _linear(q.embed.weight, None, "int8"), q.dec_ln

                def logits(h):
                    x = norm(h)
                    return proj(x.reshape(-1, x.shape[-1])).view(*x.shape[:-1], -1)

                q.logits = logits
            return q
    except Exception:  # no fbgemm/qnnpack engine here: score in float32
        return module
