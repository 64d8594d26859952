"""Sentencepiece tokenizer that round-trips code exactly.

sentencepiece's defaults break code (they NFKC-fold, collapse runs of spaces, add a dummy
prefix). The settings below were measured here to round-trip indentation, tabs, CRLF,
emoji and CJK byte-for-byte (tests/test_tokenizer.py). Source and target share one
vocabulary; language tags (`<python>`) and slot placeholders (`var_0`) are single pieces.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from nl2code.errors import CheckpointError, DataError
from nl2code.languages import BOS, EOS, LANG_TAGS, LANGUAGES, PAD, PLACEHOLDERS, UNK

__all__ = ["BOS", "EOS", "LANGUAGES", "PAD", "UNK", "TOKENIZER_VERSION", "Tokenizer"]

# The settings below (and the pieces named in user_defined_symbols) as one number: saved with
# every model (config.json "tokenizer_version") and checked when it loads.
TOKENIZER_VERSION = 1
# Whitespace runs that code is made of; spaces are written as U+2581 for sentencepiece.
_WS_SYMBOLS = ["\n", "\t", "\r"] + ["\u2581" * n for n in (2, 4, 8, 12, 16)]
_META = "\u2581"  # sentencepiece's whitespace symbol


def _import_spm():
    import sentencepiece as spm

    return spm


class Tokenizer:
    """encode/decode text <-> ids; train/save/load. Thin over SentencePieceProcessor."""

    def __init__(self, model_proto: bytes):
        spm = _import_spm()
        self.proto = model_proto
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.LoadFromSerializedProto(model_proto)
        except Exception as exc:  # sentencepiece raises RuntimeError/OSError variants
            detail = " ".join(str(exc).split())  # sentencepiece's text ends in a newline
            raise CheckpointError(f"tokenizer model is corrupted: {detail}") from None
        self.vocab_size = self.sp.GetPieceSize()
        self.lang_ids = {lang: self.sp.PieceToId(tag) for lang, tag in zip(LANGUAGES, LANG_TAGS)}
        if any(i == UNK for i in self.lang_ids.values()):
            raise CheckpointError("tokenizer model lacks language tags: not an nl2code tokenizer")

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, threads: int = 2) -> "Tokenizer":
        spm = _import_spm()
        buf = io.BytesIO()
        texts = [t for t in texts if t]
        if not texts:
            raise DataError("cannot train a tokenizer on an empty corpus")
        try:
            spm.SentencePieceTrainer.Train(
                sentence_iterator=iter(texts),
                model_writer=buf,
                vocab_size=vocab_size,
                model_type="unigram",
                normalization_rule_name="identity",
                remove_extra_whitespaces=False,
                add_dummy_prefix=False,
                split_by_whitespace=True,
                allow_whitespace_only_pieces=True,
                split_digits=True,
                byte_fallback=True,
                character_coverage=1.0,
                user_defined_symbols=LANG_TAGS + PLACEHOLDERS + _WS_SYMBOLS,
                pad_id=PAD,
                unk_id=UNK,
                bos_id=BOS,
                eos_id=EOS,
                max_sentence_length=1 << 16,
                input_sentence_size=2_000_000,
                shuffle_input_sentence=True,
                hard_vocab_limit=False,
                num_threads=max(1, threads),
                minloglevel=2,
            )
        except RuntimeError as exc:
            reason = str(exc).split("] ")[-1].split(". ")[0]
            raise DataError(f"sentencepiece training failed: {reason}") from None
        return cls(buf.getvalue())

    def encode(self, text: str) -> list[int]:
        if _META not in text:
            return self.sp.EncodeAsIds(text)
        # sentencepiece reads U+2581 in the input as a space; spell it as its UTF-8 bytes
        # (byte_fallback pieces), which decode back to U+2581 itself.
        meta = [self.sp.PieceToId(f"<0x{b:02X}>") for b in _META.encode("utf-8")]
        ids: list[int] = []
        for i, part in enumerate(text.split(_META)):
            if i:
                ids.extend(meta)
            if part:
                ids.extend(self.sp.EncodeAsIds(part))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        ids = [int(i) for i in ids if int(i) not in (PAD, BOS, EOS)]
        return self.sp.DecodeIds(ids)

    def encode_source(self, intent: str, lang: str) -> list[int]:
        """The model's source: a language tag, then the intent's pieces."""
        return [self.lang_ids[lang]] + self.encode(intent)

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.proto)

    @classmethod
    def load(cls, path: str | Path) -> "Tokenizer":
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise CheckpointError(f"cannot read tokenizer {path}: {exc.strerror}") from None
        return cls(data)
