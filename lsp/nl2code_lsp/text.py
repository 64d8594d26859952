"""Reading intents out of documents and laying generated code back in. No LSP types here.

Only the few lines around the cursor are ever looked at, so a 5 MB document costs one scan
for newlines, never a split of the whole text. Lines end at "\\n" (a trailing "\\r" is
dropped), which covers LF and CRLF documents.
"""

from __future__ import annotations

from dataclasses import dataclass

from nl2code.errors import UsageError
from nl2code.languages import REGISTRY, canonical_lang

MAX_INTENT_LINES = 20  # a code action over more comment lines than this is not an intent


@dataclass(frozen=True)
class LangSpec:
    name: str  # nl2code's language name (nl2code.languages)
    comment: str  # line-comment prefix
    not_intents: tuple[str, ...] = ()  # comment openings that are never intents


# from nl2code.languages (adding a language is one line there; the model must know it)
LANGUAGES = {name: LangSpec(name, lang.comment, lang.not_intents) for name, lang in REGISTRY.items()}


def language_for(language_id: str | None, enabled: tuple[str, ...]) -> LangSpec | None:
    """The spec for an editor languageId ('python', 'shellscript', 'sh', ...), if enabled."""
    if not language_id:
        return None
    try:
        name = canonical_lang(language_id)
    except UsageError:
        return None
    return LANGUAGES.get(name) if name in enabled else None


_CHUNK = 4096
# The start of the line looked up last, in the text it was looked up in: (text, line, offset).
# Typing and completing happen at the cursor, so the next lookup is on or near that line;
# it scans on from there instead of from the top. Checked by identity: a new text (every
# edit makes one) does not match, unless the edit remembered its own line (remember()).
_hint: tuple[str, int, int] | None = None


def remember(source: str, line: int, offset: int) -> None:
    """Note that line starts at offset in source (for the next line_start on source)."""
    global _hint
    _hint = (source, line, offset)


def _scan(source: str, pos: int, left: int) -> int | None:
    """The offset after the left-th newline from pos; None if there are fewer.

    Newlines are counted in C over fixed-size chunks (str.count): a million lines cost a
    few thousand Python steps, not a million (at most distance / 4096 counts, 4096 finds).
    """
    n = len(source)
    while left > 0:
        end = min(pos + _CHUNK, n)
        found = source.count("\n", pos, end)
        if found < left:
            if end >= n:
                return None
            left -= found
            pos = end
            continue
        for _ in range(left):
            pos = source.find("\n", pos, end) + 1
        return pos
    return pos


def _scan_back(source: str, pos: int, back: int) -> int:
    """The start of the line back lines above the line that starts at pos."""
    end, need = pos, back + 1  # the (back+1)-th newline before pos ends the line above ours
    while end > 0:
        start = max(0, end - _CHUNK)
        found = source.count("\n", start, end)
        if found < need:
            need -= found
            end = start
            continue
        for _ in range(need):
            end = source.rfind("\n", start, end)
        return end + 1
    return 0


def line_start(source: str, line: int) -> int | None:
    """The offset at which line (0-based) begins; None past the document's last line."""
    hint = _hint
    if hint is not None and hint[0] is source and hint[1] <= line:
        pos = _scan(source, hint[2], line - hint[1])
    elif hint is not None and hint[0] is source and hint[1] - line <= line:
        pos = _scan_back(source, hint[2], hint[1] - line)
    else:
        pos = _scan(source, 0, line)
    if pos is not None:
        remember(source, line, pos)
    return pos


def lines_around(source: str, line: int, before: int = 1, after: int = 1) -> tuple[int, list[str]]:
    """(first line number, the lines from line-before to line+after) without terminators.

    Lines past the end of the document are simply missing from the list.
    """
    first = max(0, line - before)
    pos = line_start(source, first)
    if pos is None:
        return first, []
    out: list[str] = []
    for _ in range(line + after - first + 1):
        end = source.find("\n", pos)
        out.append(source[pos:] if end < 0 else source[pos:end])
        if end < 0:
            break
        pos = end + 1
    return first, [s[:-1] if s.endswith("\r") else s for s in out]


def comment_text(line: str, spec: LangSpec) -> str | None:
    """The text of a line that is only a comment (and not a pragma or shebang), else None."""
    stripped = line.lstrip()
    if not stripped.startswith(spec.comment) or stripped.startswith(spec.not_intents):
        return None
    while stripped.startswith(spec.comment):
        stripped = stripped[len(spec.comment):]
    return stripped.strip() or None


def indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def indent_block(code: str, indent: str) -> str:
    """Every non-blank line of code prefixed with indent (the comment's indentation)."""
    return "\n".join(indent + ln if ln.strip() else "" for ln in code.split("\n"))


@dataclass(frozen=True)
class Target:
    """Where an intent is and where its code goes.

    after_comment: the cursor is on the comment line; the code goes on a new line after it.
    Otherwise the cursor is on the (blank) line right after the comment, which the code
    replaces.
    """

    intent: str
    comment_line: int
    indent: str
    after_comment: bool
    line_text: str  # the text of the cursor's line


def completion_target(source: str, line: int, spec: LangSpec) -> Target | None:
    """The intent for a completion at `line`, or None when the cursor is not at one."""
    first, lines = lines_around(source, line, before=1, after=0)
    if len(lines) != line - first + 1:
        return None  # the cursor is past the end of the document
    here = lines[-1]
    intent = comment_text(here, spec)
    if intent:
        return Target(intent, line, indent_of(here), True, here)
    if line > 0 and not here.strip():
        above = lines[0]
        intent = comment_text(above, spec)
        if intent:
            return Target(intent, line - 1, indent_of(above), False, here)
    return None


def selection_target(source: str, start: int, end: int, spec: LangSpec) -> Target | None:
    """The intent in the comment lines of a selection (start..end lines, inclusive)."""
    if end - start >= MAX_INTENT_LINES:
        return None
    first, lines = lines_around(source, start, before=0, after=end - start)
    found = [(first + i, ln, comment_text(ln, spec)) for i, ln in enumerate(lines)]
    found = [f for f in found if f[2]]
    if not found:
        return None
    last_line, last_text, _ = found[-1]
    intent = " ".join(text for _, _, text in found)
    return Target(intent, last_line, indent_of(last_text), True, last_text)
