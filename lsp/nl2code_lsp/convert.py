"""Candidates -> lsprotocol types: completion items, inline completions, code-action edits.

Columns are in the client's position encoding (UTF-16 unless negotiated otherwise), so
every column computed from text goes through the document's position codec.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from nl2code.rerank import Candidate

from nl2code_lsp.text import Target, indent_block


def char_index(line: str, column: int, codec: PositionCodec) -> int:
    """The index into line of a client column: clamped to the line's end, and moved to the
    end of a character the column falls inside (a surrogate pair, a multi-byte sequence)."""
    units = 0
    for i, ch in enumerate(line):
        if units >= column:
            return i
        units += codec.client_num_units(ch)
    return len(line)


def placement(target: Target, position: types.Position, codec: PositionCodec) -> tuple[types.Range, str]:
    """The range a snippet replaces and the text to put before the snippet.

    On the comment line: from the cursor to the end of the line, keeping what follows the
    cursor, then a newline. On the blank line after the comment: the whole line.
    """
    line = target.line_text
    eol = types.Position(position.line, codec.client_num_units(line))
    if target.after_comment:
        # the range starts on a character boundary: a column inside a surrogate pair or a
        # multi-byte character would make the edit split that character
        at = char_index(line, position.character, codec)
        start = types.Position(position.line, codec.client_num_units(line[:at]))
        return types.Range(start, eol), line[at:] + "\n"
    return types.Range(types.Position(position.line, 0), eol), ""


def describe(c: Candidate) -> str:
    text = f"nl2code · score {c.score:.2f}"
    if c.low_confidence:
        text += " · low confidence"
    if c.danger:
        text += " · ⚠ " + ", ".join(c.danger)
    return text


def completion_items(cands: list[Candidate], target: Target, position: types.Position,
                     codec: PositionCodec, markdown: bool) -> list[types.CompletionItem]:
    rng, prefix = placement(target, position, codec)
    typed = "" if target.after_comment else target.line_text[:char_index(target.line_text, position.character, codec)]
    items = []
    for i, c in enumerate(cands):
        first, *more = c.code.split("\n")
        label = first.strip() + (" …" if more else "")
        doc: types.MarkupContent | str = (
            types.MarkupContent(types.MarkupKind.Markdown, f"```{c.lang}\n{c.code}\n```") if markdown else c.code)
        items.append(types.CompletionItem(
            label=label,
            kind=types.CompletionItemKind.Snippet,
            detail=describe(c),
            documentation=doc,
            sort_text=f"{i:03d}",
            filter_text=typed + label,  # what the client matches against the text in the range
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(rng, prefix + indent_block(c.code, target.indent)),
        ))
    return items


def inline_items(cands: list[Candidate], target: Target, position: types.Position,
                 codec: PositionCodec) -> list[types.InlineCompletionItem]:
    rng, prefix = placement(target, position, codec)
    return [types.InlineCompletionItem(insert_text=prefix + indent_block(c.code, target.indent), range=rng)
            for c in cands]


def insert_after(uri: str, target: Target, code: str, codec: PositionCodec) -> types.WorkspaceEdit:
    """An edit that puts code on a new line after the target's comment line."""
    eol = types.Position(target.comment_line, codec.client_num_units(target.line_text))
    edit = types.TextEdit(types.Range(eol, eol), "\n" + indent_block(code, target.indent))
    return types.WorkspaceEdit(changes={uri: [edit]})
