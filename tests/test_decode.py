"""decode.py: greedy / beam / sample over the model protocol, and the models' KV caches."""

from __future__ import annotations

import importlib.util
import itertools
import math

import pytest
import torch

from conftest import TOY
from nl2code import slots
from nl2code.checkpoint import load_model
from nl2code.config import DecodeConfig, ModelConfig
from nl2code.decode import decode
from nl2code.errors import UsageError
from nl2code.model import build_model
from nl2code.tokenizer import BOS, EOS, PAD

torch.set_num_threads(1)

NOVEL = ["make a web server", "sort dict `d` by value", "x",
         "compute the mean of `arr` ignoring nan values in every row of the table"]


@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, cfg, tok, _ = load_model(tiny_model)
    return model, tok


def batch_src(tok, intents, langs):
    ids = [tok.encode_source(slots.canonicalize(i)[0], lang) for i, lang in zip(intents, langs)]
    S = max(len(x) for x in ids)
    src = torch.full((len(ids), S), PAD, dtype=torch.long)
    for r, x in enumerate(ids):
        src[r, : len(x)] = torch.tensor(x)
    return src, src != PAD


CASES = [(i, lang) for i, _, lang in TOY] + [(i, "python") for i in NOVEL] + [("delete the temp folder", "bash")]


def teacher_forced_logprob(model, src, mask, ids):
    """Sum of log p(token) for ids + EOS, as decode counts it (no renormalisation)."""
    tgt = torch.tensor([[BOS] + ids])
    with torch.inference_mode():
        logp = torch.log_softmax(model(src, mask, tgt).float(), dim=-1)[0]
    return sum(float(logp[t, tok]) for t, tok in enumerate(ids + [EOS]))


# --- tiny trained model ----------------------------------------------------------------------

def test_memorised_greedy(loaded):
    model, tok = loaded
    src, mask = batch_src(tok, ["sort list `xs` in descending order"], ["python"])
    h = decode(model, src, mask, DecodeConfig(strategy="greedy", n_best=1))[0]
    assert len(h) == 1 and h[0].finished
    assert tok.decode(h[0].ids) == "var_0.sort(reverse=True)"


@pytest.mark.parametrize("intent,lang", [(i, lang) for i, _, lang in TOY])
def test_beam_size_1_equals_greedy(loaded, intent, lang):
    model, tok = loaded
    src, mask = batch_src(tok, [intent], [lang])
    g = decode(model, src, mask, DecodeConfig(strategy="greedy", n_best=1))[0]
    b = decode(model, src, mask, DecodeConfig(strategy="beam", beam_size=1, n_best=1))[0]
    assert len(g) == len(b) == 1
    assert b[0].ids == g[0].ids
    assert b[0].logprob == pytest.approx(g[0].logprob, abs=1e-4)
    assert b[0].finished == g[0].finished


@pytest.mark.parametrize("alpha", [1.0, 0.6, 0.0])
def test_nbest_sorted_and_scores_consistent(loaded, alpha):
    model, tok = loaded
    for intent, lang in CASES[::3]:
        src, mask = batch_src(tok, [intent], [lang])
        hyps = decode(model, src, mask, DecodeConfig(strategy="beam", beam_size=5, n_best=5,
                                                      length_penalty=alpha))[0]
        assert 1 <= len(hyps) <= 5
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.ids) for h in hyps}) == len(hyps)  # no duplicates
        for h in hyps:
            assert PAD not in h.ids and BOS not in h.ids and EOS not in h.ids
            if h.finished:
                n = len(h.ids) + 1
                assert h.logprob == pytest.approx(teacher_forced_logprob(model, src, mask, h.ids), abs=1e-3)
                assert h.score == pytest.approx(h.logprob / (n**alpha if alpha else 1.0), abs=1e-4)


def test_beam_not_worse_than_greedy(loaded):
    model, tok = loaded
    for intent, _, lang in TOY:
        src, mask = batch_src(tok, [intent], [lang])
        g = decode(model, src, mask, DecodeConfig(strategy="greedy", n_best=1))[0][0]
        b = decode(model, src, mask, DecodeConfig(strategy="beam", beam_size=5, n_best=5))[0][0]
        if g.finished:
            assert b.score >= g.score - 1e-4


