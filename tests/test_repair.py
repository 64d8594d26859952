"""Bracket repair: near-miss candidates become code that parses, and nothing else changes."""

import pytest

from nl2code import slots, syntax
from nl2code.repair import bracket_variants


@pytest.mark.parametrize("broken, fixed", [
    ("sum(x) for x in zip(a, b)]", "[sum(x) for x in zip(a, b)]"),  # lost leading [
    ("numpy.random.random((3, 3)))", "numpy.random.random((3, 3))"),  # one ) too many
    ("dict((k, v) for k, v in d.items()", "dict((k, v) for k, v in d.items())"),  # unclosed
])
def test_variants_include_the_fix_and_it_parses(broken, fixed):
    assert not syntax.parses(broken)
    variants = bracket_variants(broken)
    assert fixed in variants
    assert syntax.parses(fixed)


@pytest.mark.parametrize("code", ["a.update(b)", "print('(')", "x = '[' + ']'", "f(a)  # )"])
def test_balanced_code_and_brackets_in_strings_or_comments_are_left_alone(code):
    assert bracket_variants(code) == []


def test_an_open_string_is_not_guessed_at():
    assert bracket_variants('f("abc') == []


def test_engine_offers_repaired_candidates_marked_as_such(tiny_model, monkeypatch):
    from nl2code import decode as decode_module
    from nl2code.decode import Hypothesis
    from nl2code.engine import Generator

    gen = Generator.from_checkpoint(tiny_model)
    tok = gen.tok

    def fake_decode(model, src, src_mask, cfg, guides=None, deadline=None):
        return [[Hypothesis(tok.encode("len(xs))"), -0.1, -0.1, True)] for _ in src.tolist()]

    monkeypatch.setattr(decode_module, "decode", fake_decode)
    cands = gen.generate("get the length of list `xs`", "python", n=5)
    assert cands and all(c.parses for c in cands)
    assert cands[0].features["repaired"] is True
    assert "len(xs)" in [c.code for c in cands]


def test_bare_slot_that_is_not_an_expression_is_quoted_in_python_only():
    _, found = slots.canonicalize("format `my_date` as `%B %d, %Y`")
    assert slots.restore("var_0.strftime(var_1)", found) == "my_date.strftime('%B %d, %Y')"
    _, found = slots.canonicalize("sort `[1, 2, 3]`")
    assert slots.restore("sorted(var_0)", found) == "sorted([1, 2, 3])"
    _, found = slots.canonicalize("count lines in 'log.txt'")
    assert slots.restore("wc -l str_0", found, "bash") == "wc -l log.txt"
