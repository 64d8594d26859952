"""Code action "nl2code: explain selection": the reverse model says in words what the
selected code does, and the action inserts that as a comment above the selection.

Offered for a non-empty selection that is not only comments, when the loaded model carries
a reverse model. The explanation is computed when the action is resolved (or right away for
a client without resolve support), on the generation thread pool.
"""

from __future__ import annotations

import asyncio

from lsprotocol import types

EXPLAIN_TITLE = "nl2code: explain selection (insert a comment)"
EXPLAIN_KIND = types.CodeActionKind.RefactorRewrite
MAX_LINES = 200


def selected_code(lines: list[str], start: int, end: int, prefixes: tuple[str, ...]) -> str | None:
    """The selected lines (start..end inclusive) if they hold code, else None."""
    if start < 0 or end < start or end - start + 1 > MAX_LINES or end >= len(lines):
        return None
    chunk = lines[start : end + 1]
    code_lines = [x for x in chunk if x.strip() and not x.lstrip().startswith(prefixes)]
    if not code_lines:
        return None
    return "\n".join(chunk).strip("\n")


def comment_edit(uri: str, line: int, text: str, indent: str, prefix: str) -> types.WorkspaceEdit:
    start = types.Position(line, 0)
    body = f"{indent}{prefix} {' '.join(text.split())}\n"
    return types.WorkspaceEdit(changes={uri: [types.TextEdit(types.Range(start, start), body)]})


async def explanation(gen, code: str, lang: str) -> str | None:
    """The best explanation, or None when the model has none (no reverse model, bad input)."""
    from nl2code.errors import Nl2CodeError

    loop = asyncio.get_running_loop()
    try:
        texts = await loop.run_in_executor(None, lambda: gen.explain(code, lang, n=1))
    except Nl2CodeError:
        return None
    return texts[0] if texts else None
