"""Prefix viability for syntax-guided beam search: can this prefix still become valid code?

A scanner keeps a small state per hypothesis (open brackets, open string, comment) and is
advanced by each new piece's text, so a step costs a few character comparisons per
candidate. It answers "dead" only for errors that no completion can repair, because they
lie behind the frontier:

- Python: a closing bracket with no or the wrong opener; a newline inside a one-line
  ('...' / "...") string; a line-continuation backslash followed by anything but a line
  end. Comments and string contents are skipped. Up to Python 3.11 an f-string is an
  opaque string to the tokenizer, as here; from 3.12 on (f-strings may nest the same
  quote) the scanner stops judging once it meets one.
- bash: a `)` with no `(`, `$(` or `((` open, outside quotes, `${...}` and comments. The
  scanner stops judging at a heredoc (`<<`) or a `case` (its patterns end in a bare `)`).

The whole-program check (`syntax.parses`) stays the judge of finished hypotheses: `Guide`
applies it when a hypothesis emits EOS, to the restored code, as the engine does.
States are tuples (hashable, cheap to keep per hypothesis); None means dead.
tests/test_viability.py checks soundness with a brute-force oracle.
"""

from __future__ import annotations

import sys

from nl2code import slots, syntax

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {")": "(", "]": "[", "}": "{"}
GAVE_UP = ("gave-up",)  # judges nothing any more: always viable
_NESTED_FSTRINGS = sys.version_info >= (3, 12)

# Python state: (stack, mode, quote, esc, run, prev)
#   stack: open brackets; mode: "c" code, "#" comment, "1" just after an opening quote,
#   "2" after two quotes ('' : empty string, or the start of '''), "s" one-line string,
#   "t" triple-quoted string, "\\" after a line-continuation backslash; quote: the
#   string's quote character; esc: the last string character was a backslash; run:
#   closing quotes seen in a row (triple strings); prev: last two code characters.
PY_START = ("", "c", "", False, 0, "  ")


def advance_python(state, text: str):
    """The state after text, or None when the prefix can no longer parse."""
    if state is None or state is GAVE_UP:
        return state
    stack, mode, quote, esc, run, prev = state
    for c in text:
        if mode == "c":
            pass
        elif mode == "#":
            if c == "\n":
                mode = "c"
                prev = prev[1] + c
            continue
        elif mode == "s" or mode == "t":
            if esc:
                esc = False
                run = 0
            elif c == "\\":
                esc = True
                run = 0
            elif c == quote:
                run += 1
                if mode == "s" or run == 3:
                    mode, run = "c", 0
                    prev = prev[1] + c
            else:
                run = 0
                if c == "\n" and mode == "s":
                    return None  # a one-line string cannot span lines
            continue
        elif mode == "1":
            if c == quote:
                mode = "2"
                continue
            mode = "s"  # the first character of a one-line string's body
            if c == "\\":
                esc = True
            elif c == "\n":
                return None
            continue
        elif mode == "2":
            if c == quote:
                mode, run = "t", 0
                continue
            mode = "c"  # it was an empty string; c is code
            prev = prev[1] + quote
        elif mode == "\\":
            if c == "\n":
                mode = "c"
                prev = prev[1] + c
                continue
            if c == "\r":
                continue
            return None  # text after a line-continuation backslash
        # code
        if c in OPEN:
            stack += c
        elif c in CLOSE:
            if not stack or stack[-1] != CLOSE[c]:
                return None
            stack = stack[:-1]
        elif c == "'" or c == '"':
            if _NESTED_FSTRINGS and any(p in "fFtT" for p in prev):
                return GAVE_UP  # maybe an f-string prefix: nested quotes are legal there
            mode, quote, esc, run = "1", c, False, 0
            continue
        elif c == "#":
            mode = "#"
            continue
        elif c == "\\":
            mode = "\\"
            continue
        prev = prev[1] + c
    return (stack, mode, quote, esc, run, prev)


# bash state: (stack, squote, esc, comment, word, prev)
#   stack: contexts '"', '$(', '(', '${', '`'; squote: inside '...' ("'") or $'...' ("$");
#   esc: after a backslash; comment: inside a # comment; word: the current bare word (to
#   spot `case`); prev: the last character
SH_START = ((), "", False, False, "", "\n")


