"""Tokenizer: exact round-trip of code, single-piece tags/placeholders, save/load, errors."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nl2code.errors import CheckpointError, DataError
from nl2code.languages import PLACEHOLDERS
from nl2code.tokenizer import LANG_TAGS, Tokenizer

CODE = [
    "def square(x):\n    return x * x",
    "class A:\n    def f(self):\n        if self.x:\n            return [i for i in range(10)]",
    "for k, v in d.items():\n\tprint(k, v)",
    "df = pd.read_csv('str_0')\r\ndf.head()\r\n",
    "find . -name '*.py' | xargs grep -n 'TODO'",
    "ls -la && du -sh ~",
    "sort list var_0 in descending order",
    "s = \"héllo wörld\"  # 世界 😀",
    "x = {'a': 1, \"b\": [2, 3]}\n\n\n",
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train(CODE * 10, vocab_size=400)


# Code-like text: ASCII code characters and whitespace runs, plus arbitrary unicode
# (surrogates cannot be UTF-8 encoded, so they are no text a file could hold).
_code_chars = st.sampled_from(list("abcxyz_019()[]{}:;,.=+-*/'\"#`$|&<>\\!? ") + ["\t", "\n", "\r\n", "\r", "\u2581"])
_any_char = st.characters(blacklist_categories=("Cs",))
_indent = st.integers(0, 40).map(lambda n: " " * n)
_emoji = st.sampled_from(["😀", "🐍", "👩‍💻", "世界", "é", "e\u0301", "ﬁ", "\u200b", "\ufeff"])
code_like = st.lists(st.one_of(_code_chars, _any_char, _indent, _emoji), max_size=60).map("".join)


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(code_like)
def test_round_trip_property(tok, text):
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", [
    "",
    " ",
    "\t\t  \t",
    "\r\n\r\n",
    "if a:\r\n    b = 1\r\n",
    " " * 64 + "deep()",
    "\t" * 12 + "x",
    "def f():\n" + "".join("    " * i + f"if x{i}:\n" for i in range(1, 12)) + "    " * 12 + "pass",
    "trailing spaces   \n   ",
    "héllo 😀 世界 👩‍💻",
    "a\x00b",
    "box \u2581 char",  # sentencepiece's own space symbol must survive as itself
    "\u2581\u2581",
])
def test_round_trip_awkward(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_empty_string(tok):
    assert tok.encode("") == []
    assert tok.decode([]) == ""


@pytest.mark.parametrize("piece", LANG_TAGS + PLACEHOLDERS)
def test_tags_and_placeholders_are_single_pieces(tok, piece):
    ids = tok.encode(piece)
    assert len(ids) == 1
    assert tok.sp.IdToPiece(ids[0]) == piece


def test_placeholder_single_piece_in_context(tok):
    ids = tok.encode("xs = var_3.sort()")
    assert tok.sp.PieceToId("var_3") in ids


def test_encode_source_starts_with_language_tag(tok):
    for lang, tag in (("python", "<python>"), ("bash", "<bash>")):
        ids = tok.encode_source("list files", lang)
        assert ids[0] == tok.sp.PieceToId(tag)
        assert tok.decode(ids[1:]) == "list files"


def test_save_load_round_trip(tok, tmp_path):
    path = tmp_path / "tokenizer.model"
    tok.save(path)
    again = Tokenizer.load(path)
    assert again.vocab_size == tok.vocab_size
    for text in CODE:
        assert again.encode(text) == tok.encode(text)
        assert again.decode(again.encode(text)) == text


def test_corrupted_bytes_raise_checkpoint_error(tok, tmp_path):
    path = tmp_path / "tokenizer.model"
    data = bytearray(tok.proto)
    path.write_bytes(bytes(data[: len(data) // 3]))  # truncated
    with pytest.raises(CheckpointError):
        Tokenizer.load(path)
    path.write_bytes(b"\xff" * 200)  # garbage
    with pytest.raises(CheckpointError) as exc:
        Tokenizer.load(path)
    assert "\n" not in str(exc.value)


def test_missing_file_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="tokenizer"):
        Tokenizer.load(tmp_path / "nope.model")


def test_vocab_too_small_raises_data_error():
    with pytest.raises(DataError, match="sentencepiece training failed"):
        Tokenizer.train(CODE, vocab_size=20)


def test_empty_corpus_raises_data_error():
    with pytest.raises(DataError):
        Tokenizer.train(["", ""], vocab_size=400)
