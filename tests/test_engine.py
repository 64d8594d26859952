"""Generator: intent -> ranked candidates that parse, slots restored, deterministic, thread-safe."""

from __future__ import annotations

import threading

import pytest
import torch

from conftest import TOY
from nl2code import decode as decode_mod
from nl2code.config import DecodeConfig
from nl2code.decode import Hypothesis
from nl2code.engine import MAX_INTENT_CHARS, Generator
from nl2code.errors import CheckpointError, NoParseableCandidate, UsageError
from nl2code.rerank import Candidate, RerankConfig, rerank, score
from nl2code.syntax import check

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def gen(tiny_model) -> Generator:
    return Generator.from_checkpoint(tiny_model)


INTENTS = [(i, lang) for i, _, lang in TOY] + [
    ("make a web server", "python"),
    ("sort dict `d` by value", "python"),
    ("remove the build folder", "bash"),
]


def test_memorised_examples(gen):
    assert gen.generate("sort list `xs` in descending order")[0].code == "xs.sort(reverse=True)"
    assert gen.generate("list all files in the current directory", "bash")[0].code == "ls -la"
    top = gen.generate("define a function that returns the square of x")[0]
    assert top.code == "def square(x):\n    return x * x"


@pytest.mark.parametrize("intent,lang", INTENTS)
def test_every_candidate_parses(gen, intent, lang):
    try:
        cands = gen.generate(intent, lang, n=5)
    except NoParseableCandidate:
        return  # an explicit "nothing parses" is allowed for a novel intent; broken code is not
    assert 1 <= len(cands) <= 5
    for c in cands:
        assert isinstance(c, Candidate)
        assert c.parses and c.lang == lang
        assert check(c.code, lang).ok, c.code
        assert c.features["finished"]
    scores = [c.score for c in cands]
    assert scores == sorted(scores, reverse=True)
    assert len({c.code for c in cands}) == len(cands)


@pytest.mark.parametrize("intent,lang,expected", [
    ("sort list `items` in descending order", "python", "items.sort(reverse=True)"),
    ("get the length of list `people`", "python", "len(people)"),
    ("convert string `line` to uppercase", "python", "line.upper()"),
    ("read csv file 'people.csv' into a dataframe", "python", "pd.read_csv('people.csv')"),
    ("count lines in file 'server.log'", "bash", "wc -l server.log"),
    ("search for 'warning' in file 'db.log'", "bash", "grep 'warning' db.log"),
])
def test_slots_from_intent_restored(gen, intent, lang, expected):
    top = gen.generate(intent, lang)[0]
    assert expected in top.code
    assert "var_" not in top.code and "str_" not in top.code


def test_deterministic(gen):
    for intent, lang in INTENTS[:6]:
        a = [(c.code, c.score) for c in gen.generate(intent, lang)]
        b = [(c.code, c.score) for c in gen.generate(intent, lang)]
        assert a == b


def test_generate_batch_equals_generate(gen):
    intents = [i for i, lang in INTENTS if lang == "python"][:6]
    batch = gen.generate_batch(intents, "python", n=3)
    for intent, cands in zip(intents, batch):
        assert [c.code for c in cands] == [c.code for c in gen.generate(intent, "python", n=3)]


def test_thread_safety(gen):
    jobs = [(i, lang) for i, lang in INTENTS[:8]]
    want = {job: [c.code for c in gen.generate(*job)] for job in jobs}
    got: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            got[k] = [(job, [c.code for c in gen.generate(*job)]) for job in (jobs[k:] + jobs[:k])]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(got) == 4
    for results in got.values():
        for job, codes in results:
            assert codes == want[job]


def test_n_limits_candidates(gen):
    assert len(gen.generate("reverse list `xs`", n=1)) == 1
    cands = gen.generate("reverse list `xs`", n=7)
    assert 1 <= len(cands) <= 7


@pytest.mark.parametrize("config", [
    DecodeConfig(strategy="greedy", n_best=1),
    DecodeConfig(strategy="beam", beam_size=3, n_best=3, length_penalty=0.5),
    DecodeConfig(strategy="sample", beam_size=1, n_best=4, temperature=0.5, seed=1),
])
def test_custom_decode_config(gen, config):
    cands = gen.generate("sort list `xs` in descending order", config=config)
    assert cands[0].code == "xs.sort(reverse=True)"


