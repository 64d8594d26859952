"""Miners: (intent, code) pairs from Python source trees already on this machine.

A recipe names roots ("stdlib", an installed package such as "numpy", or a folder). Each
Python file under a root is parsed once with tree-sitter and three miners read the tree:

* docstring -> function: the first paragraph of a function's docstring is the intent and
  the function without its docstring, dedented, is the code (tag "mined-docstring");
* comment -> statements: a full-line comment and the few statements directly under it
  (tag "mined-comment");
* doctest: the prose just before a ``>>>`` block and that block's source lines
  (tag "mined-doctest").

Every pair passes the same quality filters (intent length and "English-looking", code
size, the code parses with both ``compile`` and tree-sitter); every rejection is counted
in the Report. Roots and files come from nl2code/data/sources.py, whose walk never follows
symlinks, reads only regular files and skips test folders, so mining a whole standard
library is safe and deterministic.
"""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from pathlib import Path

import tree_sitter_python
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from nl2code.data.records import Example, Report
from nl2code.data.sources import iter_python_files, resolve_root
from nl2code.errors import DataError

KINDS = ("docstring", "comment", "doctest")
TAGS = {"docstring": "mined-docstring", "comment": "mined-comment", "doctest": "mined-doctest"}

MAX_COMMENT_CODE_LINES = 5
MIN_INTENT_WORDS, MAX_INTENT_WORDS, MAX_INTENT_CHARS = 3, 40, 300
MAX_CODE_LINES, MAX_CODE_CHARS = 15, 600

DEFINITIONS = frozenset({"function_definition", "class_definition", "decorated_definition"})
CODE_KEYWORDS = frozenset(
    "import from return if elif else for while def class try except finally with raise "
    "assert del pass yield lambda print global nonlocal break continue async await".split()
)

_LICENCE = re.compile(r"copyright|licen[cs]e|spdx|all rights reserved", re.I)
_PRAGMA = re.compile(
    r"^(?:!|-\*-|(?:pragma|type|pylint|mypy|pyright|fmt|isort|flake8|ruff|vim?|coding)\s*[:=])"
    r"|\bnoqa\b|\bnosec\b|\bpragma\b",
    re.I,
)
_TODO = re.compile(r"\b(?:TODO|FIXME|XXX|HACK)\b|^(?:todo|fixme)\b", re.I)
_UNINFORMATIVE = re.compile(
    r"^(?:see\b|same as\b|alias\b|deprecated\b|docstring inherited|for internal use|"
    r"(?:for |an? |some |more )?examples?\b\W*$|usage\b\W*$|for instance\W*$|as follows\W*$)",
    re.I,
)
_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\s*\(")
_RULE_LINE = re.compile(r"^[-=~^*+#_`:.\s]+$")
_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)*:`(~?)([^`]+)`")
_DOUBLE_BACKTICK = re.compile(r"``([^`]+)``")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(])")
_DOC_SECTION = re.compile(
    r"^(?::\w|@\w|>>>|(?:Args|Arguments|Parameters|Returns?|Yields?|Raises|Examples?|Notes?|"
    r"See Also|Attributes)\s*:?$)"
)
_DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


# --------------------------------------------------------------------------- parsing


@lru_cache(maxsize=1)
def _language() -> Language:
    return Language(tree_sitter_python.language())


@lru_cache(maxsize=1)
def _parser() -> Parser:
    return Parser(_language())


@lru_cache(maxsize=1)
def _query() -> Query:
    return Query(
        _language(), "(comment) @comment [(function_definition) (class_definition)] @definition"
    )


@dataclass
class ParsedFile:
    """One file parsed once: its lines, tree, comments and definitions in source order."""

    path: Path
    data: bytes
    lines: list[str]
    tree: Tree
    comments: list[Node] = field(default_factory=list)
    definitions: list[Node] = field(default_factory=list)

    def where(self, row: int) -> str:
        return f"{self.path}:{row + 1}"


