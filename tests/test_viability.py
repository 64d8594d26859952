"""Prefix viability (nl2code/viability.py) and the syntax-guided beam (nl2code/guided.py).

Soundness is checked by brute force: whenever the scanner calls a prefix dead, no
completion from a bounded set makes it parse; every prefix of a valid program is viable;
on a tiny trained model, every hypothesis the guided beam prunes is dead by the same
brute force, and the training programs are never pruned at any token.
"""

from __future__ import annotations

import itertools
import random

import pytest
import torch

from conftest import TOY
from nl2code import slots, syntax
from nl2code.checkpoint import load_model
from nl2code.config import DecodeConfig
from nl2code.decode import _beam, decode
from nl2code.guided import guided_beam
from nl2code.tokenizer import EOS, PAD
from nl2code.viability import START, Guide, advance_bash, advance_python, viable

torch.set_num_threads(1)

VALID = {
    "python": [
        "x = 1", "f(a, [b, {c: d}])", "s = 'a(b'", 's = "]"', "t = '''a\n)b'''", 'u = """x""" + "y"',
        "x = ''", "y = '' + 'z'", "z = ''''''", "# a ) comment\nf()", "d = {'k': (1, 2)}",
        "p = r'\\d+\\)'", "q = 'it\\'s'", "v = f'{x})'", "x = (1 +\n     2)", "x = 1 + \\\n    2",
        "def f(x):\n    return x[0]", "b = b'\\x00)'", "s = 'a\\\nb'", "m = [\n    1,\n]",
    ],
    "bash": [
        "ls -la", "echo ')'", 'echo ")"', "echo \\)", "echo $(ls)", 'echo "$(ls | wc -l)"', "x=(1 2)",
        "echo ${x%)}", "case $x in a) echo a;; esac", "cat <<EOF\nb)\nEOF", "echo # )", "f() { echo; }",
        "echo $((1 + (2 * 3)))", "echo `date`", "echo $'a\\')'", "find . -name '*.py' -exec rm {} \\;",
        "(cd /tmp && ls)", "[[ $x =~ (a|b) ]] && echo y",
    ],
}
DEAD = {
    "python": ["f())", "x = ]", "(]", "s = 'abc\n", "x = 1 \\ y", "{)"],
    "bash": ["echo a )", ")", "ls | )", "echo $(ls))"],
}
ALPHABET = {"python": "()[]{}'\"#\\\n x=1,:", "bash": "()$'\"`\\#{}\n x;|"}
COMPLETIONS = {"python": ")]}'\"\n x", "bash": ")}'\"`\n x"}


def _completions(lang: str, max_len: int = 3):
    chars = COMPLETIONS[lang]
    for n in range(max_len + 1):
        for combo in itertools.product(chars, repeat=n):
            yield "".join(combo)


def _completes(prefix: str, lang: str) -> str | None:
    """A completion from the bounded set that makes prefix parse, or None."""
    for tail in _completions(lang):
        if syntax.parses(prefix + tail, lang):
            return tail
    return None


@pytest.mark.parametrize("lang", ["python", "bash"])
def test_every_prefix_of_valid_programs_is_viable(lang):
    adv = advance_python if lang == "python" else advance_bash
    for prog in VALID[lang]:
        assert syntax.parses(prog, lang), prog
        for i in range(len(prog) + 1):
            assert viable(prog[:i], lang), (prog, i)
        # fed piece by piece in random splits, the state ends the same as all at once
        rng = random.Random(len(prog))
        state = START[lang]
        i = 0
        while i < len(prog):
            j = i + rng.randint(1, 4)
            state = adv(state, prog[i:j])
            assert state is not None, prog
            i = j
        assert state == adv(START[lang], prog)


@pytest.mark.parametrize("lang", ["python", "bash"])
def test_known_dead_prefixes(lang):
    for prefix in DEAD[lang]:
        assert not viable(prefix, lang), prefix
        assert _completes(prefix, lang) is None, prefix


@pytest.mark.parametrize("lang", ["python", "bash"])
def test_dead_means_no_completion_parses_fuzz(lang):
    """Random prefixes: each one the scanner calls dead has no parsing completion in the
    bounded set; and a prefix for which a completion parses is never called dead."""
    rng = random.Random(7)
    alphabet = ALPHABET[lang]
    dead_checked = live_completed = 0
    for _ in range(600):
        prefix = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7)))
        if not viable(prefix, lang):
            if dead_checked < 80:
                assert _completes(prefix, lang) is None, repr(prefix)
                dead_checked += 1
        elif live_completed < 80 and (tail := _completes(prefix, lang)) is not None:
            live_completed += 1
            whole = prefix + tail
            assert all(viable(whole[:i], lang) for i in range(len(whole) + 1)), repr(whole)
    assert dead_checked >= 20 and live_completed >= 5  # the fuzz exercised both directions


def test_javascript_is_never_judged():
    assert viable("))))", "javascript")


# --- the guided beam on a tiny trained model ------------------------------------------------

@pytest.fixture(scope="module")
def loaded(tiny_model):
    model, _, tok, _ = load_model(tiny_model)
    return model, tok


