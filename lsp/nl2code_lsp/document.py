"""Documents whose edits cost what the edit touches, not what the document holds.

pygls applies an incremental change by splitting the whole document into lines and joining
them again: a keystroke in a million-line file cost ~150 ms in Python. Here the offsets of
the edited lines are found by counting newlines in C (str.count over fixed-size chunks),
and the new text is one slice-and-join. Lines end at "\\n" (a "\\r" before it belongs to the
line's end), like the rest of the server (nl2code_lsp.text).

Columns arrive in the client's position encoding (UTF-16 by default); a column that falls
inside a character (between the halves of a surrogate pair, inside a multi-byte UTF-8
sequence) is moved to the end of that character, so an edit never splits one.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import PositionCodec

from nl2code_lsp.convert import char_index
from nl2code_lsp.text import line_start, remember


def line_text(source: str, start: int) -> str:
    """The line that begins at offset start, without its terminator."""
    end = source.find("\n", start)
    text = source[start:] if end < 0 else source[start:end]
    return text[:-1] if text.endswith("\r") else text


def offset_at(source: str, position: types.Position, codec: PositionCodec) -> int:
    """The offset into source of a client position (past the end: the document's end)."""
    start = line_start(source, position.line)
    if start is None:
        return len(source)
    return start + char_index(line_text(source, start), position.character, codec)


class FastTextDocument(TextDocument):
    def _apply_incremental_change(self, change: types.TextDocumentContentChangePartial) -> None:
        source = self.source
        start, end = change.range.start, change.range.end
        if (end.line, end.character) < (start.line, start.character):
            start, end = end, start
        a = offset_at(source, start, self._position_codec)
        b = offset_at(source, end, self._position_codec)
        first = line_start(source, start.line)
        self._source = "".join((source[:a], change.text, source[b:]))
        if first is not None:  # the edit leaves the text before it, so its line's start, as it was
            remember(self._source, start.line, first)


def install(workspace: Workspace) -> None:
    """Make the workspace create FastTextDocuments for the documents opened from now on."""
    def create(doc_uri: str, source: str | None = None, version: int | None = None,
               language_id: str | None = None) -> TextDocument:
        return FastTextDocument(doc_uri, source=source, version=version, language_id=language_id,
                                sync_kind=workspace._sync_kind, position_codec=workspace.position_codec)

    workspace._create_text_document = create
