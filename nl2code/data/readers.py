"""Readers: one function per corpus format, each yielding Examples and reporting drops.

Malformed input (bad JSON, undecodable bytes, unpaired files) is reported with file and
line and skipped; a missing file, or a path that is not a regular file, is a DataError
naming the path.
"""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

from nl2code.data.records import Example, Report
from nl2code.errors import DataError
from nl2code.validate import CONALA_INTENTS
from nl2code.languages import ALIASES, LANGUAGES

MAX_LINE_BYTES = 1_000_000  # a longer line is malformed input, not an example
MAX_JSON_FILE_BYTES = 256_000_000  # a CoNaLa JSON file is parsed whole: bounded before reading


def _open(path: Path):
    """A regular file opened for reading, else a DataError naming the path.

    Opened non-blocking and checked with fstat: a FIFO named as a corpus file would block
    open() (and every read) until something wrote to it, and a folder or a device is not a
    corpus either.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise DataError(f"cannot read {path}: not a regular file (a folder, FIFO or device?)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def _bounded_lines(fh, limit: int) -> Iterator[bytes | None]:
    """The file's lines, or None for a line longer than limit bytes: such a line is skipped
    in chunks, never held whole (a 4 GB file without a newline costs one chunk of memory)."""
    while True:
        raw = fh.readline(limit + 1)
        if not raw:
            return
        if len(raw) <= limit or raw.endswith(b"\n"):
            yield raw
            continue
        while raw and not raw.endswith(b"\n"):  # skip the rest of the long line
            raw = fh.readline(1 << 20)
        yield None


def _lines(path: Path, report: Report) -> Iterator[tuple[int, str | None]]:
    """Yield (line number, text) with None for lines that are undecodable or too long."""
    with _open(path) as fh:
        for n, raw in enumerate(_bounded_lines(fh, MAX_LINE_BYTES), 1):
            if raw is None or len(raw) > MAX_LINE_BYTES:
                report.drop("line too long", f"{path}:{n}")
                yield n, None
                continue
            try:
                yield n, raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                report.drop("undecodable bytes", f"{path}:{n}")
                yield n, None


def read_conala(path: Path, report: Report, source: str = "conala", intent_field: str = "rewritten") -> Iterator[Example]:
    """CoNaLa JSON array: rewritten_intent (falling back to intent) -> snippet.

    intent_field = "title": the record's `intent` instead, the StackOverflow question's title
    as its asker typed it ("How to merge two Python dictionaries in a single expression?"),
    falling back to rewritten_intent. Either way a record is skipped only when both are
    missing, so the n-th example is the n-th usable record for both fields and `dev_first`
    cuts the same records."""
    if intent_field not in CONALA_INTENTS:
        raise DataError(f"{path}: intent = {intent_field!r}; expected one of {list(CONALA_INTENTS)}")
    first, second = ("intent", "rewritten_intent") if intent_field == "title" else ("rewritten_intent", "intent")
    with _open(Path(path)) as fh:
        raw = fh.read(MAX_JSON_FILE_BYTES + 1)
    if len(raw) > MAX_JSON_FILE_BYTES:
        raise DataError(f"{path}: larger than {MAX_JSON_FILE_BYTES:,} bytes; split it or convert it to JSON lines")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer of > 4300 digits
        raise DataError(f"{path}: not a CoNaLa JSON file ({type(exc).__name__})") from None
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON array of CoNaLa records")
    for i, rec in enumerate(data):
        if not isinstance(rec, dict):
            report.drop("record is not an object", f"{path}:[{i}]")
            continue
        intent = next((v for v in (rec.get(first), rec.get(second)) if isinstance(v, str) and v.strip()), None)
        code = rec.get("snippet")
        if not isinstance(intent, str) or not isinstance(code, str) or not intent.strip():
            report.drop("missing intent or snippet", f"{path}:[{i}]")
            continue
        yield Example(intent.strip(), code, "python", source)


def read_jsonl(
    path: Path, report: Report, source: str, lang: str = "python",
    intent_key: str = "intent", code_key: str = "snippet", source_key: str | None = None,
) -> Iterator[Example]:
    """JSON lines. CoNaLa-style ({intent, snippet}) or generic ({intent, code, lang}).

    With source_key, a record's own non-empty string under that key names its source.
    """
    for n, line in _lines(Path(path), report):
        if line is None or not line.strip():
            continue
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):  # ValueError: also an integer of > 4300 digits
            report.drop("bad JSON", f"{path}:{n}")
            continue
        if not isinstance(rec, dict):
            report.drop("record is not an object", f"{path}:{n}")
            continue
        intent = rec.get(intent_key)
        code = rec.get(code_key, rec.get("code"))
        rec_lang = rec.get("lang", lang)
        if not isinstance(intent, str) or not isinstance(code, str) or not intent.strip():
            report.drop("missing intent or code", f"{path}:{n}")
            continue
        if not isinstance(rec_lang, str):
            report.drop("bad lang", f"{path}:{n}")
            continue
        rec_lang = ALIASES.get(rec_lang.lower(), rec_lang.lower())
        if rec_lang not in LANGUAGES:  # training has no language tag for it
            report.drop("unsupported lang", f"{path}:{n}")
            continue
        own = rec.get(source_key) if source_key else None
        yield Example(intent.strip(), code, rec_lang, own if isinstance(own, str) and own.strip() else source)


def _read_pairs(nl_path: Path, code_path: Path, report: Report) -> Iterator[tuple[int, str, str]]:
    nl = list(_lines(nl_path, report))
    cm = list(_lines(code_path, report))
    if len(nl) != len(cm):
        report.drop(
            f"unpaired files ({len(nl)} vs {len(cm)} lines); extra lines ignored",
            f"{nl_path if len(nl) > len(cm) else code_path}:{min(len(nl), len(cm)) + 1}",
        )
    for (n, a), (_, b) in zip(nl, cm):
        if a is None or b is None:
            continue
        if not a.strip() or not b.strip():
            report.drop("empty line", f"{nl_path}:{n}")
            continue
        yield n, a.strip(), b


def read_nl2bash(prefix: Path, report: Report, source: str = "nl2bash") -> Iterator[Example]:
    """NL2Bash: PREFIX.nl and PREFIX.cm, line i paired with line i."""
    prefix = Path(prefix)
    for _, nl, cm in _read_pairs(prefix.with_suffix(".nl"), prefix.with_suffix(".cm"), report):
        yield Example(nl, cm.strip(), "bash", source)


# --- Django: detokenise space-tokenised Python back to real Python -----------------------

_STRING = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _detok_plain(seg: str) -> str:
    seg = re.sub(r"\s+", " ", seg)
    seg = re.sub(r" ?\. ?", ".", seg)  # attribute access and relative imports
    seg = re.sub(r" ([,:;)\]}])", r"\1", seg)
    seg = re.sub(r"([(\[{]) ", r"\1", seg)
    seg = re.sub(r"(\w) ([(\[])", r"\1\2", seg)  # call and subscript
    seg = re.sub(r"\b(if|elif|while|for|in|and|or|not|return|yield|print|assert|del|"
                 r"lambda|import|from|with|as|is|else|except|raise|global)([(\[])", r"\1 \2", seg)
    seg = re.sub(r"\* \*", "**", seg)
    seg = re.sub(r"(\d)\.(\d)", r"\1.\2", seg)
    seg = re.sub(r"(\.) (\d)", r"\1\2", seg)
    return seg


def detokenize_python(code: str) -> str:
    """Undo the Django corpus's space tokenisation, leaving string literals untouched."""
    parts = _STRING.split(code.strip())
    out = []
    for i, part in enumerate(parts):
        out.append(part if i % 2 else _detok_plain(part))
    text = "".join(out)
    return text.strip()