def parse_file(path: Path, text: str) -> ParsedFile:
    data = text.encode("utf-8")
    tree = _parser().parse(data)
    captures = QueryCursor(_query()).captures(tree.root_node)
    by_start = attrgetter("start_byte")
    return ParsedFile(
        path=path,
        data=data,
        lines=text.split("\n"),
        tree=tree,
        comments=sorted(captures.get("comment", []), key=by_start),
        definitions=sorted(captures.get("definition", []), key=by_start),
    )


def _node_text(src: ParsedFile, node: Node) -> str:
    return src.data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _docstring_statement(body: Node | None) -> Node | None:
    """The first statement of a body when it is a plain string literal, else None."""
    if body is None:
        return None
    for child in body.named_children:
        if child.type == "comment":
            continue
        if child.type == "expression_statement" and child.named_child_count == 1:
            if child.named_children[0].type == "string":
                return child
        return None
    return None


def _string_value(source: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = ast.literal_eval(source)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, str) else None


def _compiles(code: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(code, "<mined>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            return False
    return True


# --------------------------------------------------------------------------- prose


def _clean_prose(text: str) -> str:
    """Collapse whitespace and turn reST roles/literals into CoNaLa-style `name` quotes."""
    text = _ROLE.sub(_role_text, text)
    text = _DOUBLE_BACKTICK.sub(r"`\1`", text)
    return " ".join(text.split())


def _role_text(match: re.Match) -> str:
    """:func:`~pkg.mod.name` -> `name`; :ref:`Title <target>` -> `Title`."""
    tilde, target = match.groups()
    target = target.split("<")[0].strip() or target
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _fits_intent(text: str) -> bool:
    return len(text.split()) <= MAX_INTENT_WORDS and len(text) <= MAX_INTENT_CHARS


def _first_paragraph_summary(doc: str) -> str:
    """The docstring's first paragraph, or its first sentence when the paragraph is long."""
    paragraph: list[str] = []
    for line in inspect.cleandoc(doc).split("\n"):
        line = line.strip()
        if line and not _DOC_SECTION.match(line):
            paragraph.append(line)
        elif paragraph or line:
            break
    text = _clean_prose(" ".join(paragraph))
    return text if _fits_intent(text) else _SENTENCE_BREAK.split(text)[0]


def _last_sentence_if_long(text: str) -> str:
    return text if _fits_intent(text) else _SENTENCE_BREAK.split(text)[-1]


# --------------------------------------------------------------------------- miner (a)


def mine_docstrings(src: ParsedFile, report: Report) -> Iterator[tuple[str, str]]:
    """docstring -> function: (first paragraph of the docstring, function without it)."""
    for node in src.definitions:
        if node.type != "function_definition":
            continue
        doc_stmt = _docstring_statement(node.child_by_field_name("body"))
        if doc_stmt is None:
            continue
        pair = _docstring_pair(src, node, doc_stmt, report)
        if pair is not None:
            yield pair


def _docstring_pair(
    src: ParsedFile, func: Node, doc_stmt: Node, report: Report
) -> tuple[str, str] | None:
    first, last = func.start_point.row, func.end_point.row
    doc_first, doc_last = doc_stmt.start_point.row, doc_stmt.end_point.row
    body = func.child_by_field_name("body")
    rest = [c for c in body.named_children if c.type != "comment" and c != doc_stmt]
    reason = None
    if doc_first == first or not rest:
        reason = "mined: function has no body besides its docstring"
    elif _is_stub(src, rest):
        reason = "mined: stub function"
    elif (last - first + 1) - (doc_last - doc_first + 1) > MAX_CODE_LINES + 2:
        reason = "mined: code too long"
    if reason:
        report.drop(reason)
        return None
    doc = _string_value(_node_text(src, doc_stmt.named_children[0]))
    if doc is None:
        report.drop("mined: docstring is not a plain string")
        return None
    after = src.lines[doc_last + 1 : last + 1]
    while after and not after[0].strip():
        after.pop(0)
    code = textwrap.dedent("\n".join(src.lines[first:doc_first] + after))
    return _first_paragraph_summary(doc), code.rstrip()


def _is_stub(src: ParsedFile, statements: list[Node]) -> bool:
    """A body that is only `pass`, `...`, a bare return or `raise NotImplementedError`."""
    if len(statements) != 1:
        return False
    stmt = statements[0]
    if stmt.type == "pass_statement":
        return True
    text = _node_text(src, stmt).strip()
    if stmt.type == "raise_statement":
        return "NotImplementedError" in text
    return text in ("...", "return", "return None", "return NotImplemented")


# --------------------------------------------------------------------------- miner (b)


def mine_comments(src: ParsedFile, report: Report) -> Iterator[tuple[str, str]]:
    """comment -> statements: a full-line comment run and the statements right under it."""
    full = _full_line_comments(src)
    for row, (col, _) in full.items():
        below = full.get(row + 1)
        if below is not None and below[0] == col:
            continue  # not the last line of a comment run
        statements = _statements_below(src, row + 1, col)
        if not statements:
            continue
        texts = [full[r][1] for r in _comment_run(full, row, col)]
        reason = _comment_skip_reason(texts)
        end = statements[-1].end_point.row
        if reason is None and end - row > MAX_COMMENT_CODE_LINES:
            reason = "mined: comment code too long"
        if reason:
            report.drop(reason)
            continue
        intent = _clean_prose(" ".join(texts)).rstrip(":").rstrip()
        yield intent, textwrap.dedent("\n".join(src.lines[row + 1 : end + 1])).rstrip()


def _full_line_comments(src: ParsedFile) -> dict[int, tuple[int, str]]:
    """row -> (column, text without the leading #s) for comments alone on their line."""
    full = {}
    for node in src.comments:
        row, col = node.start_point
        if src.lines[row][:col].strip():
            continue
        full[row] = (col, _node_text(src, node).lstrip("#").lstrip(":").strip())
    return full


def _comment_run(full: dict[int, tuple[int, str]], last: int, col: int) -> list[int]:
    first = last
    while (above := full.get(first - 1)) is not None and above[0] == col:
        first -= 1
    return list(range(first, last + 1))


def _comment_skip_reason(texts: list[str]) -> str | None:
    for text in texts:
        if _LICENCE.search(text):
            return "mined: licence comment"
        if _PRAGMA.search(text):
            return "mined: pragma comment"
        if _TODO.search(text):
            return "mined: todo comment"
        if _looks_like_code(text):
            return "mined: commented-out code"
    return None


def _looks_like_code(text: str) -> bool:
    first_word = re.match(r"[A-Za-z_]*", text).group(0)
    if first_word in CODE_KEYWORDS and text.endswith(":"):
        return True
    if not text or not _compiles(text):
        return False
    return first_word in CODE_KEYWORDS or bool(re.search(r"[()=\[\].]", text))


def _statements_below(src: ParsedFile, row: int, col: int) -> list[Node]:
    """The statements starting at (row, col) in the same body, up to a gap or comment."""
    first = _statement_at(src, row, col)
    if first is None or first.type in DEFINITIONS or _is_bare_string(first):
        return []
    if not _in_function_or_module(first):
        return []
    statements, end = [first], first.end_point.row
    sibling = first.next_named_sibling
    while sibling is not None:
        if sibling.type == "comment" and sibling.start_point.row == end:
            sibling = sibling.next_named_sibling  # trailing comment on the last line
            continue
        if sibling.type == "comment" or sibling.type in DEFINITIONS:
            break
        if tuple(sibling.start_point) != (end + 1, col):
            break
        if sibling.end_point.row - row + 1 > MAX_COMMENT_CODE_LINES:
            break
        statements.append(sibling)
        end = sibling.end_point.row
        sibling = sibling.next_named_sibling
    return statements


def _statement_at(src: ParsedFile, row: int, col: int) -> Node | None:
    if row >= len(src.lines):
        return None
    node = src.tree.root_node.descendant_for_point_range((row, col), (row, col))
    while node is not None and node.parent is not None:
        if node.parent.type in ("block", "module"):
            break
        node = node.parent
    if node is None or node.parent is None or tuple(node.start_point) != (row, col):
        return None
    return node


def _is_bare_string(node: Node) -> bool:
    return node.type == "expression_statement" and all(
        c.type in ("string", "concatenated_string") for c in node.named_children
    )


def _in_function_or_module(node: Node) -> bool:
    parent = node.parent
    while parent is not None:
        if parent.type == "function_definition":
            return True
        if parent.type == "class_definition":
            return False
        parent = parent.parent
    return True


# --------------------------------------------------------------------------- miner (c)


def mine_doctests(src: ParsedFile, report: Report) -> Iterator[tuple[str, str]]:
    """doctest: (prose right before a >>> block, the block's source lines)."""
    if b">>>" not in src.data:
        return
    for stmt in _docstring_statements(src):
        source = _node_text(src, stmt)
        if ">>>" not in source:
            continue
        doc = _string_value(source)
        if doc is not None:
            yield from _doctest_pairs(doc.split("\n"), report)


def _docstring_statements(src: ParsedFile) -> list[Node]:
    """Module, class and function docstrings, in source order."""
    bodies = [src.tree.root_node] + [d.child_by_field_name("body") for d in src.definitions]
    found = (_docstring_statement(body) for body in bodies)
    return [stmt.named_children[0] for stmt in found if stmt is not None]


def _is_prompt(stripped: str) -> bool:
    return stripped == ">>>" or stripped.startswith(">>> ")


def _is_continuation(stripped: str) -> bool:
    return stripped == "..." or stripped.startswith("... ")


def _doctest_pairs(lines: list[str], report: Report) -> Iterator[tuple[str, str]]:
    stripped = [line.strip() for line in lines]
    i = 0
    while i < len(lines):
        if not _is_prompt(stripped[i]):
            i += 1
            continue
        start, code, i = i, _doctest_block(stripped, i), _block_end(stripped, i)
        prose = _prose_before(stripped, start)
        if not prose:
            report.drop("mined: doctest without prose")
        elif _only_imports(code):
            report.drop("mined: doctest only imports")
        elif _UNINFORMATIVE.match(prose):
            report.drop("mined: doctest prose not useful")
        else:
            yield prose, code


def _only_imports(code: str) -> bool:
    return all(line.startswith(("import ", "from ")) for line in code.split("\n") if line)


def _block_end(stripped: list[str], start: int) -> int:
    end = start
    while end < len(stripped) and stripped[end]:
        end += 1
    return end


def _doctest_block(stripped: list[str], start: int) -> str:
    """Source lines of the block (prompts stripped), leaving out expected output."""
    code, in_source = [], False
    for line in stripped[start : _block_end(stripped, start)]:
        if _is_prompt(line) or (in_source and _is_continuation(line)):
            code.append(_DOCTEST_DIRECTIVE.sub("", line[4:]))
            in_source = True
        else:
            in_source = False
    return "\n".join(code).strip("\n")


def _prose_before(stripped: list[str], start: int) -> str:
    """The paragraph ending just above a block (one blank line allowed), or ""."""
    end = start - 1
    if end >= 0 and not stripped[end]:
        end -= 1
    first = end
    while first >= 0 and stripped[first]:
        first -= 1
    paragraph = stripped[first + 1 : end + 1]
    if not paragraph or any(_is_prompt(s) or _is_continuation(s) for s in paragraph):
        return ""
    if any(_RULE_LINE.match(s) for s in paragraph):
        return ""  # a section header such as "Examples\n--------"
    text = _clean_prose(" ".join(paragraph)).rstrip(":").rstrip()
    return _last_sentence_if_long(text)


# --------------------------------------------------------------------------- filters


def reject_reason(intent: str, code: str) -> str | None:
    """Why a mined pair fails the quality filters, or None when it passes."""
    words = intent.split()
    if len(words) < MIN_INTENT_WORDS:
        return "mined: intent too short"
    if len(words) > MAX_INTENT_WORDS or len(intent) > MAX_INTENT_CHARS:
        return "mined: intent too long"
    if not english_looking(intent):
        return "mined: intent not English-looking"
    if _UNINFORMATIVE.match(intent):
        return "mined: intent not informative"
    if not code.strip():
        return "mined: empty code"
    if code.count("\n") + 1 > MAX_CODE_LINES or len(code) > MAX_CODE_CHARS:
        return "mined: code too long"
    if not _compiles(code):
        return "mined: code does not compile"
    if _parser().parse(code.encode("utf-8")).root_node.has_error:
        return "mined: code has tree-sitter errors"
    return None


def english_looking(intent: str) -> bool:
    """Mostly ASCII letters, enough plain alphabetic words, and not a call signature."""
    chars = [c for c in intent if not c.isspace()]
    letters = sum(1 for c in chars if c.isascii() and c.isalpha())
    if letters < 0.6 * len(chars):
        return False
    alphabetic = re.findall(r"\b[A-Za-z]{2,}\b", intent)
    if len(alphabetic) < 2 or len(alphabetic) < 0.4 * len(intent.split()):
        return False
    return not _SIGNATURE.match(intent)


# --------------------------------------------------------------------------- driver

MINERS: dict[str, Callable[[ParsedFile, Report], Iterable[tuple[str, str]]]] = {
    "docstring": mine_docstrings,
    "comment": mine_comments,
    "doctest": mine_doctests,
}


def mine_file(path: Path, text: str, kinds: Iterable[str], report: Report) -> list[Example]:
    """All pairs from one file that pass the filters; a crash is reported, not raised."""
    try:
        src = parse_file(path, text)
        out = []
        for kind in kinds:
            for intent, code in MINERS[kind](src, report):
                reason = reject_reason(intent, code)
                if reason:
                    report.drop(reason)
                else:
                    out.append(Example(intent, code, "python", TAGS[kind]))
        return out
    except Exception:  # one odd file must not end a build over thousands of files
        report.drop("miner error", str(path))
        return []


def mine(
    roots: list[str],
    kinds: Iterable[str] = KINDS,
    cap_per_source: int = 50_000,
    report: Report | None = None,
    progress: Callable[[Path], object] | None = None,
) -> tuple[list[Example], dict[str, str]]:
    """Mine every root; return (examples in deterministic order, {root name: version}).

    Each source tag stops at cap_per_source examples (0 or less means no cap); exact
    duplicate pairs are kept once. `progress`, if given, is called with each file path.
    """
    report = report if report is not None else Report()
    kinds = _checked_kinds(kinds)
    resolved = [(name, *resolve_root(name)) for name in roots]
    versions = {name: version for name, _, version in resolved}
    cap = cap_per_source if cap_per_source > 0 else float("inf")
    counts: Counter = Counter()
    seen: set[tuple[str, str]] = set()
    examples: list[Example] = []
    for _, path, _ in resolved:
        for file_path, text in iter_python_files(path, report):
            active = [k for k in kinds if counts[TAGS[k]] < cap]
            if not active:
                return examples, versions
            if progress is not None:
                progress(file_path)
            for ex in mine_file(file_path, text, active, report):
                if counts[ex.source] >= cap:
                    continue
                if (ex.intent, ex.code) in seen:
                    report.drop("mined: duplicate")
                    continue
                seen.add((ex.intent, ex.code))
                counts[ex.source] += 1
                examples.append(ex)
    return examples, versions


def _checked_kinds(kinds: Iterable[str]) -> list[str]:
    kinds = list(dict.fromkeys(kinds))
    unknown = [k for k in kinds if k not in MINERS]
    if unknown:
        raise DataError(f"unknown miner {unknown[0]!r}; choose from {', '.join(KINDS)}")
    return kinds
