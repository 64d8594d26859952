"""Syntax repair: cheap bracket fixes that turn a near-miss candidate into one that parses.

A small model often gets a whole expression right but for one bracket: the opening `[` of
a list comprehension is dropped (`sum(x) for x in y]`) or a `)` too many is emitted. For
such a candidate we propose the variants with balanced brackets; the caller keeps only
those that parse, marks them as repaired, and lets the reranker weigh them.
"""

from __future__ import annotations

from nl2code.slots import open_string_at, code_positions

OPEN = {"(": ")", "[": "]", "{": "}"}
CLOSE = {v: k for k, v in OPEN.items()}


def _bracket_scan(code: str) -> tuple[list[str], list[int], bool]:
    """Unclosed openers (in order), positions of unmatched closers, and whether a string
    was left open. Brackets inside string literals and comments are ignored."""
    stack: list[str] = []
    stray: list[int] = []
    for i in code_positions(code):
        c = code[i]
        if c in OPEN:
            stack.append(c)
        elif c in CLOSE:
            if stack and stack[-1] == CLOSE[c]:
                stack.pop()
            else:
                stray.append(i)
    return stack, stray, open_string_at(code)


def bracket_variants(code: str, limit: int = 4) -> list[str]:
    """Variants of code with balanced brackets (may be empty). Never returns code itself."""
    stack, stray, open_string = _bracket_scan(code)
    if open_string or (not stack and not stray):
        return []
    out: list[str] = []
    if stray and not stack:
        # drop unmatched closers; or supply their openers at the front (a lost leading `[`)
        out.append("".join(ch for i, ch in enumerate(code) if i not in set(stray)))
        openers = "".join(CLOSE[code[i]] for i in reversed(stray))
        out.append(openers + code)
    if stack and not stray:
        closers = "".join(OPEN[c] for c in reversed(stack))
        out.append(code + closers)
    if stack and stray:
        trimmed = "".join(ch for i, ch in enumerate(code) if i not in set(stray))
        st, sr, _ = _bracket_scan(trimmed)
        out.append(trimmed + "".join(OPEN[c] for c in reversed(st)) if not sr else trimmed)
    seen: list[str] = []
    for v in out:
        if v != code and v not in seen:
            seen.append(v)
    return seen[:limit]