def _python_ok(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
        return True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


def django_code(raw: str) -> str | None:
    """Real Python for one Django line, or None if it cannot be made to parse.

    Block headers (`def f(x):`) are kept as they are; they parse with a dummy body.
    """
    code = detokenize_python(raw)
    if _python_ok(code):
        return code
    if code.endswith(":") and (_python_ok(code + " pass") or _python_ok(code + " pass\nfinally: pass")):
        return code  # `try:` needs a finally (or except) after its dummy body to parse
    if code.startswith(("elif", "else", "except", "finally")) and _python_ok(
        "if 1: pass\n" + code + " pass" if not code.startswith(("except", "finally"))
        else "try: pass\n" + code + " pass"
    ):
        return code
    return None


def read_django(
    prefix: Path, report: Report, source: str = "django", start: int = 0, stop: int | None = None
) -> Iterator[Example]:
    """Django PREFIX.anno / PREFIX.code, lines [start, stop) (0-based)."""
    prefix = Path(prefix)
    for n, anno, raw in _read_pairs(prefix.with_suffix(".anno"), prefix.with_suffix(".code"), report):
        if n - 1 < start or (stop is not None and n - 1 >= stop):
            continue
        code = django_code(raw)
        if code is None:
            report.drop("django line does not parse after detokenising", f"{prefix}.code:{n}")
            continue
        yield Example(anno, code, "python", source)
