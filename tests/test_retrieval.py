"""Retrieval index, API table, the reverse model and what they add to generation."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from nl2code import apicheck, retrieval
from nl2code.data.records import Example
from nl2code.errors import CheckpointError, UsageError

PAIRS = [
    Example("sort list `xs` in descending order", "xs.sort(reverse=True)", "python", "conala"),
    Example("reverse list `xs`", "xs[::-1]", "python", "conala"),
    Example("merge two dictionaries d1 and d2", "merged = {**d1, **d2}", "python", "conala-free"),
    Example("count lines in file 'log.txt'", "wc -l log.txt", "bash", "nl2bash"),
    Example("list all files in the current directory", "ls -la", "bash", "tldr"),
    Example("find all python files", "find . -name '*.py'", "bash", "mined-comment"),
]


@pytest.fixture()
def index(tmp_path: Path) -> retrieval.Index:
    retrieval.build(PAIRS, tmp_path / "index.sqlite", {"conala", "nl2bash", "tldr"})
    return retrieval.Index(tmp_path / "index.sqlite")


def test_search_filters_language_and_sources(index):
    hits = index.search("sort a list descending", "python", k=3)
    assert hits[0].code == "xs.sort(reverse=True)"
    assert all(h.lang == "python" for h in hits)
    assert not any(h.source == "conala-free" for h in hits)  # not in the index's sources
    assert [h.code for h in index.search("count the lines of a file", "bash", 1)] == ["wc -l log.txt"]
    assert index.search("find python files", "bash", 3)[0].code != "find . -name '*.py'"  # mined: not indexed
    assert index.search("the of a", "python") == []  # nothing but stop words
    assert index.facts["pairs"] == 4


def test_search_is_deterministic_and_falls_back_to_any_word(index):
    a = index.search("reverse list and sort it", "python", 2)
    b = index.search("reverse list and sort it", "python", 2)
    assert a == b and len(a) == 2  # no pair has every word: the OR query fills the list


def test_corrupted_or_foreign_index_is_refused(tmp_path: Path):
    bad = tmp_path / "index.sqlite"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x07" * 5000)
    with pytest.raises(CheckpointError, match="not a valid retrieval index"):
        retrieval.Index(bad).search("sort list", "python")
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE info(key TEXT, value TEXT)")
    con.execute("INSERT INTO info VALUES ('schema', '\"something-else\"')")
    con.commit()
    con.close()
    with pytest.raises(CheckpointError, match="not an nl2code retrieval index"):
        retrieval.Index(other).search("sort list", "python")


MORE = [
    Example("sort a list of files by size", "ls -S", "bash", "tldr"),
    Example("sorting files and sorting lines", "sort -u file", "bash", "tldr"),
    Example("list files sorted by modification time", "ls -t", "bash", "nl2bash"),
    Example("count files in a directory", "ls | wc -l", "bash", "nl2bash"),
    Example("read_csv a file into a data frame", "pd.read_csv(f)", "python", "conala"),
    Example("read a csv file", "open(f).read()", "python", "conala"),
    Example("files files files list", "ls", "bash", "tldr"),
]


def _fts5_only(path: Path) -> retrieval.Index:
    """The same index answered by FTS5's own bm25() (as an index built before the postings)."""
    ix = retrieval.Index(path)
    ix._open()
    ix._postings = None
    return ix


@pytest.mark.parametrize("query,lang,k", [
    ("list files", "bash", 3), ("sort the files by size", "bash", 2), ("count files and lines", "bash", 5),
    ("sorting sort sorts", "bash", 3), ("files", "bash", 1), ("nothing matches zzyzx", "bash", 3),
    ("reverse list and sort it", "python", 2), ("read_csv file", "python", 3), ("read csv file", "python", 3),
    ("sort list descending", "python", 1), ("list files", "perl", 3), ("merge dictionaries", "python", 4),
])
def test_exported_postings_score_exactly_like_fts5(tmp_path: Path, query, lang, k):
    retrieval.build(PAIRS + MORE, tmp_path / "index.sqlite")
    fast, slow = retrieval.Index(tmp_path / "index.sqlite"), _fts5_only(tmp_path / "index.sqlite")
    a, b = fast.search(query, lang, k), slow.search(query, lang, k)
    assert fast._postings is not None
    assert [(h.intent, h.code) for h in a] == [(h.intent, h.code) for h in b]
    assert [h.bm25 for h in a] == pytest.approx([h.bm25 for h in b], abs=1e-12)


