"""Search strategies over the model protocol (encode / step / reorder_cache).

decode.py knows nothing about the model beyond that protocol. Beam search is vectorised:
all hypotheses of all intents live in (batch*beam, ...) tensors, finished hypotheses in
(batch, beam) buffers, and a step does no per-hypothesis Python work. The only host sync
per step is the "are all intents done?" check.

Stop rule (beam): an intent is done when it has beam_size finished hypotheses and the best
alive one, length-normalised at the current length, cannot beat the worst finished. The
naive "stop once k ended" rule favours short outputs (../shared/TOOLCHAIN.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nl2code.config import DecodeConfig
from nl2code.tokenizer import BOS, EOS, PAD

NEG = -1e9
_NEVER = [PAD, BOS]  # ids a model must never emit


@dataclass
class Hypothesis:
    ids: list[int]  # without BOS/EOS
    logprob: float  # sum of token log-probabilities (EOS included when finished)
    score: float  # length-normalised score used for ranking
    finished: bool


def _lp(length: torch.Tensor | float, alpha: float):
    return length**alpha if alpha else 1.0


@torch.inference_mode()
def decode(model, src: torch.Tensor, src_mask: torch.Tensor, cfg: DecodeConfig) -> list[list[Hypothesis]]:
    """src: (B, S) ids, src_mask: (B, S) bool. Returns n_best hypotheses per intent."""
    cfg.validate()
    if cfg.strategy == "beam":
        return _beam(model, src, src_mask, cfg)
    if cfg.strategy == "greedy":
        return _sample_or_greedy(model, src, src_mask, cfg, greedy=True)
    return _sample_or_greedy(model, src, src_mask, cfg, greedy=False)


def _sample_or_greedy(model, src, src_mask, cfg: DecodeConfig, greedy: bool):
    n = 1 if greedy else cfg.n_best
    B = src.shape[0]
    memory = model.encode(src, src_mask)
    idx = torch.arange(B).repeat_interleave(n)
    if n > 1:
        memory = model.expand_memory(memory, idx)
    N = B * n
    gen = torch.Generator().manual_seed(cfg.seed)
    tokens = torch.full((N, 1), BOS, dtype=torch.long)
    logprob = torch.zeros(N)
    done = torch.zeros(N, dtype=torch.bool)
    lengths = torch.zeros(N, dtype=torch.long)
    cache = None
    out = []
    # max_len model steps, like beam search (a position past max_len may not exist in the
    # model); a hypothesis without EOS by then is cut and marked unfinished below
    for t in range(cfg.max_len):
        logits, cache = model.step(tokens[:, -1:], memory, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp[:, _NEVER] = NEG
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


def _beam(model, src, src_mask, cfg: DecodeConfig):
    B, K, V_alpha = src.shape[0], cfg.beam_size, cfg.length_penalty
    L = cfg.max_len
    memory = model.encode(src, src_mask)
    memory = model.expand_memory(memory, torch.arange(B).repeat_interleave(K))
    scores = torch.full((B, K), NEG)
    scores[:, 0] = 0.0  # only the first beam is alive at the start
    seqs = torch.full((B * K, 1), BOS, dtype=torch.long)
    fin_scores = torch.full((B, K), NEG)  # normalised
    fin_lp = torch.full((B, K), NEG)
    fin_seqs = torch.full((B, K, L + 1), PAD, dtype=torch.long)
    base = (torch.arange(B) * K).unsqueeze(1)  # (B, 1)
    done = torch.zeros(B, dtype=torch.bool)  # sticky: a done intent's finished list is final
    cache = None
    for t in range(L):
        logits, cache = model.step(seqs[:, -1:], memory, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)  # (B*K, V)
        logp[:, _NEVER] = NEG
        V = logp.shape[-1]
        if t < cfg.min_len:
            logp[:, EOS] = NEG
        cand = (scores.unsqueeze(-1) + logp.view(B, K, V)).view(B, K * V)
        top_s, top_i = cand.topk(2 * K, dim=-1)  # (B, 2K)
        beam_of, tok = top_i // V, top_i % V
        is_eos = tok == EOS
        # finished candidates: merge into the (B, K) finished buffers
        length = float(t + 1)
        norm = top_s / _lp(length, V_alpha)
        # intents already done take no more hypotheses, so an intent's result does not
        # depend on how long the other intents of its batch keep the loop running
        eos_ok = is_eos & (top_s > NEG / 2) & ~done.unsqueeze(1)
        eos_norm = torch.where(eos_ok, norm, torch.full_like(norm, NEG))
        all_norm = torch.cat([fin_scores, eos_norm], dim=1)  # (B, 3K)
        keep_s, keep_i = all_norm.topk(K, dim=-1)
        src_rows = (base + beam_of).view(-1)  # rows of seqs the candidates extend
        cand_seqs = torch.full((B, 2 * K, L + 1), PAD, dtype=torch.long)
        cand_seqs[:, :, : t + 1] = seqs.index_select(0, src_rows).view(B, 2 * K, t + 1)
        pool = torch.cat([fin_seqs, cand_seqs], dim=1)  # (B, 3K, L+1)
        fin_seqs = pool.gather(1, keep_i.unsqueeze(-1).expand(-1, -1, L + 1))
        fin_lp = torch.cat([fin_lp, top_s], dim=1).gather(1, keep_i)
        fin_scores = keep_s
        # alive beams: the best K candidates that did not end
        alive_s = top_s.masked_fill(is_eos, NEG)
        new_s, pick = alive_s.topk(K, dim=-1)  # (B, K)
        new_beam = beam_of.gather(1, pick)
        new_tok = tok.gather(1, pick)
        rows = (base + new_beam).view(-1)
        seqs = torch.cat([seqs.index_select(0, rows), new_tok.view(-1, 1)], dim=1)
        cache = model.reorder_cache(cache, rows)
        scores = new_s
        # done: K finished and no alive beam can beat the worst of them at this length
        best_alive = scores.max(dim=1).values / _lp(length, V_alpha)
        done = done | ((fin_scores[:, -1] > NEG / 2) & (fin_scores[:, -1] >= best_alive))
        if bool(done.all()):
            break
    # alive beams that never ended fill remaining slots, marked unfinished
    lens = float(seqs.shape[1] - 1)
    out = []
    fs, fl, fseq = fin_scores.tolist(), fin_lp.tolist(), fin_seqs.tolist()
    al_s = scores.tolist()
    al_seq = seqs[:, 1:].view(B, K, -1).tolist()
    for b in range(B):
        hyps = []
        for j in range(K):
            if fs[b][j] > NEG / 2:
                ids = fseq[b][j][1:]
                ids = ids[: ids.index(EOS)] if EOS in ids else [i for i in ids if i != PAD]
                hyps.append(Hypothesis(ids, fl[b][j], fs[b][j], True))
        for j in range(K):
            if len(hyps) >= K:
                break
            if al_s[b][j] > NEG / 2:
                norm = al_s[b][j] / _lp(lens, V_alpha)
                hyps.append(Hypothesis(al_seq[b][j], al_s[b][j], norm, False))
        hyps.sort(key=lambda h: -h.score)
        out.append(hyps[: cfg.n_best])
    return out