@pytest.mark.parametrize("cfg", [
    DecodeConfig(strategy="beam", beam_size=4, n_best=4),
    DecodeConfig(strategy="beam", beam_size=3, n_best=2, length_penalty=0.0),
    DecodeConfig(strategy="greedy", n_best=1),
    DecodeConfig(strategy="sample", beam_size=1, n_best=3, temperature=0.8, top_k=5, seed=7),
])
def test_batched_equals_one_at_a_time(loaded, cfg):
    model, tok = loaded
    intents, langs = zip(*CASES)
    src, mask = batch_src(tok, intents, langs)
    together = decode(model, src, mask, cfg)
    assert len(together) == len(CASES)
    for (intent, lang), hyps in zip(CASES, together):
        s1, m1 = batch_src(tok, [intent], [lang])
        alone = decode(model, s1, m1, cfg)[0]
        if cfg.strategy == "sample":  # the random stream is shared by the batch: compare shape only
            assert len(alone) == len(hyps) == cfg.n_best
            continue
        assert [h.ids for h in hyps] == [h.ids for h in alone], intent
        assert [h.finished for h in hyps] == [h.finished for h in alone]
        for a, b in zip(hyps, alone):
            assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize("cfg", [
    DecodeConfig(strategy="beam", beam_size=5, n_best=5),
    DecodeConfig(strategy="beam", beam_size=3, n_best=2, length_penalty=0.0),
    DecodeConfig(strategy="beam", beam_size=4, n_best=4, length_penalty=0.6, min_len=3, max_len=12),
])
@pytest.mark.parametrize("int8", [False, True])
def test_one_intent_search_is_the_batched_search(loaded, cfg, int8):
    """One intent takes decode._beam_one (host-side selection); its hypotheses, log-probs
    and scores are bit for bit those of the batched _beam, in float32 and int8."""
    from nl2code.decode import _beam, _beam_one
    from nl2code.model.fast import FastTransformer, int8_available

    if int8 and not int8_available():
        pytest.skip("no fbgemm int8 kernels in this PyTorch build")
    model, tok = loaded
    runner = FastTransformer(model, "int8") if int8 else model
    for intent, lang in CASES:
        src, mask = batch_src(tok, [intent], [lang])
        one = _beam_one(runner, src, mask, cfg)
        assert one is not None, intent  # the tiny model's vocabulary is far larger than 2K + 3
        want = _beam(runner, src, mask, cfg)
        assert [(h.ids, h.logprob, h.score, h.finished) for h in one[0]] == \
               [(h.ids, h.logprob, h.score, h.finished) for h in want[0]], intent
        assert decode(runner, src, mask, cfg) == one


def test_one_intent_search_falls_back_on_a_tiny_vocabulary():
    """With 7 words (2 never emitted) a beam of 4 cannot keep 4 live rows: _beam_one
    declines and decode() runs the batched search."""
    from nl2code.decode import _beam, _beam_one

    model = TableModel(1, end=3, seed=4)
    src = torch.zeros((1, 1), dtype=torch.long)
    ones = torch.ones_like(src, dtype=torch.bool)
    cfg = DecodeConfig(strategy="beam", beam_size=4, n_best=4, max_len=6)
    assert _beam_one(model, src, ones, cfg) is None
    assert decode(model, src, ones, cfg) == _beam(model, src, ones, cfg)


def test_max_len_cut_is_marked_unfinished(loaded):
    model, tok = loaded
    src, mask = batch_src(tok, ["define a function that returns the square of x"], ["python"])
    for cfg in (DecodeConfig(strategy="greedy", n_best=1, max_len=3),
                DecodeConfig(strategy="beam", beam_size=3, n_best=3, max_len=3)):
        hyps = decode(model, src, mask, cfg)[0]
        assert hyps
        assert all(len(h.ids) <= 3 for h in hyps)
        assert not any(h.finished for h in hyps)


def test_min_len_respected(loaded):
    model, tok = loaded
    src, mask = batch_src(tok, ["print the current working directory"], ["bash"])
    for cfg in (DecodeConfig(strategy="greedy", n_best=1, min_len=6),
                DecodeConfig(strategy="beam", beam_size=3, n_best=3, min_len=6)):
        for h in decode(model, src, mask, cfg)[0]:
            assert len(h.ids) >= 6


def test_sampling_is_seeded(loaded):
    model, tok = loaded
    src, mask = batch_src(tok, ["make a web server"], ["python"])
    cfg = DecodeConfig(strategy="sample", beam_size=1, n_best=4, temperature=1.5, seed=11)
    a = decode(model, src, mask, cfg)[0]
    b = decode(model, src, mask, cfg)[0]
    assert [h.ids for h in a] == [h.ids for h in b]
    assert [h.score for h in a] == sorted([h.score for h in a], reverse=True)


# --- KV cache: step-by-step logits equal the full teacher-forced forward -----------------