def advance_bash(state, text: str):
    if state is None or state is GAVE_UP:
        return state
    stack, squote, esc, comment, word, prev = state
    for c in text:
        p, prev = prev, c
        if esc:
            esc = False
            prev = "a"  # an escaped character is a plain word character
            continue
        if comment:
            comment = c != "\n"
            continue
        if squote:
            if c == "'":
                squote = ""
            elif c == "\\" and squote == "$":
                esc = True
            continue
        top = stack[-1] if stack else ""
        if top == '"':
            if c == "\\":
                esc = True
            elif c == '"':
                stack = stack[:-1]
            elif p == "$" and c == "(":
                stack += ("$(",)
            elif p == "$" and c == "{":
                stack += ("${",)
            elif c == "`":
                stack += ("`",)
            continue
        if c.isalnum() or c == "_":
            word = (word + c)[:5]
            continue
        if word == "case":
            return GAVE_UP  # case patterns end in a bare `)`
        word = ""
        if c == "\\":
            esc = True
        elif c == "'":
            squote = "$" if p == "$" else "'"
        elif c == '"':
            stack += ('"',)
        elif c == "`":
            stack = stack[:-1] if top == "`" else stack + ("`",)
        elif c == "#":
            # a comment unless # is inside a word: generous (tree-sitter takes `{#` as one)
            comment = top != "${" and p != "$" and not (p.isalnum() or p == "_")
        elif c == "<" and p == "<":
            return GAVE_UP  # a heredoc's body is free text
        elif c == "{" and p == "$":
            stack += ("${",)
        elif c == "}" and top == "${":
            stack = stack[:-1]
        elif c == "(" and top != "${":
            stack += ("$(",) if p == "$" else ("(",)
        elif c == ")" and top != "${":
            if top in ("(", "$("):
                stack = stack[:-1]
            elif not top:
                return None  # nothing to close
    return (stack, squote, esc, comment, word, prev)


ADVANCE = {"python": advance_python, "bash": advance_bash}
START = {"python": PY_START, "bash": SH_START}


def piece_texts(tok) -> list[str]:
    """Each id's text as the scanners see it: byte pieces above 0x7f (never syntax) map to
    a neutral letter; control ids to nothing. Cached on the tokenizer."""
    cached = getattr(tok, "_viability_pieces", None)
    if cached is not None:
        return cached
    out = []
    for i in range(tok.vocab_size):
        piece = tok.sp.IdToPiece(i)
        if tok.sp.IsControl(i):
            out.append("")
        elif tok.sp.IsByte(i):
            b = int(piece[3:5], 16)
            out.append(chr(b) if b < 0x80 else "a")
        else:
            out.append(piece.replace("\u2581", " "))
    tok._viability_pieces = out
    return out


class Guide:
    """Per-intent viability for decode: `start` state, `advance(state, id)`, and
    `final_ok(ids)`: the restored program parses and has no stray placeholder."""

    def __init__(self, lang: str, tok, slot_list=(), full_check: bool = True):
        self.lang = syntax.canonical_lang(lang)
        self.tok = tok
        self.slots = list(slot_list)
        self.full_check = full_check
        self._adv = ADVANCE.get(self.lang)
        self.start = START.get(self.lang, GAVE_UP)
        self.pieces = piece_texts(tok)
        self._memo: dict = {}
        self.checks = self.pruned = self.final_checks = self.final_rejected = 0

    def advance(self, state, tok_id: int):
        self.checks += 1
        if state is GAVE_UP or self._adv is None:
            return state
        key = (state, tok_id)
        got = self._memo.get(key, self)
        if got is self:
            got = self._memo[key] = self._adv(state, self.pieces[tok_id])
            if len(self._memo) > 50_000:
                self._memo.clear()
        if got is None:
            self.pruned += 1
        return got

    def final_ok(self, ids: list[int]) -> bool:
        if not self.full_check:
            return True
        self.final_checks += 1
        code = slots.restore(self.tok.decode(ids), self.slots, self.lang).strip("\n")
        ok = syntax.parses(code, self.lang) and not slots.placeholders_in(code)
        self.final_rejected += not ok
        return ok

    def stats(self) -> dict:
        return {"checks": self.checks, "pruned": self.pruned,
                "final_checks": self.final_checks, "final_rejected": self.final_rejected}


def viable(text: str, lang: str) -> bool:
    """Whether a decoded prefix can still complete to valid code (as far as the scanner
    knows: True may be optimistic, False is certain)."""
    lang = syntax.canonical_lang(lang)
    adv = ADVANCE.get(lang)
    return adv is None or adv(START[lang], text) is not None
