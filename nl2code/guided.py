"""Syntax-guided, budget-aware beam search (decode.decode with guides or a deadline).

The same search as decode._beam (same candidates, same stop rule), with three additions:

- **pruning**: each candidate extension advances its parent's viability state
  (nl2code/viability.py); a dead prefix is dropped and the next-best extension takes its
  slot (up to `extra` = K candidates past the usual 2K), and an EOS is accepted only when
  the finished program passes guide.final_ok. With a guide that accepts everything and
  extra=0 the result equals decode._beam's.
- **anytime**: once the deadline's search share is spent, every live hypothesis is
  finished greedily (its best viable extension per step) until the deadline's decode
  share is spent; finished hypotheses found by then are returned, best first.
- **widening**: an intent that ends with no accepted finished hypothesis is searched once
  more with twice the beam (at most 16), if the deadline allows.

The bookkeeping is per hypothesis in Python (a few small lists per step); the model's
work stays batched. Wall-clock budgets make results depend on machine speed and load:
with a deadline, answers are deterministic only when the search ends before the budget.
"""

from __future__ import annotations

import torch

from nl2code.config import DecodeConfig
from nl2code.decode import _NEVER, NEG, Hypothesis, _lp
from nl2code.tokenizer import BOS, EOS, PAD

GREEDY_TOPK = 8  # candidates per row looked at when finishing greedily
MAX_WIDE_BEAM = 16


class _AcceptAll:
    """The guide of an unguided search (a deadline without pruning)."""

    start = ()

    def advance(self, state, tok_id):
        return state

    def final_ok(self, ids):
        return True


def guided_beam(model, src, src_mask, cfg: DecodeConfig, guides=None, deadline=None,
                extra: int | None = None) -> list[list[Hypothesis]]:
    B = src.shape[0]
    if guides is None:
        guides = [_AcceptAll()] * B
    if len(guides) != B:
        raise ValueError("one guide per intent")
    out, fins = _search(model, src, src_mask, cfg, guides, deadline, cfg.beam_size, extra)
    wide = min(2 * cfg.beam_size, MAX_WIDE_BEAM)
    retry = [b for b in range(B) if not fins[b] and not isinstance(guides[b], _AcceptAll)]
    if retry and wide > cfg.beam_size and (deadline is None or not deadline.search_over()):
        idx = torch.tensor(retry)
        more, more_fins = _search(model, src[idx], src_mask[idx], cfg, [guides[b] for b in retry],
                                  deadline, wide, extra)
        for b, hyps, f in zip(retry, more, more_fins):
            if f:
                out[b] = hyps
        if deadline is not None:
            deadline.notes["widened"] = deadline.notes.get("widened", 0) + len(retry)
    return out


