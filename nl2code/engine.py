"""Generator: load a checkpoint once, then intent -> ranked candidates that parse.

    intent -> slots.canonicalize -> tokenizer -> model.encode -> decode (beam/greedy/sample)
           -> detokenise -> slots.restore -> syntax.check -> rerank -> [Candidate]

Two verbs, each with a batch form: candidates() is every scored candidate, parsing or not,
with the model's own top-1 (eval, --explain, rerank fitting); generate() is what a user is
shown: up to n that parse, best first, or NoParseableCandidate. The engine owns the n -> beam
rule (decode_config). Every front door (CLI, language server, server, eval) calls these and
nothing else. Same input and model give the same output; calls are serialised with a lock,
so one Generator can be shared by the language server's worker threads.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

from nl2code import slots
from nl2code.budget import CostMeter, Deadline
from nl2code.config import DecodeConfig, inference_threads
from nl2code.errors import NoParseableCandidate, UsageError
from nl2code.languages import REGISTRY, canonical_lang
from nl2code.paths import resolve_model
from nl2code.repair import bracket_variants
from nl2code.rerank import Candidate, RerankConfig, features, mark_confidence, rerank, score
from nl2code.safety import asked_for

MAX_INTENT_CHARS = 10_000
BATCH_WIDTH = 16  # intents a float32 model decodes together (Generator.batch_width)
DEFAULT_BEAM = 5  # beam width when a caller names none (widened to n: Generator.decode_config)
# candidates the reverse model scores per intent: the best by every other feature. Its pass
# costs in proportion to them (~2-3 ms each on this machine); a sixth, seventh or eighth
# candidate almost never wins (benchmarks/latency_breakdown.md, "Session 6", item 3, and
# "Session 7")
RECON_ROWS = 5


def clean_intent(intent: str) -> str:
    """Strip control characters and surrounding space; reject empty or huge intents."""
    if not isinstance(intent, str):
        raise UsageError("the intent must be text")
    if len(intent) > MAX_INTENT_CHARS:
        raise UsageError(f"intent too long ({len(intent):,} characters; the limit is {MAX_INTENT_CHARS:,})")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in intent)
    text = " ".join(text.split())
    if not text:
        raise UsageError("empty intent: say what the code should do, e.g. nl2code \"read csv file 'a.csv'\"")
    return text


def _fitted_rerank(meta: dict[str, Any]) -> dict[str, RerankConfig]:
    """{lang: RerankConfig} from a model's meta "rerank" (benchmarks/rerank_fit.py); a bad
    entry is refused when the model loads, not half-used."""
    from nl2code.config import from_dict
    from nl2code.errors import CheckpointError

    raw = meta.get("rerank") or {}
    if not isinstance(raw, dict):
        raise CheckpointError("the model's rerank weights (meta \"rerank\") are not a table")
    out = {}
    for lang, weights in raw.items():
        try:
            out[lang] = from_dict(RerankConfig, weights)
        except (UsageError, TypeError) as exc:
            raise CheckpointError(f"the model's rerank weights for {lang} are invalid: {exc}") from None
        bound = out[lang].low_confidence
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                  or not math.isfinite(bound)):
            raise CheckpointError(f"the model's low-confidence bound for {lang} is not a finite number: {bound!r}")
    return out


@dataclasses.dataclass
class Candidates:
    """Every scored candidate for one intent (Generator.candidates)."""

    intent: str  # the intent as cleaned (clean_intent)
    lang: str
    ranked: list[Candidate]  # parsing candidates best first, then the others

    @property
    def parsing(self) -> list[Candidate]:
        return [c for c in self.ranked if c.parses]

    @property
    def top1(self) -> Candidate | None:
        """The model's own top-1: the best length-normalised log-probability, before the
        parse filter and reranking (repaired variants are not the model's)."""
        own = [c for c in self.ranked if not c.features.get("repaired")]
        return max(own, key=lambda c: c.features["norm_logprob"], default=None)

    def best(self, n: int) -> list[Candidate]:
        """Up to n parsing candidates, best first ([] when none parses)."""
        return self.parsing[:n]

    def answer(self, n: int) -> list[Candidate]:
        """best(n), or NoParseableCandidate when none parses: what generate() returns."""
        out = self.best(n)
        if not out:
            raise NoParseableCandidate(f"no parseable {self.lang} candidate among {len(self.ranked)} for this "
                                       f"intent; try rephrasing it or a larger --beam")
        return out


class Generator:
    def __init__(self, model, model_cfg, tokenizer, meta: dict[str, Any], path: Path,
                 rerank_cfg: RerankConfig | None = None, precision: str = "float32"):
        self.model = model  # anything with the decode protocol (see nl2code/model)
        self.precision = precision
        self.model_cfg = model_cfg
        self.tok = tokenizer
        self.meta = meta
        self.path = Path(path)
        self.rerank_cfg = rerank_cfg or RerankConfig()
        # weights fitted on dev data for this model, per language (config.json meta "rerank")
        self.rerank_cfgs = {} if rerank_cfg is not None else _fitted_rerank(meta)
        self._lock = threading.Lock()
        self.languages = list(meta.get("languages") or ["python", "bash"])
        self.augment = None  # retrieval, reverse model, API table: set when the folder has them
        self.clock = time.perf_counter  # the clock of latency budgets (tests inject their own)
        self.augment_cost = CostMeter(0.04, lambda: self.clock())  # seconds the extras take
        self.last_deadline = None  # the last call's Deadline: what its budget cut (notes)
        # experiments (benchmarks/rerank_fit.py): retrieved snippets per intent and rows the
        # reverse model scores; None: the shipped RETRIEVE_K / RECON_ROWS
        self.retrieve_k: int | None = None
        self.recon_rows: int | None = None

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, threads: int | None = None,
                        precision: str | None = None) -> "Generator":
        """Load a model folder; None means NL2CODE_MODEL or the bundled default model.

        precision: int8, float32 or auto (None: NL2CODE_PRECISION, else auto = int8 where
        PyTorch has its fbgemm kernels). The weights on disk stay float32.
        """
        import torch

        from nl2code.checkpoint import load_model
        from nl2code.model import for_inference, resolve_precision

        precision = resolve_precision(precision)  # a bad value fails before the model loads
        # threads: the argument, else NL2CODE_THREADS, else 1 (benchmarks/threads.md)
        torch.set_num_threads(inference_threads(threads))
        path = resolve_model(path)  # a folder, a user's model name, or None: the default
        model, cfg, tok, meta = load_model(path)
        runner, precision = for_inference(model, precision)
        gen = cls(runner, cfg, tok, meta, path, precision=precision)
        from nl2code.augment import Augmenter

        gen.augment = Augmenter(path, tok, model, cfg.max_len, precision)
        return gen

    def rerank_for(self, lang: str) -> RerankConfig:
        return self.rerank_cfgs.get(lang, self.rerank_cfg)

    @property
    def batch_width(self) -> int:
        """How many intents candidates_batch decodes together: int8 decodes one at a time
        (see candidates_batch), float32 a group."""
        return 1 if self.precision == "int8" else BATCH_WIDTH

    def decode_config(self, n: int = 1, beam: int | None = None,
                      config: DecodeConfig | None = None, max_latency_ms: int = 0) -> DecodeConfig:
        """The one n -> beam rule: a beam at least as wide as the answers wanted (beam None:
        DEFAULT_BEAM), every hypothesis kept. An explicit config (greedy, sampling ...) is
        used as given."""
        if n < 1:
            raise UsageError("n must be at least 1")
        if config is None:
            width = max(beam or DEFAULT_BEAM, n)
            config = DecodeConfig(strategy="beam", beam_size=width, n_best=width, max_latency_ms=max_latency_ms)
        elif max_latency_ms:
            config = dataclasses.replace(config, max_latency_ms=max_latency_ms)
        return config.validate()

    def candidates(self, intent: str, lang: str = "python", beam: int | None = None,
                   config: DecodeConfig | None = None, max_latency_ms: int = 0) -> Candidates:
        """Every scored candidate for an intent, parsing or not, and the model's own top-1."""
        return self.candidates_batch([intent], lang, beam, config, max_latency_ms=max_latency_ms)[0]

    def generate(self, intent: str, lang: str = "python", n: int = 5, beam: int | None = None,
                 config: DecodeConfig | None = None, max_latency_ms: int = 0) -> list[Candidate]:
        """Up to n candidates that parse, best first. Raises NoParseableCandidate if none."""
        return self.candidates_batch([intent], lang, beam, config, n=n, max_latency_ms=max_latency_ms)[0].answer(n)

    def generate_batch(self, intents: list[str], lang: str = "python", n: int = 5, beam: int | None = None,
                       config: DecodeConfig | None = None, max_latency_ms: int = 0) -> list[list[Candidate]]:
        """generate() for several intents at once; an intent with nothing that parses gets []."""
        return [c.best(n) for c in self.candidates_batch(intents, lang, beam, config, n=n,
                                                         max_latency_ms=max_latency_ms)]

    def candidates_batch(self, intents: list[str], lang: str = "python", beam: int | None = None,
                         config: DecodeConfig | None = None, n: int = 1,
                         max_latency_ms: int = 0) -> list[Candidates]:
        """candidates() for several intents, decoded together where that gives the same
        answers (float32); n only widens the beam (decode_config). A bad intent or language
        raises UsageError before anything is decoded.

        max_latency_ms > 0 (or config.max_latency_ms): the whole call (all intents) within
        that budget, on self.clock; the reverse-model and retrieval extras are skipped when
        they would not fit (anytime decoding, nl2code.guided)."""
        import torch

        from nl2code.decode import decode
        from nl2code.tokenizer import PAD
        from nl2code.viability import Guide

        lang = canonical_lang(lang, self.languages)  # only the languages this model was trained on
        cfg = self.decode_config(n, beam, config, max_latency_ms)
        deadline = Deadline(cfg.max_latency_ms, self.clock) if cfg.max_latency_ms else None
        self.last_deadline = deadline
        prepared = []
        for intent in intents:
            text = clean_intent(intent)
            canon, slot_list = slots.canonicalize(text)
            src = self.tok.encode_source(canon, lang)[: self.model_cfg.max_len]
            src, retrieved = self._with_context(text, slot_list, lang, src)
            prepared.append((text, canon, slot_list, src, retrieved))
        cfg = dataclasses.replace(cfg, max_len=min(cfg.max_len, self.model_cfg.max_len - 1))
        # int8 kernels quantise a matmul's input with one scale for all its rows, so rows of
        # other intents would nudge an intent's answer: int8 decodes one intent at a time
        groups = [prepared] if self.precision != "int8" else [[p] for p in prepared]
        hyps = []
        for group in groups:
            if not group:
                continue
            S = max(len(p[3]) for p in group)
            src = torch.full((len(group), S), PAD, dtype=torch.long)
            for i, (_, _, _, ids, _) in enumerate(group):
                src[i, : len(ids)] = torch.tensor(ids)
            guides = [Guide(lang, self.tok, p[2]) for p in group] if cfg.prune and cfg.strategy == "beam" else None
            with self._lock:
                hyps += decode(self.model, src, src != PAD, cfg, guides, deadline)
        return [self._score(text, canon, slot_list, src_ids, lang, hs, retrieved, deadline)
                for (text, canon, slot_list, src_ids, retrieved), hs in zip(prepared, hyps)]

    def _score(self, text, canon, slot_list, src_ids, lang, hs, retrieved=None, deadline=None) -> Candidates:
        """Hypotheses -> scored candidates (repairs and retrieved ones added), ranked."""
        wanted = {s.placeholder for s in slot_list}
        cands: list[Candidate] = []
        seen: set[str] = set()
        for h in hs:
            canon_code = self.tok.decode(h.ids)
            code = slots.restore(canon_code, slot_list, lang).strip("\n")
            if code in seen:
                continue
            seen.add(code)
            f = features(canon_code, len(h.ids), h.logprob, h.score, wanted, code, lang)
            f["finished"] = h.finished
            f["repaired"] = False
            if not h.finished or slots.placeholders_in(code):
                # cut at max_len, or an internal placeholder the intent had no value
                # for (`str_0`): never offered
                f["parses"] = False
            cands.append(Candidate(code, lang, score(f, self.rerank_for(lang)), h.logprob, f["parses"], f, f["danger"]))
            if h.finished and not f["parses"] and REGISTRY[lang].repair:
                cands.extend(self._repairs(code, canon_code, h, wanted, lang, seen))
        if self.augment is not None and (deadline is None or deadline.allows(self.augment_cost.estimate)):
            with self._lock, self.augment_cost.measure():
                self._augment(text, canon, src_ids, lang, cands, seen, wanted, slot_list, retrieved)
        for c in cands:  # destructive candidates rank last unless the intent asks for what they do
            if c.danger:
                c.features["danger_asked"] = asked_for(c.danger, text)
                c.score = score(c.features, self.rerank_for(lang))
        mark_confidence(cands, self.rerank_for(lang))
        # parsing candidates best first, then the others
        ranked = rerank(cands) + [c for c in rerank(cands, keep_unparsed=True) if not c.parses]
        return Candidates(text, lang, ranked)

    def _with_context(self, text, slot_list, lang, src) -> tuple[list[int], list | None]:
        """A model trained with retrieved context (context_k > 0) gets the nearest pairs'
        code behind the intent (nl2code.context); the pairs are also candidates later."""
        k = self.model_cfg.context_k
        if not k or self.augment is None or self.augment.index is None:
            return src, None
        from nl2code.context import source_ids

        with self._lock:
            retrieved = self._retrieved(text, slot_list, lang)
        context = list(dict.fromkeys(r[1] for r in retrieved))
        room = self.model_cfg.max_len - k * (self.model_cfg.context_tokens + 1)
        return source_ids(self.tok, src[: max(room, 2)], context, lang, k, self.model_cfg.context_tokens,
                          self.model_cfg.max_len), retrieved

    def _retrieved(self, intent, slot_list, lang) -> list[tuple]:
        if self.retrieve_k is None:
            return self.augment.retrieved(intent, slot_list, lang)
        return self.augment.retrieved(intent, slot_list, lang, self.retrieve_k)

    def _augment(self, intent, canon, src_ids, lang, cands, seen, wanted, slot_list, retrieved=None) -> None:
        """Add retrieved candidates; score the parsing candidates' API use and the best ones'
        reconstruction."""
        aug = self.augment
        if retrieved is None:
            retrieved = self._retrieved(intent, slot_list, lang)
        new = [r for r in retrieved if r[0] not in seen]
        forced = aug.forced_logprobs(src_ids, [r[1] for r in new])
        for (code, canon_code, sim, _), (lp, n) in zip(new, forced):
            seen.add(code)
            f = features(canon_code, n - 1, lp, lp / max(n, 1), wanted, code, lang)
            f.update(finished=True, repaired=False, retrieved=True, similarity=sim)
            cands.append(Candidate(code, lang, 0.0, lp, f["parses"], f, f["danger"]))
        live = [c for c in cands if c.parses]
        cfg = self.rerank_for(lang)
        for c in live:
            c.features["api_problems"] = aug.api_problems(c.code, lang)
        # the reverse model scores the RECON_ROWS best by everything else; the others get the
        # worst of those scores, so it cannot lift them past a scored one
        order = sorted(range(len(live)), key=lambda i: (-score(live[i].features, cfg), i))[
            : RECON_ROWS if self.recon_rows is None else self.recon_rows]
        recon = aug.reconstruction(canon, [slots.canonicalize_pair(intent, live[i].code)[1] for i in order], lang)
        worst = min(recon) if recon else None
        for c in live:
            c.features["reconstruction"], c.features["reconstruction_scored"] = worst, False
        for i, r in zip(order, recon or []):
            live[i].features.update(reconstruction=r, reconstruction_scored=True)
        for c in cands:
            c.score = score(c.features, cfg)

    def _repairs(self, code, canon_code, h, wanted, lang, seen) -> list[Candidate]:
        """Bracket-balanced variants of a near-miss that parse, marked as repaired."""
        out = []
        for variant in bracket_variants(code):
            if variant in seen:
                continue
            seen.add(variant)
            f = features(canon_code, len(h.ids), h.logprob, h.score, wanted, variant, lang)
            f["finished"], f["repaired"] = True, True
            if f["parses"] and not slots.placeholders_in(variant):
                out.append(Candidate(variant, lang, score(f, self.rerank_for(lang)), h.logprob, True, f, f["danger"]))
        return out

    def explain(self, code: str, lang: str = "python", n: int = 1) -> list[str]:
        """What code does, in words (the reverse model): up to n intents, best first."""
        from nl2code.explain import MAX_CODE_CHARS

        lang = canonical_lang(lang)
        if not isinstance(code, str) or not code.strip():
            raise UsageError("empty code: give the code to explain as an argument or on stdin")
        if "\x00" in code:
            raise UsageError("the code contains NUL bytes: binary input cannot be explained")
        if len(code) > MAX_CODE_CHARS:
            raise UsageError(f"code too long ({len(code):,} characters; the limit is {MAX_CODE_CHARS:,})")
        if n < 1:
            raise UsageError("n must be at least 1")
        explainer = self.augment.explainer if self.augment is not None else None
        if explainer is None:
            raise UsageError(f"the model at {self.path} has no reverse model (explain.safetensors): "
                             "package one with `nl2code model package --explain`")
        with self._lock:
            texts = explainer.explain(code.strip("\n"), lang, n=max(n, 5))
        clean = [t for t in texts if not slots.placeholders_in(t)]
        return (clean or texts)[:n]

    def info(self) -> dict[str, Any]:
        """The model card (nl2code.card) of the loaded model, with its parameter count, the
        precision it runs at, its optional parts and all its metadata."""
        from nl2code.card import card

        module = getattr(self.model, "model", self.model)  # the inference form keeps its module
        n_params = sum(p.numel() for p in module.parameters())
        return {**card(self.path, self.model_cfg, self.meta, self.precision), "parameters": n_params,
                "languages": self.languages,
                "parts": self.augment.parts() if self.augment is not None else {}, "meta": self.meta}
