"""Denoising pre-training (nl2code/noise.py): the noise is deterministic and corrupts; the
examples carry the language tag and the clean code; a mixed run trains (and learns the
denoising task itself), resumes exactly and can be fine-tuned; bad values are one-line errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from conftest import cli, run_limited, tiny_configs, write_toy_corpus
from nl2code import checkpoint, noise
from nl2code.batches import encode_examples, tokenizer_texts
from nl2code.config import TrainConfig
from nl2code.data.records import read_jsonl
from nl2code.errors import UsageError
from nl2code.tokenizer import Tokenizer
from nl2code.train import load_train_config, train
from nl2code.trainrun import dev_loss


def small(corpus: Path, out: Path, **over):
    """A very small model: these runs are about the mechanism, not quality."""
    tcfg, mcfg = tiny_configs(corpus, out, **{"max_steps": 60, "eval_every": 30, "log_every": 1,
                                              "dev_bleu_examples": 2, **over})
    mcfg.d_model, mcfg.n_head, mcfg.n_enc_layer, mcfg.n_dec_layer, mcfg.d_ff = 32, 2, 1, 1, 64
    return tcfg, mcfg


def losses(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if r["event"] == "step"}


# -- the noise ---------------------------------------------------------------------------

def test_corrupt_is_deterministic_and_corrupts():
    ids = list(range(10, 70))
    a = noise.corrupt(ids, random.Random(5), 0.35, 3.0, 0.1)
    assert a == noise.corrupt(ids, random.Random(5), 0.35, 3.0, 0.1)
    assert a != noise.corrupt(ids, random.Random(6), 0.35, 3.0, 0.1)
    assert a != ids and noise.SENTINEL in a
    kept = [t for t in a if t != noise.SENTINEL]
    assert kept == sorted(kept) and set(kept) < set(ids)  # the rest stays, in order
    assert len(kept) <= len(ids) - round(0.35 * len(ids))


def test_mask_fraction_and_spans_without_drop():
    ids = list(range(100, 200))
    rng = random.Random(1)
    for span in (1.0, 3.0, 8.0):
        out = noise.corrupt(ids, rng, 0.3, span, 0.0)
        kept = [t for t in out if t != noise.SENTINEL]
        assert len(kept) == 70  # exactly 30 of 100 hidden, nothing dropped
        gaps = out.count(noise.SENTINEL)
        assert 1 <= gaps <= 30
    # longer spans mean fewer sentinels for the same number of hidden pieces
    many = sum(noise.corrupt(ids, random.Random(s), 0.3, 1.0, 0.0).count(noise.SENTINEL) for s in range(20))
    few = sum(noise.corrupt(ids, random.Random(s), 0.3, 8.0, 0.0).count(noise.SENTINEL) for s in range(20))
    assert few < many


def test_short_code_is_still_corrupted():
    assert noise.corrupt([7], random.Random(0), 0.35, 3.0, 0.1) == [noise.SENTINEL]
    out = noise.corrupt([7, 8], random.Random(0), 0.35, 3.0, 0.0)
    assert out in ([noise.SENTINEL, 8], [7, noise.SENTINEL])


# -- the examples --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    corpus = write_toy_corpus(tmp_path_factory.mktemp("denoise") / "corpus", copies=2)
    examples = read_jsonl(corpus / "train.jsonl")
    tok = Tokenizer.train(tokenizer_texts(examples), 500)
    return tok, encode_examples(examples, tok, TrainConfig())


def denoiser(encoded, ratio=0.25, weights=None, **over):
    tok, pairs = encoded
    return noise.build(pairs, tok.lang_ids, TrainConfig(denoise_ratio=ratio, seed=3, **over), weights or {})


def test_examples_carry_the_language_tag_and_the_clean_code(encoded):
    tok, pairs = encoded
    d = denoiser(encoded, ratio=1.0)
    assert len(d.codes) == 20  # 40 pairs, 20 distinct codes
    assert len(d.items) == 40
    d.refresh(0)
    clean = {(e.example.lang, tuple(e.tgt)) for e in pairs}
    langs = set()
    for item in d.items:
        lang = item.example.lang
        langs.add(lang)
        assert item.source == noise.SOURCE and item.example.source == noise.SOURCE
        assert (lang, tuple(item.tgt)) in clean
        assert item.src[0] == tok.lang_ids[lang]
        assert item.src[1:] != item.tgt[:-1] and noise.SENTINEL in item.src
    assert langs == {"python", "bash"}


def test_same_epoch_same_examples_next_epoch_other_code(encoded):
    a, b = denoiser(encoded), denoiser(encoded)
    a.refresh(4)
    b.refresh(4)
    assert [(i.src, i.tgt) for i in a.items] == [(i.src, i.tgt) for i in b.items]
    first = [tuple(i.tgt) for i in a.items]
    a.refresh(5)
    assert [tuple(i.tgt) for i in a.items] != first
    seen = set()
    for epoch in range(4):  # 10 examples per epoch, 20 codes: two epochs cover them all
        a.refresh(epoch)
        seen.update(tuple(i.tgt) for i in a.items)
    assert len(seen) == 20


def test_ratio_counts_weighted_pairs_and_zero_is_off(encoded):
    assert len(denoiser(encoded, ratio=0.5).items) == 20
    assert len(denoiser(encoded, ratio=0.5, weights={"toy": 3.0}).items) == 60
    assert denoiser(encoded, ratio=0.0) is None


def test_code_longer_than_the_source_budget_is_left_out(encoded):
    _, pairs = encoded
    d = denoiser(encoded, max_src_len=6)
    assert d.codes and all(len(tgt) <= 6 for _, tgt, _ in d.codes)
    assert len(d.codes) < len({tuple(e.tgt) for e in pairs})


# -- training --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("denoise-train") / "corpus", copies=2)


@pytest.fixture(scope="module")
def mixed(corpus, tmp_path_factory):
    records: list[dict] = []
    out = tmp_path_factory.mktemp("mixed") / "run"
    best = train(*small(corpus, out, denoise_ratio=1.0), log=records.append)
    return best, records


def test_mixed_run_trains_and_its_loss_falls(mixed):
    best, records = mixed
    assert [r for r in records if r["event"] == "denoise"] == [
        {"event": "denoise", "examples_per_epoch": 40, "codes": 20}]
    loss = list(losses(records).values())
    assert len(loss) == 60
    assert sum(loss[-5:]) / 5 < 0.75 * sum(loss[:5]) / 5
    _, _, _, meta = checkpoint.load_model(best)
    assert meta["train_config"]["denoise_ratio"] == 1.0 and meta["corpus_size"] == 40
    assert meta["denoise"] == {"examples_per_epoch": 40, "codes": 20}


def test_the_mixed_run_learned_to_denoise(mixed, corpus, tmp_path):
    """On denoising examples of an epoch neither run trained on, the mixed run's loss is
    lower than that of the same run without denoising."""
    plain = train(*small(corpus, tmp_path / "plain"))
    scores = {}
    for name, folder in (("mixed", mixed[0]), ("plain", plain)):
        model, _, tok, _ = checkpoint.load_model(folder)
        cfg = TrainConfig(denoise_ratio=1.0, seed=11)
        pairs = encode_examples(read_jsonl(corpus / "train.jsonl"), tok, cfg)
        d = noise.build(pairs, tok.lang_ids, cfg, {})
        d.refresh(999)
        scores[name] = dev_loss(model, d.items, cfg)
    assert scores["mixed"] < scores["plain"], scores


def test_mixed_run_resumes_exactly(mixed, corpus, tmp_path):
    """Stopped mid-way and resumed, the run sees the same examples and noise as uninterrupted."""
    _, reference = mixed
    out = tmp_path / "run"
    first: list[dict] = []
    train(*small(corpus, out, denoise_ratio=1.0, max_steps=30), log=first.append)
    rest: list[dict] = []
    train(*small(corpus, out, denoise_ratio=1.0), resume=True, log=rest.append)
    want = losses(reference)
    got = {**losses(first), **losses(rest)}
    assert sorted(got) == sorted(want)
    assert all(got[s] == pytest.approx(want[s], abs=1e-5) for s in want)


def test_finetune_from_the_mixed_run(mixed, corpus, tmp_path):
    best, records = mixed
    ft: list[dict] = []
    tuned = train(*small(corpus, tmp_path / "ft", init_from=str(best), max_steps=20, eval_every=10,
                         warmup_steps=5), log=ft.append)
    assert not [r for r in ft if r["event"] == "denoise"]
    assert losses(ft)[1] < losses(records)[1] - 1.0  # it starts from the trained weights
    model, _, tok, meta = checkpoint.load_model(tuned)
    _, _, pre_tok, _ = checkpoint.load_model(best)
    assert tok.proto == pre_tok.proto and "denoise" not in meta
    assert meta["train_config"]["denoise_ratio"] == 0.0


# -- bad values ------------------------------------------------------------------------------

@pytest.mark.parametrize("line, words", [
    ("denoise_ratio = -0.5", "denoise_ratio = -0.5: must be in [0, 10]"),
    ("denoise_ratio = \"half\"", "denoise_ratio = 'half': must be a number"),
    ("denoise_ratio = nan", "must be a finite number"),
    ("denoise_ratio = 11.0", "must be in [0, 10]"),
    ("denoise_mask = 0.0", "denoise_mask = 0.0: must be in (0, 0.9]"),
    ("denoise_mask = 1.0", "denoise_mask = 1.0: must be in (0, 0.9]"),
    ("denoise_span = 0.5", "denoise_span = 0.5: must be in [1, 20]"),
    ("denoise_drop = 0.9", "denoise_drop = 0.9: must be in [0, 0.5]"),
    ("denoise_ratio = 0.5\ntask = \"explain\"", "needs task = \"code\""),
    ("denoise_ratio = 0.5\nsource_weights = { denoise = 2.0 }", "remove it from source_weights"),
])
def test_bad_values_are_one_line_errors(tmp_path, line, words):
    path = tmp_path / "cfg.toml"
    path.write_text(f"[train]\n{line}\n")
    with pytest.raises(UsageError) as err:
        load_train_config(path)
    message = str(err.value)
    assert words in message and "\n" not in message


def test_cli_names_the_bad_value(tmp_path):
    corpus = write_toy_corpus(tmp_path / "corpus")
    path = tmp_path / "cfg.toml"
    path.write_text("[train]\ndenoise_mask = 2.5\n")
    rc, out, err = run_limited(cli("train", str(path), "--corpus", str(corpus), "--out", str(tmp_path / "o")),
                              timeout=900)  # a hang guard only: the machine may be busy
    assert rc != 0 and not (tmp_path / "o" / "last").exists()
    assert err.strip().startswith("nl2code: error:") and len(err.strip().splitlines()) == 1
    assert "denoise_mask = 2.5" in err
