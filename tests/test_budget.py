"""Latency budgets (nl2code/budget.py, the anytime beam, the engine's extras) on a fake clock:
time advances only when the model takes a step, so no test sleeps and every result is
deterministic."""

from __future__ import annotations

import pytest
import torch

from nl2code import slots, syntax
from nl2code.budget import CostMeter, Deadline
from nl2code.checkpoint import load_model
from nl2code.config import DecodeConfig
from nl2code.decode import decode
from nl2code.tokenizer import PAD
from nl2code.viability import Guide

torch.set_num_threads(1)


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TimedModel:
    """The decode protocol over a real model; every step costs `step_s` on the fake clock."""

    def __init__(self, model, clock: FakeClock, step_s: float):
        self.model, self.clock, self.step_s = model, clock, step_s
        self.steps = 0

    def encode(self, src, mask):
        return self.model.encode(src, mask)

    def expand_memory(self, memory, idx):
        return self.model.expand_memory(memory, idx)

    def reorder_cache(self, cache, rows):
        return self.model.reorder_cache(cache, rows)

    def step(self, tgt, memory, cache):
        self.clock.now += self.step_s
        self.steps += 1
        return self.model.step(tgt, memory, cache)


@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, _, tok, _ = load_model(tiny_model)
    return model, tok


def _src(tok, intent, lang="python"):
    canon, slot_list = slots.canonicalize(intent)
    src = torch.tensor([tok.encode_source(canon, lang)])
    return src, src != PAD, slot_list


def test_deadline_shares():
    clock = FakeClock()
    d = Deadline(100, clock)  # 0.1 s: search until 0.05, decode until 0.09
    assert not d.search_over() and not d.decode_over()
    clock.now += 0.049
    assert not d.search_over()
    clock.now += 0.002  # 51 ms
    assert d.search_over() and not d.decode_over()
    assert d.decode_over(next_step=0.040) and not d.decode_over(next_step=0.038)
    assert d.allows(0.038) and not d.allows(0.040)
    clock.now += 0.04  # 91 ms
    assert d.decode_over() and d.remaining() == pytest.approx(0.009)
    with pytest.raises(ValueError):
        Deadline(0, clock)


def test_cost_meter_tracks_measured_work():
    clock = FakeClock()
    meter = CostMeter(0.04, clock, weight=0.5)
    with meter.measure():
        clock.now += 0.02
    assert meter.estimate == pytest.approx(0.03)


def test_anytime_beam_switches_to_greedy_and_stops_in_budget(loaded):
    model, tok = loaded
    intent = "define a function that returns the square of x"
    src, mask, slot_list = _src(tok, intent)
    cfg = DecodeConfig(beam_size=5, n_best=5, max_len=60)
    clock = FakeClock()
    timed = TimedModel(model, clock, step_s=0.001)  # 1 ms a step
    with torch.inference_mode():
        full = decode(timed, src, mask, cfg, [Guide("python", tok, slot_list)])[0]
    full_steps = timed.steps
    assert full_steps > 12  # the unbudgeted search needs more steps than the budget allows
    budget_ms = 13  # search until 6.5 ms, then greedy until a step would pass 11.7 ms
    timed = TimedModel(model, clock, step_s=0.001)
    deadline = Deadline(budget_ms, clock)
    with torch.inference_mode():
        hyps = decode(timed, src, mask, cfg, [Guide("python", tok, slot_list)], deadline)[0]
    assert deadline.notes["greedy_from_step"] == 7
    assert timed.steps <= 11  # never a step into the reserve
    assert deadline.elapsed() <= budget_ms / 1000
    for h in hyps:
        if h.finished:
            assert syntax.parses(slots.restore(tok.decode(h.ids), slot_list), "python")
    # the same budget on the same (fake) clock gives the same answer
    clock2 = FakeClock()
    timed2 = TimedModel(model, clock2, step_s=0.001)
    with torch.inference_mode():
        again = decode(timed2, src, mask, cfg, [Guide("python", tok, slot_list)], Deadline(budget_ms, clock2))[0]
    assert [h.ids for h in again] == [h.ids for h in hyps]
    assert full  # and without a budget the search ran to its own end


