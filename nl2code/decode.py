"""Search strategies over the model protocol (encode / step / reorder_cache).

decode.py knows nothing about the model beyond that protocol. Beam search is vectorised:
all hypotheses of all intents live in (batch*beam, ...) tensors, finished hypotheses in
(batch, beam) buffers, and a step does no per-hypothesis Python work. The only host sync
per step is the "are all intents done?" check. One intent (how the int8 form always decodes)
takes _beam_one: the same search with each step's 2K-of-K*2K selection done on the host,
which costs less than the ~35 small tensor ops of the batched form.

Stop rule (beam): an intent is done when it has beam_size finished hypotheses and the best
alive one, length-normalised at the current length, cannot beat the worst finished. The
naive "stop once k ended" rule favours short outputs (../shared/TOOLCHAIN.md).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np
import torch

from nl2code.budget import Deadline
from nl2code.config import DecodeConfig
from nl2code.tokenizer import BOS, EOS, PAD

NEG = -1e9
_NEVER = torch.tensor([PAD, BOS])  # ids a model must never emit


@dataclass
class Hypothesis:
    ids: list[int]  # without BOS/EOS
    logprob: float  # sum of token log-probabilities (EOS included when finished)
    score: float  # length-normalised score used for ranking
    finished: bool


def _lp(length: torch.Tensor | float, alpha: float):
    return length**alpha if alpha else 1.0


@torch.inference_mode()
def decode(model, src: torch.Tensor, src_mask: torch.Tensor, cfg: DecodeConfig,
           guides: list | None = None, deadline: Deadline | None = None) -> list[list[Hypothesis]]:
    """src: (B, S) ids, src_mask: (B, S) bool. Returns n_best hypotheses per intent.

    guides (beam only): one nl2code.viability.Guide per intent; hypotheses whose prefix
    cannot complete are pruned, finished ones must pass guide.final_ok, and an intent with
    no accepted hypothesis is searched once more with twice the beam. deadline: see
    Deadline (beam: greedy finish; greedy/sample: stop at decode_over).
    """
    cfg.validate()
    if cfg.strategy == "beam":
        if guides is None and deadline is None:
            if src.shape[0] == 1:  # one intent (the int8 path): the same search, host-side selection
                hyps = _beam_one(model, src, src_mask, cfg)
                if hyps is not None:
                    return hyps
            return _beam(model, src, src_mask, cfg)
        from nl2code.guided import guided_beam

        return guided_beam(model, src, src_mask, cfg, guides, deadline)
    if cfg.strategy == "greedy":
        return _sample_or_greedy(model, src, src_mask, cfg, greedy=True, deadline=deadline)
    return _sample_or_greedy(model, src, src_mask, cfg, greedy=False, deadline=deadline)


def _sample_or_greedy(model, src, src_mask, cfg: DecodeConfig, greedy: bool, deadline: Deadline | None = None):
    n = 1 if greedy else cfg.n_best
    B = src.shape[0]
    dev = src.device
    never = _NEVER.to(dev)
    memory = model.encode(src, src_mask)
    idx = torch.arange(B, device=dev).repeat_interleave(n)
    if n > 1:
        memory = model.expand_memory(memory, idx)
    N = B * n
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    tokens = torch.full((N, 1), BOS, dtype=torch.long, device=dev)
    logprob = torch.zeros(N, device=dev)
    done = torch.zeros(N, dtype=torch.bool, device=dev)
    lengths = torch.zeros(N, dtype=torch.long, device=dev)
    cache = None
    out = []
    # max_len model steps, like beam search (a position past max_len may not exist in the
    # model); a hypothesis without EOS by then is cut and marked unfinished below
    for t in range(cfg.max_len):
        if deadline is not None and t and deadline.decode_over():
            deadline.notes["stopped_at_step"] = t
            break
        logits, cache = model.step(tokens[:, -1:], memory, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp.index_fill_(1, never, NEG)
        if t < cfg.min_len:
            logp[:, EOS] = NEG
        if greedy:
            nxt = logp.argmax(-1)
        else:
            scaled = logp / cfg.temperature
            if cfg.top_k:
                kth = scaled.topk(cfg.top_k, dim=-1).values[:, -1:]
                scaled = scaled.masked_fill(scaled < kth, NEG)
            nxt = torch.multinomial(torch.softmax(scaled, -1), 1, generator=gen).squeeze(1)
        nxt = torch.where(done, torch.full_like(nxt, PAD), nxt)
        step_lp = logp.gather(1, nxt.clamp(min=0).unsqueeze(1)).squeeze(1)
        logprob = logprob + torch.where(done, torch.zeros_like(step_lp), step_lp)
        lengths = lengths + (~done).long()
        tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
        done = done | (nxt == EOS)
        if bool(done.all()):
            break
    seqs = tokens[:, 1:].tolist()
    lps = logprob.tolist()
    lens = lengths.tolist()
    for b in range(B):
        hyps = []
        for j in range(b * n, (b + 1) * n):
            ids = seqs[j]
            finished = EOS in ids
            ids = ids[: ids.index(EOS)] if finished else ids
            ids = [i for i in ids if i != PAD]
            hyps.append(Hypothesis(ids, lps[j], lps[j] / max(lens[j], 1), finished))
        hyps.sort(key=lambda h: -h.score)
        out.append(hyps)
    return out


def _trace(toks: list[list[int]], parents: list[list[int]], row: int, last_step: int) -> list[int]:
    """Tokens of the hypothesis held by `row` after step `last_step` (back-pointers)."""
    ids = []
    for s in range(last_step, -1, -1):
        ids.append(toks[s][row])
        row = parents[s][row]
    ids.reverse()
    return ids


def _beam_one(model, src, src_mask, cfg: DecodeConfig) -> list[list[Hypothesis]] | None:
    """_beam for one intent, with the per-step selection done on the host: one topk per
    step instead of ~35 small tensor ops (~2 ms of an answer's ~35 ms search).

    The same hypotheses, log-probabilities and scores as _beam: sums are formed in float32
    by torch, normalised scores are float32(score) / float32(length penalty) as torch's
    tensor / scalar division is, and candidates are taken best first with the lower index
    first among equal scores. It assumes what holds whenever the vocabulary has more than
    2K + 3 entries: the best 2K extensions are all live (above NEG / 2) and at most K of
    them end (each row proposes EOS at most once), so all K rows stay alive every step.
    Where that does not hold it returns None and decode() runs _beam instead.
    """
    K, alpha, L = cfg.beam_size, cfg.length_penalty, cfg.max_len
    f32 = np.float32
    dev = src.device
    never = _NEVER.to(dev)
    memory = model.encode(src, src_mask)
    memory = model.expand_memory(memory, torch.zeros(K, dtype=torch.long, device=dev))
    scores = [0.0]  # the live rows' summed log-probabilities (only row 0 at the start)
    fin: list[tuple[float, float, int]] = []  # (normalised, logprob, step * K + parent row), best first
    last = torch.full((K, 1), BOS, dtype=torch.long, device=dev)
    toks: list[list[int]] = []  # per step: each row's token
    parents: list[list[int]] = []  # per step: the row it extended
    cache = None
    for t in range(L):
        logits, cache = model.step(last, memory, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp.index_fill_(1, never, NEG)
        if t < cfg.min_len:
            logp[:, EOS] = NEG
        kk = min(2 * K, logp.shape[1])
        n = len(scores)
        row_s, row_tok = logp[:n].topk(kk, dim=-1)
        total = (torch.tensor(scores, dtype=torch.float32, device=dev).unsqueeze(1) + row_s).view(-1).tolist()
        tok = row_tok.view(-1).tolist()
        norm = f32(_lp(float(t + 1), alpha))
        new, toks_t, parents_t = [], [], []
        for i in heapq.nlargest(2 * K, range(n * kk), key=lambda i: (total[i], -i)):
            s = total[i]
            if s <= NEG / 2:
                return None
            if tok[i] == EOS:
                fin.append((float(f32(s) / norm), s, t * K + i // kk))
            elif len(new) < K:
                new.append(s)
                toks_t.append(tok[i])
                parents_t.append(i // kk)
        if len(new) < K:
            return None
        fin.sort(key=lambda f: -f[0])
        del fin[K:]
        scores = new
        toks.append(toks_t)
        parents.append(parents_t)
        last = torch.tensor(toks_t, dtype=torch.long, device=dev).view(K, 1)
        cache = model.reorder_cache(cache, torch.tensor(parents_t, dtype=torch.long, device=dev))
        # done: K finished and no alive beam can beat the worst of them at this length
        if len(fin) >= K and fin[-1][0] >= float(f32(max(new)) / norm):
            break
    steps = len(toks)
    hyps = []
    for norm_s, lp, ref in fin:
        step, row = divmod(ref, K)  # EOS came at `step`, extending `row`
        hyps.append(Hypothesis(_trace(toks, parents, row, step - 1), lp, norm_s, True))
    for j, s in enumerate(scores):  # alive beams that never ended fill remaining slots
        if len(hyps) >= K:
            break
        hyps.append(Hypothesis(_trace(toks, parents, j, steps - 1), s, s / _lp(float(steps), alpha), False))
    hyps.sort(key=lambda h: -h.score)
    return [hyps[: cfg.n_best]]


def _beam(model, src, src_mask, cfg: DecodeConfig):
    """Beam search with back-pointers: a step records each alive row's token and parent
    row, and finished hypotheses keep a reference (step, parent row); sequences are
    rebuilt once at the end instead of being copied every step."""
    B, K, alpha = src.shape[0], cfg.beam_size, cfg.length_penalty
    L = cfg.max_len
    dev = src.device
    never = _NEVER.to(dev)
    memory = model.encode(src, src_mask)
    memory = model.expand_memory(memory, torch.arange(B, device=dev).repeat_interleave(K))
    BK = B * K
    scores = torch.full((B, K), NEG, device=dev)
    scores[:, 0] = 0.0  # only the first beam is alive at the start
    last = torch.full((BK, 1), BOS, dtype=torch.long, device=dev)
    fin_scores = torch.full((B, K), NEG, device=dev)  # normalised
    fin_lp = torch.full((B, K), NEG, device=dev)
    fin_ref = torch.zeros((B, K), dtype=torch.long, device=dev)  # step * BK + parent row
    base = (torch.arange(B, device=dev) * K).unsqueeze(1)  # (B, 1)
    done = torch.zeros(B, dtype=torch.bool, device=dev)  # sticky: a done intent's finished list is final
    toks: list[torch.Tensor] = []  # per step: (BK,) token of each alive row
    parents: list[torch.Tensor] = []  # per step: (BK,) the row it extended
    cache = None
    for t in range(L):
        logits, cache = model.step(last, memory, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        logp.index_fill_(1, never, NEG)
        if t < cfg.min_len:
            logp[:, EOS] = NEG
        # the best 2K extensions of each row contain the best 2K of its intent
        kk = min(2 * K, logp.shape[1])
        row_s, row_tok = logp.topk(kk, dim=-1)  # (B*K, kk)
        cand = (scores.view(BK, 1) + row_s).view(B, K * kk)
        top_s, top_i = cand.topk(2 * K, dim=-1)  # (B, 2K)
        src_rows = base + torch.div(top_i, kk, rounding_mode="floor")  # rows the candidates extend
        tok = row_tok.view(B, K * kk).gather(1, top_i)
        is_eos = tok == EOS
        # finished candidates: merge into the (B, K) finished buffers
        length = float(t + 1)
        # intents already done take no more hypotheses, so an intent's result does not
        # depend on how long the other intents of its batch keep the loop running
        eos_ok = is_eos & (top_s > NEG / 2) & ~done.unsqueeze(1)
        eos_norm = torch.where(eos_ok, top_s / _lp(length, alpha), NEG)
        keep_s, keep_i = torch.cat([fin_scores, eos_norm], dim=1).topk(K, dim=-1)
        fin_ref = torch.cat([fin_ref, src_rows + t * BK], dim=1).gather(1, keep_i)
        fin_lp = torch.cat([fin_lp, top_s], dim=1).gather(1, keep_i)
        fin_scores = keep_s
        # alive beams: the best K candidates that did not end
        scores, pick = top_s.masked_fill(is_eos, NEG).topk(K, dim=-1)  # (B, K)
        rows = src_rows.gather(1, pick).view(-1)
        last = tok.gather(1, pick).view(-1, 1)
        toks.append(last.view(-1))
        parents.append(rows)
        cache = model.reorder_cache(cache, rows)
        # done: K finished and no alive beam can beat the worst of them at this length
        best_alive = scores.max(dim=1).values / _lp(length, alpha)
        done = done | ((fin_scores[:, -1] > NEG / 2) & (fin_scores[:, -1] >= best_alive))
        if bool(done.all()):
            break
    # alive beams that never ended fill remaining slots, marked unfinished
    steps = len(toks)
    tok_h, par_h = torch.stack(toks).tolist(), torch.stack(parents).tolist()
    out = []
    fs, fl, fr = fin_scores.tolist(), fin_lp.tolist(), fin_ref.tolist()
    al_s = scores.tolist()
    for b in range(B):
        hyps = []
        for j in range(K):
            if fs[b][j] > NEG / 2:
                step, row = divmod(fr[b][j], BK)  # EOS came at `step`, extending `row`
                hyps.append(Hypothesis(_trace(tok_h, par_h, row, step - 1), fl[b][j], fs[b][j], True))
        for j in range(K):
            if len(hyps) >= K:
                break
            if al_s[b][j] > NEG / 2:
                norm = al_s[b][j] / _lp(float(steps), alpha)
                hyps.append(Hypothesis(_trace(tok_h, par_h, b * K + j, steps - 1), al_s[b][j], norm, False))
        hyps.sort(key=lambda h: -h.score)
        out.append(hyps[: cfg.n_best])
    return out
