"""Retrieval-augmented input (nl2code.context): neighbours, corpora with context, training
and generation with context_k > 0."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl2code import context, retrieval
from nl2code.data.records import Example, read_jsonl
from nl2code.errors import DataError

PAIRS = [
    Example("sort list `xs` in descending order", "xs.sort(reverse=True)", "python", "toy"),
    Example("sort list `ys` in descending order", "ys.sort(reverse=True)", "python", "toy"),
    Example("sort the list `zs` in reverse order", "zs.sort(reverse=True)", "python", "toy"),
    Example("arrange `xs` from smallest to largest", "xs.sort()", "python", "toy"),
    Example("reverse list `xs`", "xs[::-1]", "python", "toy"),
    Example("count lines in file 'log.txt'", "wc -l log.txt", "bash", "toy"),
    Example("count words in file 'a.txt'", "wc -w a.txt", "bash", "toy"),
]


@pytest.fixture()
def index(tmp_path: Path) -> retrieval.Index:
    retrieval.build(PAIRS, tmp_path / "index.sqlite")
    return retrieval.Index(tmp_path / "index.sqlite")


def test_neighbours_skip_the_pair_itself_and_its_near_duplicates(index):
    ex = PAIRS[0]
    hits = index.search(ex.intent, "python", 10)
    assert {h.intent for h in hits} >= {PAIRS[0].intent, PAIRS[1].intent}
    # itself (same code) and its renamed twin (intent overlap 0.8) are near-duplicates;
    # the pair that says "reverse" instead of "descending" is a neighbour to learn from
    assert context.near_duplicate(hits[0], ex.intent, ex.code) is True
    dup = {h.intent: context.near_duplicate(h, ex.intent, ex.code) for h in hits}
    assert dup[PAIRS[1].intent] and not dup[PAIRS[2].intent] and not dup[PAIRS[3].intent]
    got = context.neighbours(index, ex, k=3)
    # slot-adapted: the neighbours' own names became the example's placeholder
    assert set(got) == {"var_0.sort(reverse=True)", "var_0.sort()", "var_0[::-1]"}
    assert len(got) == len(dict.fromkeys(got))  # no snippet twice


def test_dev_pairs_get_what_a_user_would_get(index):
    ex = Example("sort list `ws` in descending order", "ws.sort(reverse=True)", "python", "dev")
    got = context.neighbours(index, ex, k=2, exclude_self=False)
    assert got[0] == "var_0.sort(reverse=True)"


def test_source_ids_appends_cut_snippets_behind_the_tag(tiny_model: Path):
    from nl2code.tokenizer import Tokenizer

    tok = Tokenizer.load(tiny_model / "tokenizer.model")
    src = tok.encode_source("sort list var_0", "python")
    ids = context.source_ids(tok, src, ["var_0.sort()", "sorted(var_0)"], "python", k=1, max_tokens=3, max_len=64)
    tag = tok.lang_ids["python"]
    assert ids[: len(src)] == src and ids[len(src)] == tag
    assert ids[len(src) + 1:] == tok.encode("var_0.sort()")[:3]
    assert len(context.source_ids(tok, src, ["x" * 400] * 3, "python", 3, 48, 20)) == 20


def test_context_survives_the_corpus_round_trip(tmp_path: Path, index):
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "train.jsonl").write_text("".join(e.to_json() + "\n" for e in PAIRS))
    (corpus / "dev.jsonl").write_text(PAIRS[4].to_json() + "\n")
    assert "context" not in json.loads(PAIRS[0].to_json())  # plain corpora stay as they were
    rc = context.main(["--corpus", str(corpus), "--index", str(index.path), "--out", str(tmp_path / "rag")])
    assert rc == 0
    train = read_jsonl(tmp_path / "rag" / "train.jsonl")
    assert [e.intent for e in train] == [e.intent for e in PAIRS]
    assert any(e.context for e in train)
    assert train[0].context == context.neighbours(index, PAIRS[0])
    assert context.main(["--corpus", str(corpus), "--index", str(index.path), "--out", str(tmp_path / "rag")]) == 2


def _rag_corpus(tmp_path: Path) -> tuple[Path, Path]:
    from conftest import TOY, write_toy_corpus

    plain = write_toy_corpus(tmp_path / "plain", copies=4)
    examples = [Example(i, c, lang, "toy") for i, c, lang in TOY]
    retrieval.build(examples, tmp_path / "index.sqlite")
    assert context.main(["--corpus", str(plain), "--index", str(tmp_path / "index.sqlite"),
                         "--out", str(tmp_path / "rag")]) == 0
    return tmp_path / "rag", tmp_path / "index.sqlite"


def test_training_needs_a_corpus_with_context(tmp_path: Path):
    from conftest import tiny_configs, write_toy_corpus

    from nl2code.train import train

    corpus = write_toy_corpus(tmp_path / "plain")
    tcfg, mcfg = tiny_configs(corpus, tmp_path / "run", context_k=2, max_steps=5)
    with pytest.raises(DataError, match="retrieved context"):
        train(tcfg, mcfg)


def test_a_context_model_trains_and_generates_with_its_index(tmp_path: Path):
    import shutil

    from conftest import TOY, tiny_configs

    from nl2code.engine import Generator
    from nl2code import slots
    from nl2code.train import encode_examples, train

    corpus, index_file = _rag_corpus(tmp_path)
    tcfg, mcfg = tiny_configs(corpus, tmp_path / "run", context_k=2)
    best = train(tcfg, mcfg)
    cfg = json.loads((best / "config.json").read_text())
    model_cfg = cfg.get("model", cfg)
    assert model_cfg["context_k"] == 2
    folder = tmp_path / "model"
    shutil.copytree(best, folder)
    shutil.copy(index_file, folder / "index.sqlite")
    gen = Generator.from_checkpoint(folder)
    # the encoder input is the intent plus the neighbours' code, as in training
    intent = "sort list `xs` in descending order"
    canon, slot_list = slots.canonicalize(intent)
    plain = gen.tok.encode_source(canon, "python")
    src, retrieved = gen._with_context(intent, slot_list, "python", plain)
    assert retrieved and len(src) > len(plain) and src[: len(plain)] == plain
    ex = [e for e in read_jsonl(corpus / "train.jsonl") if e.intent == intent][0]
    tok_cfg = type(tcfg)(**{**tcfg.__dict__})
    encoded = encode_examples([ex], gen.tok, tok_cfg, gen.model_cfg)[0]
    assert encoded.src[: len(plain)] == plain and len(encoded.src) > len(plain)
    # it learnt the toy pairs with their context
    right = sum(gen.generate(i, lang, n=1)[0].code == c for i, c, lang in TOY)
    assert right >= len(TOY) * 0.7
