"""Mining helpers: one Python file parsed once (tree-sitter, through nl2code/syntax.py),
docstring prose turned into intents, and the quality filters every mined pair passes."""

from __future__ import annotations

import ast
import inspect
import re
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from pathlib import Path

from tree_sitter import Node, Query, QueryCursor, Tree

from nl2code import syntax

MAX_COMMENT_CODE_LINES = 5
MIN_INTENT_WORDS, MAX_INTENT_WORDS, MAX_INTENT_CHARS = 3, 40, 300
MAX_CODE_LINES, MAX_CODE_CHARS = 15, 600

DEFINITIONS = frozenset({"function_definition", "class_definition", "decorated_definition"})
CODE_KEYWORDS = frozenset(
    "import from return if elif else for while def class try except finally with raise "
    "assert del pass yield lambda print global nonlocal break continue async await".split()
)

UNINFORMATIVE = re.compile(
    r"^(?:see\b|same as\b|alias\b|deprecated\b|docstring inherited|for internal use|"
    r"(?:for |an? |some |more )?examples?\b\W*$|usage\b\W*$|for instance\W*$|as follows\W*$)",
    re.I,
)
_SIGNATURE = re.compile(r"^[A-Za-z_][\w.]*\s*\(")
_ROLE = re.compile(r":[\w.+-]+(?::[\w.+-]+)*:`(~?)([^`]+)`")
_DOUBLE_BACKTICK = re.compile(r"``([^`]+)``")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+(?=[A-Z`\"'(])")
_DOC_SECTION = re.compile(
    r"^(?::\w|@\w|>>>|(?:Args|Arguments|Parameters|Returns?|Yields?|Raises|Examples?|Notes?|"
    r"See Also|Attributes)\s*:?$)"
)


# --------------------------------------------------------------------------- parsing


@lru_cache(maxsize=1)
def _query() -> Query:
    return Query(
        syntax.language("python"), "(comment) @comment [(function_definition) (class_definition)] @definition"
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
    tree = syntax.parser("python").parse(data)
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


def node_text(src: ParsedFile, node: Node) -> str:
    return src.data[node.start_byte : node.end_byte].decode("utf-8", "replace")


def docstring_statement(body: Node | None) -> Node | None:
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


def string_value(source: str) -> str | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            value = ast.literal_eval(source)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    return value if isinstance(value, str) else None

# --------------------------------------------------------------------------- prose


def clean_prose(text: str) -> str:
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


def first_paragraph_summary(doc: str) -> str:
    """The docstring's first paragraph, or its first sentence when the paragraph is long."""
    paragraph: list[str] = []
    for line in inspect.cleandoc(doc).split("\n"):
        line = line.strip()
        if line and not _DOC_SECTION.match(line):
            paragraph.append(line)
        elif paragraph or line:
            break
    text = clean_prose(" ".join(paragraph))
    return text if _fits_intent(text) else _SENTENCE_BREAK.split(text)[0]


def last_sentence_if_long(text: str) -> str:
    return text if _fits_intent(text) else _SENTENCE_BREAK.split(text)[-1]

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
    if UNINFORMATIVE.match(intent):
        return "mined: intent not informative"
    if not code.strip():
        return "mined: empty code"
    if code.count("\n") + 1 > MAX_CODE_LINES or len(code) > MAX_CODE_CHARS:
        return "mined: code too long"
    if not syntax.parses(code, "python"):  # Python's compiler and tree-sitter both accept it
        return "mined: code does not compile"
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