def test_postings_can_be_added_to_an_old_index(tmp_path: Path):
    f = tmp_path / "index.sqlite"
    retrieval.build(PAIRS + MORE, f)
    con = sqlite3.connect(f)
    con.executescript("DROP TABLE postings; DROP TABLE rowdata;")
    con.commit()
    con.close()
    old = retrieval.Index(f)
    before = old.search("count files in the directory", "bash", 3)
    assert old._postings is None and before  # an index without postings answers through FTS5
    old.close()
    retrieval.add_postings(f)
    new = retrieval.Index(f)
    assert new.search("count files in the directory", "bash", 3) == before and new._postings is not None


def test_damaged_postings_are_refused(tmp_path: Path):
    f = tmp_path / "index.sqlite"
    retrieval.build(PAIRS + MORE, f)
    con = sqlite3.connect(f)
    con.execute("UPDATE postings SET docs = x'00ff00ff' WHERE term = 'file'")
    con.commit()
    con.close()
    ix = retrieval.Index(f)
    assert ix.search("sort list", "python", 2)  # other terms still answer
    with pytest.raises(CheckpointError, match="postings of 'file' are damaged"):
        ix.search("list files", "bash", 3)
    con = sqlite3.connect(f)
    con.execute("UPDATE rowdata SET data = x'0102' WHERE name = 'doclen'")
    con.commit()
    con.close()
    with pytest.raises(CheckpointError, match="exported postings are damaged"):
        retrieval.Index(f).search("sort list", "python", 2)


def test_api_check_names_that_do_not_exist():
    table = apicheck.ApiTable(apicheck.build_table(["ls -la | grep x", "tar xf a.tar"],
                                                   modules=("os", "os.path", "re")))
    assert table.problems("os.dirname(p)", "python") == ["os.dirname: os has no 'dirname'"]
    assert table.problems("os.path.dirname(p)", "python") == []
    assert table.problems("import re as regex\nregex.serch('a', s)", "python") == ["regex.serch: re has no 'serch'"]
    assert table.problems("os = make()\nos.anything", "python") == []  # a local name, not the module
    assert table.problems("json.dumps(x)", "python") == []  # a module not in the table: no judgement
    assert table.problems("ls -la | grepp x", "bash") == ["unknown command 'grepp'"]
    assert table.problems("./build.sh && cd /tmp", "bash") == []
    with pytest.raises(ValueError):
        apicheck.ApiTable({"schema": "other"})


def _reverse_model(tiny_model: Path, tmp: Path) -> Path:
    from conftest import tiny_configs, write_toy_corpus

    from nl2code.train import train

    corpus = write_toy_corpus(tmp / "corpus", copies=4)
    tcfg, mcfg = tiny_configs(corpus, tmp / "rev", init_from=str(tiny_model), task="explain",
                              max_steps=250, eval_every=250)
    return train(tcfg, mcfg)


@pytest.fixture(scope="module")
def full_model(tiny_model, tmp_path_factory) -> Path:
    """The tiny model with a reverse model, a retrieval index and an API table."""
    from nl2code import checkpoint

    tmp = tmp_path_factory.mktemp("full")
    rev = _reverse_model(tiny_model, tmp)
    corpus = tmp / "aux"
    corpus.mkdir()
    retrieval.build(PAIRS, corpus / "index.sqlite")
    apicheck.save_table(apicheck.build_table(["ls -la"], modules=("os", "os.path")), corpus / "api.json")
    checkpoint.package(tiny_model, tmp / "model", {}, half=True, explain=rev, corpus=corpus)
    return tmp / "model"


