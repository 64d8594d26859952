"""nl2code-lsp: a language server that turns an intent comment into code.

A thin adapter over `nl2code.engine.Generator`: completion, inline completion, a code action
and a `nl2code.generate` command, all answered from a model kept warm in the server process.
Run it with `nl2code-lsp` (stdio) or `python -m nl2code_lsp`.
"""

from nl2code import __version__

__all__ = ["__version__"]
