"""The three miners over a parsed file: docstring -> function, comment -> statements and
doctest prose -> ``>>>`` block. Each yields (intent, code); the driver (miners.py) filters."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterator

from tree_sitter import Node

from nl2code import syntax
from nl2code.data.mineparse import (
    CODE_KEYWORDS,
    DEFINITIONS,
    MAX_CODE_LINES,
    MAX_COMMENT_CODE_LINES,
    UNINFORMATIVE,
    ParsedFile,
    clean_prose,
    docstring_statement,
    first_paragraph_summary,
    last_sentence_if_long,
    node_text,
    string_value,
)
from nl2code.data.records import Report

_LICENCE = re.compile(r"copyright|licen[cs]e|spdx|all rights reserved", re.I)
_PRAGMA = re.compile(
    r"^(?:!|-\*-|(?:pragma|type|pylint|mypy|pyright|fmt|isort|flake8|ruff|vim?|coding)\s*[:=])"
    r"|\bnoqa\b|\bnosec\b|\bpragma\b",
    re.I,
)
_TODO = re.compile(r"\b(?:TODO|FIXME|XXX|HACK)\b|^(?:todo|fixme)\b", re.I)
_RULE_LINE = re.compile(r"^[-=~^*+#_`:.\s]+$")
_DOCTEST_DIRECTIVE = re.compile(r"\s*#\s*doctest:.*$")


# --------------------------------------------------------------------------- miner (a)


def mine_docstrings(src: ParsedFile, report: Report) -> Iterator[tuple[str, str]]:
    """docstring -> function: (first paragraph of the docstring, function without it)."""
    for node in src.definitions:
        if node.type != "function_definition":
            continue
        doc_stmt = docstring_statement(node.child_by_field_name("body"))
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
    doc = string_value(node_text(src, doc_stmt.named_children[0]))
    if doc is None:
        report.drop("mined: docstring is not a plain string")
        return None
    after = src.lines[doc_last + 1 : last + 1]
    while after and not after[0].strip():
        after.pop(0)
    code = textwrap.dedent("\n".join(src.lines[first:doc_first] + after))
    return first_paragraph_summary(doc), code.rstrip()


def _is_stub(src: ParsedFile, statements: list[Node]) -> bool:
    """A body that is only `pass`, `...`, a bare return or `raise NotImplementedError`."""
    if len(statements) != 1:
        return False
    stmt = statements[0]
    if stmt.type == "pass_statement":
        return True
    text = node_text(src, stmt).strip()
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
        intent = clean_prose(" ".join(texts)).rstrip(":").rstrip()
        yield intent, textwrap.dedent("\n".join(src.lines[row + 1 : end + 1])).rstrip()


def _full_line_comments(src: ParsedFile) -> dict[int, tuple[int, str]]:
    """row -> (column, text without the leading #s) for comments alone on their line."""
    full = {}
    for node in src.comments:
        row, col = node.start_point
        if src.lines[row][:col].strip():
            continue
        full[row] = (col, node_text(src, node).lstrip("#").lstrip(":").strip())
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
    if not text or not syntax.parses(text, "python"):
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
        source = node_text(src, stmt)
        if ">>>" not in source:
            continue
        doc = string_value(source)
        if doc is not None:
            yield from _doctest_pairs(doc.split("\n"), report)


def _docstring_statements(src: ParsedFile) -> list[Node]:
    """Module, class and function docstrings, in source order."""
    bodies = [src.tree.root_node] + [d.child_by_field_name("body") for d in src.definitions]
    found = (docstring_statement(body) for body in bodies)
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
        elif UNINFORMATIVE.match(prose):
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
    text = clean_prose(" ".join(paragraph)).rstrip(":").rstrip()
    return last_sentence_if_long(text)