def _check_cache(model, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    B, S, T = 3, 7, 9
    src = torch.randint(4, vocab, (B, S), generator=g)
    src[1, 5:] = PAD  # ragged sources
    src[2, 3:] = PAD
    mask = src != PAD
    tgt = torch.randint(4, vocab, (B, T), generator=g)
    tgt[:, 0] = BOS
    model.eval()
    with torch.inference_mode():
        full = model(src, mask, tgt)  # (B, T, V)
        memory = model.encode(src, mask)
        cache, steps = None, []
        for t in range(T):
            logits, cache = model.step(tgt[:, t : t + 1], memory, cache)
            steps.append(logits)
        stepped = torch.stack(steps, dim=1)
        assert torch.allclose(full, stepped, atol=1e-4, rtol=1e-4), (full - stepped).abs().max()
        # reorder_cache/expand_memory: continuing permuted rows equals recomputing them
        perm = torch.tensor([2, 0, 0, 1])
        mem_p = model.expand_memory(memory, perm)
        cache_p = model.reorder_cache(cache, perm)
        nxt = torch.randint(4, vocab, (B, 1), generator=g)
        cont, _ = model.step(nxt[perm], mem_p, cache_p)
        ref = model(src[perm], mask[perm], torch.cat([tgt, nxt], dim=1)[perm])[:, -1]
        assert torch.allclose(cont, ref, atol=1e-4, rtol=1e-4)


def test_kv_cache_trained_transformer(loaded):
    model, tok = loaded
    _check_cache(model, tok.vocab_size)


def test_kv_cache_random_transformer():
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, d_model=32, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=64,
                      dropout=0.1, max_len=32)
    _check_cache(build_model(cfg), 40, seed=1)


@pytest.mark.skipif(importlib.util.find_spec("nl2code.model.rnn") is None, reason="no rnn model yet")
def test_kv_cache_rnn():
    torch.manual_seed(0)
    cfg = ModelConfig(arch="rnn", vocab_size=40, d_model=16, rnn_hidden=24, rnn_layers=2,
                      dropout=0.1, max_len=32)
    _check_cache(build_model(cfg), 40, seed=2)


# --- beam search against brute force on a toy model with a known distribution ----------------