def _search(model, src, src_mask, cfg: DecodeConfig, guides, deadline, K: int, extra: int | None):
    """-> (n_best hypotheses per intent, accepted finished hypotheses per intent)."""
    B, alpha, L = src.shape[0], cfg.length_penalty, cfg.max_len
    extra = K if extra is None else extra
    dev = src.device
    never = _NEVER.to(dev)
    memory = model.encode(src, src_mask)
    memory = model.expand_memory(memory, torch.arange(B, device=dev).repeat_interleave(K))
    BK = B * K
    alive = [[(0.0, [], g.start)] for g in guides]  # per intent: (logprob, ids, state)
    fins: list[list[tuple[float, float, list[int]]]] = [[] for _ in range(B)]  # (norm, lp, ids)
    # the stop rule counts every finished hypothesis, accepted or not: a search never runs
    # longer than the unguided one would because its finished programs fail the check
    ends: list[list[float]] = [[] for _ in range(B)]
    done = [False] * B
    scores = torch.full((B, K), NEG, device=dev)
    scores[:, 0] = 0.0
    last = torch.full((BK, 1), BOS, dtype=torch.long, device=dev)
    greedy = False
    cache = None
    steps = 0
    step_cost, t0 = 0.0, None
    for t in range(L):
        if deadline is not None:
            now = deadline.clock()
            if t0 is not None:
                step_cost = now - t0
            t0 = now
            if t and deadline.decode_over(step_cost):
                deadline.notes["stopped_at_step"] = t
                break
            if t and not greedy and deadline.search_over():
                greedy = True
                deadline.notes["greedy_from_step"] = t
        logits, cache = model.step(last, memory, cache)
        steps = t + 1
        logp = torch.log_softmax(logits.float(), dim=-1)
        logp.index_fill_(1, never, NEG)
        if t < cfg.min_len:
            logp[:, EOS] = NEG
        V = logp.shape[1]
        kk = min(GREEDY_TOPK if greedy else 2 * K + extra, V)
        row_s, row_tok = logp.topk(kk, dim=-1)
        total = scores.view(BK, 1) + row_s  # (BK, kk)
        if greedy:
            S, T = total.tolist(), row_tok.tolist()
        else:
            top_s, top_i = total.view(B, K * kk).topk(min(2 * K + extra, K * kk), dim=-1)
            S, I = top_s.tolist(), top_i.tolist()
            T = row_tok.view(B, K * kk).gather(1, top_i).tolist()
        length = float(t + 1)
        norm = _lp(length, alpha)
        rows, toks, new_scores = [], [], []
        for b in range(B):
            nxt = []  # (logprob, ids, state, parent slot)
            if not done[b]:
                if greedy:
                    _greedy_step(guides[b], alive[b], S[b * K:(b + 1) * K], T[b * K:(b + 1) * K], fins[b],
                                 ends[b], norm, nxt)
                else:
                    _beam_step(guides[b], alive[b], S[b], I[b], T[b], kk, K, fins[b], ends[b], norm, nxt)
                fins[b].sort(key=lambda f: -f[0])
                del fins[b][K:]
                ends[b].sort(reverse=True)
                del ends[b][K:]
            alive[b] = [(s, ids, st) for s, ids, st, _ in nxt]
            pad = K - len(nxt)
            rows += [b * K + j for *_, j in nxt] + [b * K] * pad
            toks += [ids[-1] for _, ids, _, _ in nxt] + [PAD] * pad
            new_scores += [s for s, *_ in nxt] + [NEG] * pad
            if not done[b]:
                best = max((s for s, *_ in nxt), default=None)
                done[b] = best is None or (len(ends[b]) >= K and ends[b][-1] >= best / norm)
        scores = torch.tensor(new_scores, device=dev).view(B, K)
        last = torch.tensor(toks, dtype=torch.long, device=dev).view(BK, 1)
        cache = model.reorder_cache(cache, torch.tensor(rows, dtype=torch.long, device=dev))
        if all(done):
            break
    out = []
    for b in range(B):
        hyps = [Hypothesis(ids, lp, sc, True) for sc, lp, ids in fins[b]]
        for s, ids, _ in alive[b]:  # unfinished ones fill the remaining slots
            if len(hyps) >= K:
                break
            hyps.append(Hypothesis(ids, s, s / _lp(float(steps), alpha), False))
        hyps.sort(key=lambda h: -h.score)
        out.append(hyps[: cfg.n_best])
    return out, fins


def _beam_step(guide, cur, S, I, T, kk, K, fin, ends, norm, nxt) -> None:
    """One beam step of one intent: the first 2K candidates as in decode._beam (finished
    ones kept if accepted, the best K live ones extended), then, only while pruning left
    fewer than K live, the next candidates in order."""
    for pos, (s, i, k) in enumerate(zip(S, I, T)):
        if s <= NEG / 2:
            break  # sorted: the rest extend dead rows
        if pos >= 2 * K and len(nxt) >= K:
            break
        j = i // kk
        lp, ids, st = cur[j]
        if k == EOS:
            if pos < 2 * K:
                ends.append(s / norm)
                if guide.final_ok(ids):
                    fin.append((s / norm, s, ids))
            continue
        if len(nxt) >= K:
            continue
        st2 = guide.advance(st, k)
        if st2 is not None:
            nxt.append((s, ids + [k], st2, j))


def _greedy_step(guide, cur, S, T, fin, ends, norm, nxt) -> None:
    """Each live hypothesis takes its best viable extension; an accepted EOS finishes it."""
    for j, (lp, ids, st) in enumerate(cur):
        for s, k in zip(S[j], T[j]):
            if s <= NEG / 2:
                break
            if k == EOS:
                ends.append(s / norm)
                if guide.final_ok(ids):
                    fin.append((s / norm, s, ids))
                    break
                continue
            st2 = guide.advance(st, k)
            if st2 is not None:
                nxt.append((s, ids + [k], st2, j))
                break