def test_package_carries_aux_files_under_the_manifest(full_model: Path):
    files = json.loads((full_model / "manifest.json").read_text())["files"]
    assert {"explain.safetensors", "explain.json", "index.sqlite", "api.json"} <= set(files)
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(full_model)
    assert gen.info()["parts"] == {"retrieval": True, "explain": True, "api_check": True}


def test_retrieved_candidates_are_slot_adapted(full_model: Path):
    from nl2code.engine import Generator

    from nl2code import slots

    gen = Generator.from_checkpoint(full_model)
    _, slot_list = slots.canonicalize("sort list `ys` in descending order")
    hits = gen.augment.retrieved("sort list `ys` in descending order", slot_list, "python")
    assert hits[0][0] == "ys.sort(reverse=True)"  # the pair's `xs` became the user's `ys`
    # an intent the tiny model never saw: the retrieved pair joins the candidates
    cands = gen.generate("merge two dictionaries d1 and d2", "python", n=10)
    assert any(c.features["retrieved"] and c.code == "merged = {**d1, **d2}" for c in cands)
    assert all(c.features["reconstruction"] is not None for c in cands)  # reverse model scored each


def test_reverse_model_scores_only_the_best_candidates(full_model: Path, monkeypatch):
    from nl2code import engine
    from nl2code.rerank import score

    gen = engine.Generator.from_checkpoint(full_model)
    rows, real = [], gen.augment.reconstruction
    monkeypatch.setattr(gen.augment, "reconstruction", lambda i, codes, lang: rows.append(len(codes)) or real(i, codes, lang))
    monkeypatch.setattr(engine, "RECON_ROWS", 2)
    live = [c for c in gen.candidates("sort list `xs` in descending order", "python", beam=8).ranked if c.parses]
    scored = [c for c in live if c.features["reconstruction_scored"]]
    rest = [c for c in live if not c.features["reconstruction_scored"]]
    assert rows == [2] and len(scored) == 2 and rest
    # the others carry the worst scored value: it cannot lift them past a scored candidate
    assert {c.features["reconstruction"] for c in rest} == {min(c.features["reconstruction"] for c in scored)}
    cfg = gen.rerank_for("python")  # the scored two were the best by every other feature

    def pre(c):
        return score({**c.features, "reconstruction": None}, cfg)

    assert min(pre(c) for c in scored) >= max(pre(c) for c in rest)


def test_reverse_model_prefers_the_right_code(full_model: Path):
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(full_model)
    ex = gen.augment.explainer
    right, wrong = ex.scores("get the length of list var_0", ["len(var_0)", "print('hello world')"], "python")
    assert right > wrong
    assert gen.explain("len(xs)", "python")  # some text
    for bad, msg in (("", "empty code"), ("a\x00b", "NUL"), ("x = 1\n" * 5000, "too long")):
        with pytest.raises(UsageError, match=msg):
            gen.explain(bad, "python")