# --- no parseable candidate ------------------------------------------------------------------

def _broken_decode(gen, code: str):
    ids = gen.tok.encode(code)

    def fake(model, src, mask, cfg, guides=None, deadline=None):  # the guides are ignored: broken on purpose
        cfg.validate()
        return [[Hypothesis(ids, -1.0, -0.5, True), Hypothesis(ids + ids, -2.0, -0.6, True)]
                for _ in range(src.shape[0])]

    return fake


def test_no_parseable_candidate(gen, monkeypatch):
    monkeypatch.setattr(decode_mod, "decode", _broken_decode(gen, "def (:"))
    with pytest.raises(NoParseableCandidate) as exc:
        gen.generate("define a function")
    assert "no parseable python candidate" in str(exc.value)
    assert exc.value.exit_code == 1
    # candidates() hands back every candidate, unparsed ones marked, without raising
    every = gen.candidates("define a function")
    assert [c.code for c in every.ranked] == ["def (:", "def (:def (:"]
    assert not any(c.parses for c in every.ranked) and every.parsing == []
    assert every.top1.code == "def (:"  # the model's own best, parsing or not
    with pytest.raises(NoParseableCandidate, match="among 2"):
        every.answer(3)
    assert every.best(3) == []
    # the batch form reports "nothing" per intent without raising
    assert gen.generate_batch(["a", "b"]) == [[], []]
    assert [c.parsing for c in gen.candidates_batch(["a", "b"])] == [[], []]


def test_candidates_and_generate_agree(gen):
    """generate = the parsing candidates of candidates(), cut to n; top1 = best model score."""
    for intent, lang in [("sort list `xs` in descending order", "python"),
                         ("list all files in the current directory", "bash")]:
        every = gen.candidates(intent, lang)
        assert every.lang == lang and every.intent == intent
        assert [c.code for c in gen.generate(intent, lang, n=3)] == [c.code for c in every.parsing[:3]]
        unparsed_seen = False
        for c in every.ranked:  # parsing ones first, then the rest
            unparsed_seen |= not c.parses
            assert c.parses is False or not unparsed_seen
        own = [c for c in every.ranked if not c.features.get("repaired")]
        assert every.top1.features["norm_logprob"] == max(c.features["norm_logprob"] for c in own)


def test_one_beam_rule(gen):
    """The engine owns n -> beam: at least DEFAULT_BEAM (or the beam asked for), at least n."""
    from nl2code.engine import DEFAULT_BEAM

    assert gen.decode_config().beam_size == DEFAULT_BEAM
    assert gen.decode_config(n=7).beam_size == 7 and gen.decode_config(n=7).n_best == 7
    assert gen.decode_config(n=2, beam=3).beam_size == 3
    assert gen.decode_config(n=9, beam=3).beam_size == 9
    greedy = DecodeConfig(strategy="greedy", n_best=1)
    assert gen.decode_config(n=4, config=greedy).strategy == "greedy"
    with pytest.raises(UsageError):
        gen.decode_config(n=0)
    # the width the rule picks is what decode gets
    seen = []
    real = decode_mod.decode
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decode_mod, "decode", lambda m, s, k, cfg, *a: seen.append(cfg.beam_size) or real(m, s, k, cfg, *a))
        gen.generate("reverse list `xs`", n=2, beam=3)
        gen.generate("reverse list `xs`", n=8, beam=3)
        gen.candidates("reverse list `xs`", beam=4)
    assert seen == [3, 8, 4]


def test_python2_print_is_not_offered(gen, monkeypatch):
    monkeypatch.setattr(decode_mod, "decode", _broken_decode(gen, "print 'x'"))
    with pytest.raises(NoParseableCandidate):
        gen.generate("print x")