def test_greedy_finish_finds_an_answer_the_cut_beam_would_not(loaded):
    """With the budget nearly spent at the start, finishing greedily still yields a
    finished, parsing program for a memorised intent."""
    model, tok = loaded
    intent = "sort list `xs` in descending order"
    src, mask, slot_list = _src(tok, intent)
    clock = FakeClock()
    timed = TimedModel(model, clock, step_s=0.001)
    deadline = Deadline(40, clock, search_share=0.0)  # greedy from the second step
    with torch.inference_mode():
        hyps = decode(timed, src, mask, DecodeConfig(max_len=60), [Guide("python", tok, slot_list)], deadline)[0]
    assert deadline.notes["greedy_from_step"] == 1
    assert hyps[0].finished
    assert slots.restore(tok.decode(hyps[0].ids), slot_list) == "xs.sort(reverse=True)"


def test_budget_without_pruning_and_for_greedy(loaded):
    model, tok = loaded
    src, mask, _ = _src(tok, "print hello world")
    for cfg in (DecodeConfig(prune=False), DecodeConfig(strategy="greedy", n_best=1)):
        clock = FakeClock()
        timed = TimedModel(model, clock, step_s=0.002)
        deadline = Deadline(11, clock)  # a step 2 ms, reserve 1.1 ms: at most 5 steps
        with torch.inference_mode():
            decode(timed, src, mask, cfg, None, deadline)
        assert timed.steps <= 5 and "stopped_at_step" in deadline.notes


def test_engine_budget_covers_the_call_and_skips_extras(tiny_model):
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(tiny_model)
    clock = FakeClock()
    gen.clock = clock
    gen.model = TimedModel(gen.model, clock, step_s=0.001)
    ran = []
    real = gen._augment
    gen._augment = lambda *a: (ran.append(1), real(*a))
    gen.augment_cost.estimate = 0.5  # the extras are known to take 500 ms
    cands = gen.generate("sort list `xs` in descending order", "python",
                         config=DecodeConfig(max_latency_ms=100))
    assert cands[0].code == "xs.sort(reverse=True)"
    if gen.augment is not None:
        assert not ran  # 500 ms of extras do not fit in what is left of 100 ms
    assert gen.last_deadline is not None and gen.last_deadline.elapsed() <= 0.1
    # without a budget nothing is skipped and no deadline is made
    gen.generate("sort list `xs` in descending order", "python")
    assert gen.last_deadline is None
    if gen.augment is not None:
        assert ran


def test_cli_max_latency_ms(tiny_model):
    from typer.testing import CliRunner

    from nl2code.cli import app

    runner = CliRunner()
    ok = runner.invoke(app, ["generate", "--no-log", "-m", str(tiny_model), "--max-latency-ms", "60000",
                             "sort list `xs` in descending order"])
    assert ok.exit_code == 0, ok.output
    assert "xs.sort(reverse=True)" in ok.output
    bad = runner.invoke(app, ["generate", "--no-log", "-m", str(tiny_model), "--max-latency-ms", "-5", "x y"])
    assert bad.exit_code == 2


def test_lsp_setting(tiny_model, monkeypatch):
    import asyncio

    from nl2code.engine import Generator
    from nl2code_lsp.settings import Settings, merge

    s = Settings()
    assert s.decode_budget_ms > 0
    # the language server's host hands the setting to the engine as the call's budget
    gen = Generator.from_checkpoint(tiny_model)
    seen = []
    real = gen.candidates_batch
    monkeypatch.setattr(gen, "candidates_batch", lambda *a, **k: seen.append(k.get("max_latency_ms")) or real(*a, **k))
    from nl2code_lsp.host import ModelHost

    host = ModelHost()
    asyncio.run(host.generate(gen, "sort list `xs` in descending order", "python", s))
    assert seen == [s.decode_budget_ms]
    s2, warnings = merge(s, {"decodeBudgetMs": 0})
    assert not warnings and s2.decode_budget_ms == 0
    assert s2.cache_key() != s.cache_key()
    s3, warnings = merge(s, {"decodeBudgetMs": -1})
    assert warnings and s3.decode_budget_ms == s.decode_budget_ms