def test_explain_cli(full_model: Path, tiny_model: Path):
    def run(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "nl2code", "explain", *args], input=stdin,
                              capture_output=True, text=True, timeout=120)

    r = run("len(xs)", "-m", str(full_model), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["explanations"] and out["error"] is None
    r = run("-m", str(full_model), "-l", "bash", stdin="ls -la\n")
    assert r.returncode == 0 and r.stdout.strip()
    r = run("-m", str(tiny_model), "len(xs)")  # no reverse model in that folder
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "no reverse model" in r.stderr


def _with_bound(full_model: Path, dst: Path, bound) -> Path:
    from nl2code import checkpoint

    weights = {"python": {"low_confidence": bound}} if bound is not None else {}
    checkpoint.package(full_model, dst, {"rerank": weights})
    return dst


@pytest.mark.parametrize("bound,expected", [(1e6, True), (-1e6, False), (None, None)])
def test_low_confidence_mark(full_model: Path, tmp_path: Path, bound, expected):
    """Marked against the model's bound when the reverse model scored the candidate; not
    judged (None) without a bound, for unscored candidates, and under a budget that skips it."""
    from nl2code import engine

    gen = engine.Generator.from_checkpoint(_with_bound(full_model, tmp_path / "m", bound))
    live = [c for c in gen.candidates("sort list `xs` in descending order", "python", beam=8).ranked if c.parses]
    scored = [c for c in live if c.features["reconstruction_scored"]]
    assert scored and {c.low_confidence for c in scored} == {expected}
    assert {c.low_confidence for c in live if not c.features["reconstruction_scored"]} <= {None}
    assert all(c.to_dict()["low_confidence"] is c.low_confidence for c in live)
    gen.augment = None  # as when a latency budget skips the reverse model
    assert {c.low_confidence for c in gen.generate("sort list `xs` in descending order", "python", n=3)} == {None}


def test_low_confidence_ignores_the_danger_penalty():
    from nl2code.rerank import Candidate, RerankConfig, mark_confidence, score

    f = {"norm_logprob": -1.0, "coverage": 1.0, "invented": 0, "log_length": 1.0, "reconstruction": -1.0,
         "reconstruction_scored": True}

    def cands(cfg):  # each with its score as the engine leaves it (the danger penalty included)
        made = [Candidate("a", "bash", 0, 0, True, dict(f)), Candidate("rm -rf x", "bash", 0, 0, True, dict(f),
                ["deletes files"]), Candidate("(", "bash", 0, 0, False, dict(f))]
        for c in made:
            c.score = score(c.features, cfg)
        return made

    cfg = RerankConfig(w_reconstruction=1.0, low_confidence=-5.0)
    safe, risky, unparsed = cands(cfg)
    assert risky.score < -5.0  # -1 + 1 - 1 - 100
    mark_confidence([safe, risky, unparsed], cfg)
    assert safe.low_confidence is False and risky.low_confidence is False  # -1 + 1 - 1 = -1 either way
    assert unparsed.low_confidence is None
    cfg = RerankConfig(w_reconstruction=1.0, low_confidence=0.0)
    safe, risky, _ = cands(cfg)
    mark_confidence([safe, risky], cfg)
    assert safe.low_confidence is True and risky.low_confidence is True


def test_low_confidence_in_the_cli_json_and_editor(full_model: Path, tmp_path: Path):
    from nl2code_lsp.convert import describe

    def run(model, *args):
        return subprocess.run([sys.executable, "-m", "nl2code", "--no-log", "-m", str(model), *args,
                               "sort list `xs` in descending order"], capture_output=True, text=True, timeout=120)

    low, sure = _with_bound(full_model, tmp_path / "low", 1e6), _with_bound(full_model, tmp_path / "sure", -1e6)
    r = run(low)
    assert r.returncode == 0 and r.stdout.strip() and "low confidence" not in r.stdout
    assert r.stderr.count("\n") == 1 and "low confidence" in r.stderr
    r = run(sure)
    assert r.returncode == 0 and r.stdout.strip() and "low confidence" not in r.stderr
    out = json.loads(run(low, "--json").stdout)
    assert out["candidates"][0]["low_confidence"] is True
    assert "low confidence" in run(low, "--explain").stderr.split("nl2code: low confidence")[0]  # the table's why
    from nl2code.engine import Generator

    top = Generator.from_checkpoint(low).generate("sort list `xs` in descending order", "python")[0]
    assert "low confidence" in describe(top)
    top = Generator.from_checkpoint(sure).generate("sort list `xs` in descending order", "python")[0]
    assert "low confidence" not in describe(top)


@pytest.mark.parametrize("bound", ["-14", True, float("nan")])
def test_bad_low_confidence_bound_is_refused(full_model: Path, tmp_path: Path, bound):
    from nl2code.engine import Generator

    with pytest.raises(CheckpointError, match="low-confidence bound"):
        Generator.from_checkpoint(_with_bound(full_model, tmp_path / "m", bound))


def test_corrupted_index_in_a_model_folder_is_rejected(full_model: Path, tmp_path: Path):
    from nl2code.engine import Generator

    copy = tmp_path / "m"
    shutil.copytree(full_model, copy)
    data = bytearray((copy / "index.sqlite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "index.sqlite").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="index.sqlite does not match its sha256"):
        Generator.from_checkpoint(copy)


def test_lsp_explain_action_parts(full_model: Path):
    import asyncio

    from nl2code.engine import Generator
    from nl2code_lsp import explain_action

    lines = ["# a comment", "xs.sort(reverse=True)", "    print(xs)", ""]
    assert explain_action.selected_code(lines, 0, 0, ("#",)) is None  # only a comment
    assert explain_action.selected_code(lines, 0, 2, ("#",)) == "# a comment\nxs.sort(reverse=True)\n    print(xs)"
    assert explain_action.selected_code(lines, 2, 9, ("#",)) is None  # past the end
    edit = explain_action.comment_edit("file:///a.py", 1, "sort  the list\n", "    ", "#")
    (change,) = edit.changes["file:///a.py"]
    assert change.new_text == "    # sort the list\n" and change.range.start.line == 1
    gen = Generator.from_checkpoint(full_model)
    text = asyncio.run(explain_action.explanation(gen, "len(xs)", "python"))
    assert isinstance(text, str) and text


def _padded_logprobs(module, srcs, tgts):
    """Teacher forcing the plain way: padded rows through the module's forward pass."""
    import torch
    import torch.nn.functional as F

    from nl2code.tokenizer import BOS, PAD

    S, T = max(len(s) for s in srcs), max(len(t) for t in tgts)
    src = torch.full((len(srcs), S), PAD, dtype=torch.long)
    tin = torch.full((len(tgts), T), PAD, dtype=torch.long)
    tout = torch.full((len(tgts), T), PAD, dtype=torch.long)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        src[i, : len(s)] = torch.tensor(s)
        tin[i, : len(t)] = torch.tensor([BOS] + t[:-1])
        tout[i, : len(t)] = torch.tensor(t)
    with torch.inference_mode():
        logits = module(src, src != PAD, tin).float()
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1), ignore_index=PAD,
                              reduction="none").view(tout.shape).sum(1)
    return [(-float(v), len(t)) for v, t in zip(nll, tgts)]


@pytest.mark.parametrize("int8", [False, True])
def test_packed_teacher_forcing_matches_padded_rows(tiny_model: Path, int8: bool):
    """Teacher forcing packs the rows into one sequence without padding (block masks keep
    them apart; one shared source is encoded once). In float32 that is the padded batch's
    numbers; in int8 the input scales come from real tokens only, so they move a little."""
    from nl2code.augment import _int8
    from nl2code.checkpoint import load_model
    from nl2code.explain import teacher_forced_logprobs
    from nl2code.tokenizer import EOS

    model, _, tok, _ = load_model(tiny_model)
    module = _int8(model) if int8 else model
    src = tok.encode_source("sort list var_0 in descending order", "python")
    other = tok.encode_source("get the length of var_0 and print it twice", "python")
    tgts = [tok.encode(c) + [EOS] for c in ("var_0.sort(reverse=True)", "len(var_0)", "print(var_0[::-1])")]
    tol = dict(rel=0.05, abs=0.05 * 30) if int8 else dict(rel=1e-5, abs=1e-4)
    for srcs in ([src] * 3, [src, other, src], [other, src, other]):
        got = teacher_forced_logprobs(module, srcs, tgts)
        want = _padded_logprobs(module, srcs, tgts)
        assert [n for _, n in got] == [len(t) for t in tgts]
        assert [lp for lp, _ in got] == pytest.approx([lp for lp, _ in want], **tol)
    # each row sees its own source only: swapping another row's source leaves it unchanged
    a = teacher_forced_logprobs(model, [src, other, src], tgts)
    b = teacher_forced_logprobs(model, [src, src, src], tgts)
    assert a[0][0] == pytest.approx(b[0][0], abs=1e-4) and a[2][0] == pytest.approx(b[2][0], abs=1e-4)
    assert a[1][0] != pytest.approx(b[1][0], abs=1e-3)


def test_long_rows_are_scored_padded(tiny_model: Path, monkeypatch):
    """Past PACK_MAX_TOKENS teacher forcing pads its rows (packed attention grows with the
    square of the packed length): the very numbers of the padded pass, int8 included."""
    from nl2code import explain
    from nl2code.augment import _int8
    from nl2code.checkpoint import load_model
    from nl2code.tokenizer import EOS

    model, _, tok, _ = load_model(tiny_model)
    module = _int8(model)
    srcs = [tok.encode_source(i, "python") for i in ("sort list var_0", "get the length of var_0 and print it")]
    tgts = [tok.encode(c) + [EOS] for c in ("var_0.sort(reverse=True)", "print(len(var_0))")]
    packed = explain.teacher_forced_logprobs(module, srcs, tgts)
    monkeypatch.setattr(explain, "PACK_MAX_TOKENS", 10)
    padded = explain.teacher_forced_logprobs(module, srcs, tgts)
    assert padded == _padded_logprobs(module, srcs, tgts)
    assert padded != packed  # int8 input scales over padding differ: the other path ran


class _Looping:
    """A protocol model that always prefers token 4, then 5, 6, ... (EOS never wins)."""

    V = 16

    def encode(self, src, src_mask):
        return {}

    def expand_memory(self, memory, idx):
        return memory

    def step(self, tgt_ids, memory, cache):
        import torch

        logits = -torch.arange(self.V, dtype=torch.float32).repeat(tgt_ids.shape[0], 1) * 0.5
        logits[:, :4] = -50.0  # PAD, UNK, BOS, EOS
        return logits, (cache or 0) + 1

    def reorder_cache(self, cache, beam_idx):
        return cache


def _repeats(ids: list[int], n: int) -> bool:
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("beam", [1, 3])
def test_explanations_never_repeat_a_trigram(beam):
    """A reverse model that loops ("1, 1, 1, ...") is held to no repeated 3-gram when
    explaining; without the guard the same model repeats itself."""
    import torch

    from nl2code.config import DecodeConfig
    from nl2code.decode import decode
    from nl2code.explain import NO_REPEAT_NGRAM, _NoRepeat

    src = torch.zeros((1, 1), dtype=torch.long)
    cfg = DecodeConfig(strategy="beam", beam_size=beam, n_best=beam, max_len=12)
    plain = decode(_Looping(), src, src == 0, cfg)[0]
    assert _repeats(plain[0].ids, NO_REPEAT_NGRAM)
    guarded = decode(_NoRepeat(_Looping(), NO_REPEAT_NGRAM), src, src == 0, cfg)[0]
    assert len(guarded) == beam
    for h in guarded:
        assert len(h.ids) == 12 and not _repeats(h.ids, NO_REPEAT_NGRAM), h.ids


def test_experiment_knobs_retrieved_snippets_and_scored_rows(full_model: Path):
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(full_model)
    intent = "merge dicts `d1` and `d2`"
    shipped = gen.candidates(intent, "python").ranked
    assert any(c.features["retrieved"] for c in shipped)
    gen.retrieve_k, gen.recon_rows = 0, 1  # benchmarks/rerank_fit.py --retrieve-k 0 --recon-rows 1
    live = [c for c in gen.candidates(intent, "python").ranked if c.parses]
    assert not any(c.features["retrieved"] for c in live)
    assert sum(c.features["reconstruction_scored"] for c in live) == 1
    gen.retrieve_k = gen.recon_rows = None  # back to the shipped behaviour
    assert [c.code for c in gen.candidates(intent, "python").ranked] == [c.code for c in shipped]