class Recording(Guide):
    """A Guide whose states also carry the decoded text, and that keeps every pruned prefix."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.start = (self.start, "")
        self.dead: list[str] = []

    def advance(self, state, tok_id):
        inner, text = state
        text += self.tok.decode([tok_id])
        got = super().advance(inner, tok_id)
        if got is None:
            self.dead.append(text)
            return None
        return (got, text)


def _src(tok, intent, lang):
    canon, slot_list = slots.canonicalize(intent)
    src = torch.tensor([tok.encode_source(canon, lang)])
    return src, src != PAD, slot_list


CASES = [(i, lang) for i, _, lang in TOY] + [
    ("make a web server", "python"), ("sort dict `d` by value", "python"), ("x", "python"),
    ("delete the temp folder", "bash"), ("close the bracket ) now", "python")]


def test_guided_equals_plain_beam_with_an_accept_all_guide(loaded):
    model, tok = loaded
    cfg = DecodeConfig(beam_size=4, n_best=4, max_len=40)
    for intent, lang in CASES:
        src, mask, _ = _src(tok, intent, lang)
        with torch.inference_mode():
            plain = _beam(model, src, mask, cfg)[0]
            guided = guided_beam(model, src, mask, cfg, None, None, extra=0)[0]
        assert [(h.ids, h.finished) for h in plain] == [(h.ids, h.finished) for h in guided]
        assert [h.score for h in plain] == pytest.approx([h.score for h in guided], abs=1e-5)


def test_pruned_hypotheses_could_not_complete(loaded):
    """Brute-force oracle: every prefix the guided beam pruned on the tiny model, detokenised
    and restored, has no parsing completion from the bounded set; finished outputs parse."""
    model, tok = loaded
    cfg = DecodeConfig(beam_size=5, n_best=5, max_len=30)
    pruned_total = 0
    for intent, lang in CASES:
        src, mask, slot_list = _src(tok, intent, lang)
        guide = Recording(lang, tok, slot_list)
        with torch.inference_mode():
            hyps = decode(model, src, mask, cfg, [guide])[0]
        for h in hyps:
            if h.finished:
                code = slots.restore(tok.decode(h.ids), slot_list, lang).strip("\n")
                assert syntax.parses(code, lang), code
        for prefix in guide.dead:
            pruned_total += 1
            assert not viable(prefix, lang)
            restored = slots.restore(prefix, slot_list, lang)
            assert _completes(prefix, lang) is None, repr(prefix)
            assert _completes(restored, lang) is None, repr(restored)
    assert pruned_total > 0  # the tiny model does emit dead prefixes: the oracle ran


def test_training_programs_are_never_pruned(loaded):
    """Every token prefix of every toy program (with its slots) survives the guide."""
    _, tok = loaded
    for intent, code, lang in TOY:
        canon, canon_code, slot_list = slots.canonicalize_pair(intent, code)
        guide = Guide(lang, tok, slot_list)
        state = guide.start
        ids = tok.encode(canon_code)
        for i in ids:
            state = guide.advance(state, i)
            assert state is not None, (code, tok.decode(ids))
        assert guide.final_ok(ids), code


class RejectFirst(Guide):
    """Rejects finished programs in `banned` (text), to force the widened search."""

    def __init__(self, banned, *a, **k):
        super().__init__(*a, **k)
        self.banned = banned

    def final_ok(self, ids):
        return self.tok.decode(ids) not in self.banned and super().final_ok(ids)


def test_widens_once_when_nothing_is_accepted(loaded):
    model, tok = loaded
    intent, lang = "sort list `xs` in descending order", "python"
    src, mask, slot_list = _src(tok, intent, lang)
    cfg = DecodeConfig(beam_size=1, n_best=1, max_len=30)
    with torch.inference_mode():
        first = _beam(model, src, mask, cfg)[0][0]
        banned = {tok.decode(first.ids)}
        hyps = decode(model, src, mask, cfg, [RejectFirst(banned, lang, tok, slot_list)])[0]
    # beam 1 finds only the banned program; the widened beam (2) finds another that parses
    assert hyps and hyps[0].finished and tok.decode(hyps[0].ids) not in banned
    code = slots.restore(tok.decode(hyps[0].ids), slot_list, lang)
    assert syntax.parses(code, lang)


def test_pruning_off_is_the_plain_beam(loaded, tiny_model):
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(tiny_model)
    for intent, lang in CASES[:6]:
        off = gen.candidates(intent, lang, config=DecodeConfig(prune=False)).ranked
        model, tok = loaded
        src, mask, slot_list = _src(tok, intent, lang)
        with torch.inference_mode():
            plain = _beam(gen.model, src, mask, DecodeConfig(max_len=gen.model_cfg.max_len - 1))[0]
        plain_codes = {slots.restore(tok.decode(h.ids), slot_list, lang).strip("\n") for h in plain}
        assert {c.code for c in off if not c.features.get("repaired") and not c.features.get("retrieved")} \
            <= plain_codes
        assert EOS not in plain[0].ids


def test_prune_config_validation():
    from nl2code.errors import UsageError

    with pytest.raises(UsageError, match="prune"):
        DecodeConfig(strategy="greedy", n_best=1, prune=True).validate()
    for bad in (-1, float("nan"), 1e12, True, "5"):
        with pytest.raises(UsageError, match="max_latency_ms"):
            DecodeConfig(max_latency_ms=bad).validate()
    DecodeConfig(max_latency_ms=50).validate()