class TableModel:
    """A protocol-only model: logits depend on (intent, step, previous token, current token).

    The cache holds the whole history, so a search that reorders wrongly gets wrong logits.
    Every sequence ends by step `end` (EOS is made near-certain there).
    """

    V = 7  # PAD, UNK, BOS, EOS, 4, 5, 6

    def __init__(self, n_intents: int, end: int = 3, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.table = torch.randn(n_intents, end + 8, self.V, self.V, self.V, generator=g) * 1.5
        self.table[:, end:, :, :, EOS] += 40.0
        self.end = end

    def encode(self, src, src_mask):
        return {"who": src[:, 0]}

    def expand_memory(self, memory, idx):
        return {"who": memory["who"].index_select(0, idx)}

    def _logits(self, who, hist, cur):
        t = hist.shape[1]
        prev = hist[:, -1] if t else torch.full_like(cur, BOS)
        return self.table[who, t, prev, cur]

    def step(self, tgt_ids, memory, cache):
        hist = torch.zeros((tgt_ids.shape[0], 0), dtype=torch.long) if cache is None else cache["hist"]
        cur = tgt_ids[:, 0]
        logits = self._logits(memory["who"], hist, cur)
        return logits, {"hist": torch.cat([hist, tgt_ids], dim=1)}

    def reorder_cache(self, cache, beam_idx):
        return {"hist": cache["hist"].index_select(0, beam_idx)}

    def logprob(self, who: int, ids: list[int]) -> float:
        total, seq = 0.0, [BOS] + ids + [EOS]
        for t in range(len(seq) - 1):
            hist = torch.tensor([seq[:t]], dtype=torch.long)
            logits = self._logits(torch.tensor([who]), hist, torch.tensor([seq[t]]))
            total += float(torch.log_softmax(logits, -1)[0, seq[t + 1]])
        return total


def brute_force(model: TableModel, who: int, min_len: int, alpha: float):
    out = []
    tokens = [1, 4, 5, 6]
    for n in range(min_len, model.end + 1):
        for ids in itertools.product(tokens, repeat=n):
            lp = model.logprob(who, list(ids))
            out.append((lp / ((n + 1) ** alpha if alpha else 1.0), list(ids), lp))
    return sorted(out, key=lambda x: -x[0])


@pytest.mark.parametrize("alpha", [1.0, 0.0, 0.7])
def test_beam_matches_brute_force(alpha):
    B = 3
    model = TableModel(B, end=3, seed=5)
    src = torch.arange(B).unsqueeze(1)
    # 4 + 16 + 64 = 84 sequences of length 1..3 exist; a beam of 84 keeps every one alive
    cfg = DecodeConfig(strategy="beam", beam_size=84, n_best=8, max_len=6, length_penalty=alpha)
    got = decode(model, src, torch.ones_like(src, dtype=torch.bool), cfg)
    for who in range(B):
        want = brute_force(model, who, cfg.min_len, alpha)[: cfg.n_best]
        assert [h.ids for h in got[who]] == [w[1] for w in want]
        for h, (score, _, lp) in zip(got[who], want):
            assert h.finished
            assert h.score == pytest.approx(score, abs=1e-4)
            assert h.logprob == pytest.approx(lp, abs=1e-4)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_beam_size_1_equals_greedy_when_eos_only_at_end(seed):
    """With no early EOS candidates, a beam of one is greedy search by construction."""
    model = TableModel(4, end=5, seed=seed)
    model.table[:, :5, :, :, EOS] -= 80.0
    src = torch.arange(4).unsqueeze(1)
    ones = torch.ones_like(src, dtype=torch.bool)
    g = decode(model, src, ones, DecodeConfig(strategy="greedy", n_best=1))
    b = decode(model, src, ones, DecodeConfig(strategy="beam", beam_size=1, n_best=1))
    for gh, bh in zip(g, b):
        assert len(gh[0].ids) == 5 and gh[0].finished
        assert bh[0].ids == gh[0].ids
        assert bh[0].logprob == pytest.approx(gh[0].logprob, abs=1e-4)


def test_greedy_matches_brute_force_path():
    model = TableModel(2, end=3, seed=9)
    src = torch.arange(2).unsqueeze(1)
    got = decode(model, src, torch.ones_like(src, dtype=torch.bool), DecodeConfig(strategy="greedy", n_best=1))
    for who in range(2):
        ids: list[int] = []
        while True:  # follow the argmax path by hand
            seq = [BOS] + ids
            logits = model._logits(torch.tensor([who]), torch.tensor([seq[:-1]], dtype=torch.long),
                                   torch.tensor([seq[-1]]))[0].clone()
            logits[[PAD, BOS]] = -math.inf
            if not ids:
                logits[EOS] = -math.inf  # min_len = 1
            nxt = int(logits.argmax())
            if nxt == EOS:
                break
            ids.append(nxt)
        assert got[who][0].ids == ids
        assert got[who][0].logprob == pytest.approx(model.logprob(who, ids), abs=1e-4)


# --- DecodeConfig: flags that would do nothing are rejected ------------------------------------

@pytest.mark.parametrize("kwargs,match", [
    (dict(strategy="beam", temperature=0.7), "temperature"),
    (dict(strategy="beam", top_k=10), "top_k"),
    (dict(strategy="greedy", length_penalty=0.6), "length_penalty"),
    (dict(strategy="greedy", temperature=0.7), "temperature"),
    (dict(strategy="greedy", top_k=3), "top_k"),
    (dict(strategy="greedy", n_best=3), "n_best"),
    (dict(strategy="greedy", beam_size=3), "beam_size"),
    (dict(strategy="sample", beam_size=4), "beam_size"),
    (dict(strategy="sample", length_penalty=0.5), "length_penalty"),
    (dict(strategy="sample", temperature=0.0), "temperature"),
    (dict(strategy="sample", top_k=-1), "top_k"),
    (dict(strategy="beam", seed=3), "seed"),
    (dict(strategy="greedy", seed=3), "seed"),
    (dict(strategy="beam", beam_size=2, n_best=3), "n_best"),
    (dict(strategy="beam", beam_size=0, n_best=0), "n_best|beam_size"),
    (dict(strategy="beam", max_len=0), "max_len"),
    (dict(strategy="beam", min_len=10, max_len=5), "min_len"),
    (dict(strategy="nucleus"), "strategy"),
])
def test_decode_config_rejects_useless_flags(kwargs, match):
    with pytest.raises(UsageError, match=match):
        DecodeConfig(**kwargs).validate()


@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(strategy="beam", beam_size=3, n_best=2, length_penalty=0.6),
    dict(strategy="greedy", n_best=1),
    dict(strategy="greedy", beam_size=1, n_best=1),
    dict(strategy="sample", beam_size=1, n_best=4, temperature=0.7, top_k=20, seed=3),
])
def test_decode_config_accepts_meaningful_flags(kwargs):
    DecodeConfig(**kwargs).validate()


def test_decode_validates_config(loaded):
    model, tok = loaded
    src, mask = batch_src(tok, ["x"], ["python"])
    with pytest.raises(UsageError):
        decode(model, src, mask, DecodeConfig(strategy="beam", temperature=2.0))
