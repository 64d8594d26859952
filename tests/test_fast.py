"""The inference form (nl2code/model/fast.py): same answers as the training model."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from conftest import TOY
from nl2code import slots
from nl2code.checkpoint import load_model
from nl2code.config import DecodeConfig, ModelConfig
from nl2code.decode import decode
from nl2code.engine import Generator
from nl2code.errors import UsageError
from nl2code.model import build_model, for_inference, resolve_precision
from nl2code.model.fast import FastTransformer, int8_available
from nl2code.tokenizer import BOS, PAD

torch.set_num_threads(1)
needs_int8 = pytest.mark.skipif(not int8_available(), reason="this PyTorch build has no fbgemm")


@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, cfg, tok, _ = load_model(tiny_model)
    return model, tok


def random_model(seed: int = 0, vocab: int = 50):
    torch.manual_seed(seed)
    cfg = ModelConfig(vocab_size=vocab, d_model=32, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=64,
                      dropout=0.1, max_len=24)
    return build_model(cfg).eval()


def ragged_batch(vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (3, 7), generator=g)
    src[1, 5:] = PAD
    src[2, 2:] = PAD
    return src, src != PAD, g


def run_steps(m, src, mask, idx, tokens, perms):
    """Encode, expand to rows idx, then step through tokens, reordering by perms."""
    with torch.inference_mode():
        memory = m.expand_memory(m.encode(src, mask), idx)
        cache, out = None, []
        for tok, perm in zip(tokens, perms):
            logits, cache = m.step(tok, memory, cache)
            out.append(logits)
            cache = m.reorder_cache(cache, perm)
        return torch.stack(out)


@pytest.mark.parametrize("grouped", [True, False])
def test_float32_steps_equal_training_model(grouped):
    model = random_model()
    fast = FastTransformer(model, "float32")
    src, mask, g = ragged_batch(50, seed=3)
    # the beam's pattern (each intent repeated) or an arbitrary row selection
    idx = torch.arange(3).repeat_interleave(4) if grouped else torch.tensor([2, 0, 1, 1, 2, 0])
    N = len(idx)
    tokens = [torch.full((N, 1), BOS)] + [torch.randint(4, 50, (N, 1), generator=g) for _ in range(10)]
    perms = [torch.randint(0, N, (N,), generator=g) for _ in tokens]
    want = run_steps(model, src, mask, idx, tokens, perms)
    got = run_steps(fast, src, mask, idx, tokens, perms)
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()


def test_row_count_can_change_between_steps():
    model = random_model(seed=1)
    fast = FastTransformer(model, "float32")
    src, mask, g = ragged_batch(50, seed=4)
    idx = torch.arange(3)
    tokens = [torch.full((3, 1), BOS), torch.randint(4, 50, (3, 1), generator=g)]
    with torch.inference_mode():
        outs = []
        for m in (model, fast):
            mem = m.encode(src, mask)
            _, cache = m.step(tokens[0], mem, None)
            perm = torch.tensor([2, 0, 0, 1])
            logits, _ = m.step(tokens[1][perm], m.expand_memory(mem, perm), m.reorder_cache(cache, perm))
            outs.append(logits)
    assert torch.allclose(outs[0], outs[1], atol=1e-4, rtol=1e-4)


def test_step_rejects_positions_past_max_len():
    fast = FastTransformer(random_model(), "float32")
    src, mask, _ = ragged_batch(50, seed=5)
    with torch.inference_mode():
        mem = fast.encode(src, mask)
        cache = None
        with pytest.raises(ValueError, match="max_len"):
            for _ in range(fast.max_len + 1):
                _, cache = fast.step(torch.full((3, 1), 5), mem, cache)


def _beams(model, tok, precision):
    m = model if precision is None else FastTransformer(model, precision)
    cases = [(i, lang) for i, _, lang in TOY]
    out = []
    for intent, lang in cases:
        src = torch.tensor([tok.encode_source(slots.canonicalize(intent)[0], lang)])
        out.append(decode(m, src, src != PAD, DecodeConfig(strategy="beam", beam_size=4, n_best=4))[0])
    return out


def test_float32_beam_equals_training_model(loaded):
    model, tok = loaded
    for want, got in zip(_beams(model, tok, None), _beams(model, tok, "float32")):
        assert [h.ids for h in got] == [h.ids for h in want]
        assert [h.score for h in got] == pytest.approx([h.score for h in want], abs=1e-4)


@needs_int8
def test_int8_keeps_the_memorised_answers(loaded):
    """int8 weights move logits a little; the trained model's best answers stay."""
    model, tok = loaded
    for want, got in zip(_beams(model, tok, None), _beams(model, tok, "int8")):
        assert got[0].ids == want[0].ids
        assert got[0].logprob == pytest.approx(want[0].logprob, abs=0.5)


@needs_int8
def test_int8_logits_close_to_float32():
    model = random_model(seed=2)
    src, mask, g = ragged_batch(50, seed=6)
    idx = torch.arange(3).repeat_interleave(2)
    tokens = [torch.full((6, 1), BOS)] + [torch.randint(4, 50, (6, 1), generator=g) for _ in range(6)]
    perms = [torch.arange(6)] * len(tokens)
    f32 = run_steps(FastTransformer(model, "float32"), src, mask, idx, tokens, perms)
    i8 = run_steps(FastTransformer(model, "int8"), src, mask, idx, tokens, perms)
    err = (i8 - f32).abs().max() / f32.abs().max()
    assert err < 0.05, err


def test_resolve_precision(monkeypatch):
    monkeypatch.delenv("NL2CODE_PRECISION", raising=False)
    assert resolve_precision("float32") == "float32"
    assert resolve_precision(None) == ("int8" if int8_available() else "float32")
    monkeypatch.setenv("NL2CODE_PRECISION", "float32")
    assert resolve_precision(None) == "float32"
    assert resolve_precision("INT8") == "int8"
    with pytest.raises(UsageError, match="unknown precision"):
        resolve_precision("fp4")


def test_rnn_runs_float32():
    cfg = ModelConfig(arch="rnn", vocab_size=40, d_model=16, rnn_hidden=24, rnn_layers=1, max_len=16)
    model = build_model(cfg).eval()
    runner, precision = for_inference(model, "int8")
    assert runner is model and precision == "float32"


def test_generator_reports_precision(tiny_model):
    gen = Generator.from_checkpoint(tiny_model, precision="float32")
    assert gen.info()["precision"] == "float32"
    assert gen.info()["parameters"] > 0
    assert gen.generate("sort list `xs` in descending order")[0].code == "xs.sort(reverse=True)"


def test_cli_rejects_unknown_precision(tiny_model):
    from nl2code.cli import app

    res = CliRunner().invoke(app, ["--precision", "fp4", "--model", str(tiny_model), "sort a list"])
    assert res.exit_code == 2
    assert "unknown precision 'fp4'" in res.output
    assert len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("precision", ["float32", pytest.param("int8", marks=needs_int8)])
def test_batch_equals_one_at_a_time(tiny_model, precision):
    """float32 decodes a batch together (ragged sources, grouped memory); int8 one by one."""
    gen = Generator.from_checkpoint(tiny_model, precision=precision)
    intents = [i for i, _, lang in TOY if lang == "python"][:5] + ["make a web server"]
    batch = gen.generate_batch(intents, "python", n=3)
    for intent, cands in zip(intents, batch):
        single = gen.generate_batch([intent], "python", n=3)[0]
        assert [(c.code, round(c.score, 4)) for c in cands] == [(c.code, round(c.score, 4)) for c in single]