def test_unfinished_hypothesis_never_offered(gen, monkeypatch):
    ids = gen.tok.encode("x = 1")
    monkeypatch.setattr(decode_mod, "decode",
                        lambda model, src, mask, cfg, *_: [[Hypothesis(ids, -0.1, -0.1, False)]])
    with pytest.raises(NoParseableCandidate):
        gen.generate("set x to 1")


def test_broken_bash_rejected(gen, monkeypatch):
    monkeypatch.setattr(decode_mod, "decode", _broken_decode(gen, "if [ -f x ]; then echo"))
    with pytest.raises(NoParseableCandidate, match="bash"):
        gen.generate("check a file", "bash")


# --- usage errors ----------------------------------------------------------------------------

@pytest.mark.parametrize("intent", ["", "   ", "\n\t", "\x00\x01\x02", " \x7f\x1b "])
def test_empty_intent(gen, intent):
    with pytest.raises(UsageError, match="empty intent"):
        gen.generate(intent)


def test_huge_intent(gen):
    with pytest.raises(UsageError, match="too long"):
        gen.generate("sort " * (MAX_INTENT_CHARS // 5 + 1))


def test_long_but_allowed_intent_is_truncated_not_crashing(gen):
    intent = "sort list `xs` in descending order " * 200  # ~7,000 chars, far past max_len tokens
    try:
        gen.generate(intent)
    except NoParseableCandidate:
        pass


def test_non_text_intent(gen):
    with pytest.raises(UsageError):
        gen.generate(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("lang", ["cobol", "ruby", ""])
def test_unknown_language(gen, lang):
    with pytest.raises(UsageError, match="unknown language"):
        gen.generate("list files", lang)


def test_untrained_language(gen):
    assert gen.meta["languages"] == ["python", "bash"]  # written by training from the corpus
    with pytest.raises(UsageError, match="not trained for javascript"):
        gen.generate("list files", "javascript")


def test_python_only_model_refuses_bash(gen):
    py_only = Generator(gen.model, gen.model_cfg, gen.tok, {"languages": ["python"]}, gen.path)
    with pytest.raises(UsageError, match="not trained for bash"):
        py_only.generate("list files", "sh")
    assert py_only.generate("reverse list `xs`")[0].code == "xs[::-1]"


def test_language_aliases(gen):
    assert gen.generate("list all files in the current directory", "sh")[0].code == "ls -la"
    assert gen.generate("list all files in the current directory", "shellscript")[0].lang == "bash"


@pytest.mark.parametrize("config", [
    DecodeConfig(strategy="beam", temperature=0.5),
    DecodeConfig(strategy="greedy", length_penalty=0.5),
    DecodeConfig(strategy="beam", beam_size=2, n_best=3),
])
def test_useless_flags_rejected(gen, config):
    with pytest.raises(UsageError):
        gen.generate("reverse list `xs`", config=config)


def test_bad_n(gen):
    with pytest.raises(UsageError):
        gen.generate("reverse list `xs`", n=0)


# --- loading -----------------------------------------------------------------------------------

def test_from_checkpoint_env(tiny_model, monkeypatch):
    monkeypatch.setenv("NL2CODE_MODEL", str(tiny_model))
    g = Generator.from_checkpoint(None)
    assert g.generate("reverse list `xs`")[0].code == "xs[::-1]"
    info = g.info()
    assert info["arch"] == "transformer" and info["parameters"] > 0


def test_from_checkpoint_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Generator.from_checkpoint(tmp_path / "nope")


# --- rerank ------------------------------------------------------------------------------------

def test_rerank_drops_unparsed_and_puts_danger_last():
    def cand(code, s, parses=True, danger=()):
        f = {"norm_logprob": s, "coverage": 1.0, "invented": 0, "log_length": 0.0, "danger": list(danger)}
        return Candidate(code, "bash", score(f, RerankConfig()), s, parses, f, list(danger))

    ranked = rerank([cand("rm -rf /", -0.1, danger=["x"]), cand("ls", -0.5), cand("ls -(", -0.01, parses=False)])
    assert [c.code for c in ranked] == ["ls", "rm -rf /"]
    assert [c.code for c in rerank([cand("ls -(", -0.01, parses=False)], keep_unparsed=True)] == ["ls -("]
