"""CoNaLa BLEU: the official tokenizer, corpus BLEU-4 with brevity penalty, exact match."""

from __future__ import annotations

import math

import pytest

from nl2code.metrics import conala_bleu, corpus_bleu, exact_match, tokenize_for_bleu


def test_tokenizer_splits_non_alnum():
    assert tokenize_for_bleu("xs.sort(reverse=True)") == ["xs", ".", "sort", "(", "reverse", "=", "True", ")"]
    assert tokenize_for_bleu("a_b+=c2") == ["a_b", "+", "=", "c2"]
    assert tokenize_for_bleu("  x\n\ty  ") == ["x", "y"]


def test_tokenizer_quotes_become_backticks():
    assert tokenize_for_bleu("open('a.csv')") == ["open", "(", "`", "a", ".", "csv", "`", ")"]
    assert tokenize_for_bleu('open("a.csv")') == tokenize_for_bleu("open('a.csv')")


def test_tokenizer_lower_camel_split_once():
    assert tokenize_for_bleu("camelCaseVar") == ["camel", "Case", "Var"]
    # only a lower->upper boundary splits; a run of capitals stays one token
    assert tokenize_for_bleu("getHTTPResponse") == ["get", "HTTPResponse"]
    assert tokenize_for_bleu("HTTPServer") == ["HTTPServer"]
    assert tokenize_for_bleu("read_csv") == ["read_csv"]


def test_identical_is_100():
    refs = ["xs.sort(reverse=True)", "df = pd.read_csv('data.csv')", "ls -la | grep foo bar"]
    assert conala_bleu(refs, refs) == pytest.approx(100.0)


def test_no_4gram_match_is_0():
    assert corpus_bleu([["a", "b", "c", "d"]], [["a", "b", "c", "e"]]) == 0.0
    assert conala_bleu(["f(x)"], ["g(y)"]) == 0.0


def test_too_short_hypothesis_is_0():
    assert corpus_bleu([["a", "b", "c"]], [["a", "b", "c"]]) == 0.0  # no 4-grams at all


def test_brevity_penalty_for_short_hypothesis():
    ref = "a b c d e f".split()
    hyp = "a b c d e".split()
    got = corpus_bleu([ref], [hyp])
    # every n-gram precision is 1; BP = exp(1 - 6/5)
    assert got == pytest.approx(100 * math.exp(1 - 6 / 5))
    assert got < 100.0


def test_longer_hypothesis_not_penalised_by_length():
    ref = "a b c d e".split()
    hyp = "a b c d e".split()
    assert corpus_bleu([ref], [hyp + ["f"]]) < 100.0  # precision falls, no BP
    p = [5 / 6, 4 / 5, 3 / 4, 2 / 3]
    assert corpus_bleu([ref], [hyp + ["f"]]) == pytest.approx(100 * math.prod(p) ** 0.25)


def test_hand_computed_sentence():
    ref = "the cat sat on the mat".split()
    hyp = "the cat sat on a mat".split()
    # 1-gram 5/6, 2-gram 3/5, 3-gram 2/4, 4-gram 1/3, equal lengths -> BP 1
    expected = 100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert corpus_bleu([ref], [hyp]) == pytest.approx(expected)
    assert expected == pytest.approx(53.7285, abs=1e-3)


def test_hand_computed_corpus_pools_counts():
    refs = ["the cat sat on the mat".split(), "a b c d e f".split()]
    hyps = ["the cat sat on a mat".split(), "a b c d e".split()]
    # pooled: 1-gram (5+5)/(6+5), 2-gram (3+4)/(5+4), 3-gram (2+3)/(4+3), 4-gram (1+2)/(3+2)
    # lengths: hyp 11, ref 12 -> BP exp(1 - 12/11)
    prec = (10 / 11) * (7 / 9) * (5 / 7) * (3 / 5)
    expected = 100 * math.exp(1 - 12 / 11) * prec**0.25
    assert corpus_bleu(refs, hyps) == pytest.approx(expected)


def test_clipped_counts():
    ref = "the cat is on the mat".split()
    hyp = "the the the the the the the".split()
    # unigram precision is clipped at 2/7; no bigram match -> 0
    assert corpus_bleu([ref], [hyp]) == 0.0


def test_conala_bleu_on_code_hand_computed():
    # ref tokens: xs . sort ( reverse = True )   (8)
    # hyp tokens: xs . sort ( )                   (5)
    # 1: 5/5, 2: 4/4 (xs ., . sort, sort (, but "( )" no) -> 3/4
    ref, hyp = "xs.sort(reverse=True)", "xs.sort()"
    p = [5 / 5, 3 / 4, 2 / 3, 1 / 2]
    expected = 100 * math.exp(1 - 8 / 5) * math.prod(p) ** 0.25
    assert conala_bleu([ref], [hyp]) == pytest.approx(expected)


def test_exact_match_uses_bleu_tokens():
    assert exact_match(["open('a')", "x"], ['open("a")', "y"]) == pytest.approx(50.0)
    assert exact_match(["f( x )"], ["f(x)"]) == pytest.approx(100.0)
    assert exact_match([], []) == 0.0
