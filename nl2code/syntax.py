"""Does a snippet parse? tree-sitter grammars by language name, plus Python's own compiler.

tree-sitter-python accepts some invalid Python (missing indentation after `def f():`,
`print 'x'`), so for Python a snippet parses only when tree-sitter finds no ERROR/MISSING
node *and* `compile(..., PyCF_ONLY_AST)` accepts it: a returned snippet is one Python
itself accepts. Adding a language is one line in nl2code/languages.py plus its grammar wheel.
"""

from __future__ import annotations

import ast
import importlib
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache

from nl2code import languages
from nl2code.errors import UsageError
from nl2code.languages import canonical_lang  # noqa: F401  (callers import it from here too)

# language name -> grammar module (each exposes language()), from the registry
GRAMMARS = {name: lang.grammar for name, lang in languages.REGISTRY.items()}


@dataclass(frozen=True)
class SyntaxIssue:
    line: int  # 1-based
    column: int  # 0-based
    message: str


@dataclass
class CheckResult:
    ok: bool
    errors: list[SyntaxIssue] = field(default_factory=list)


_local = threading.local()  # tree-sitter parsers are not shared across threads


@lru_cache(maxsize=None)
def _language(lang: str):
    from tree_sitter import Language

    try:
        module = importlib.import_module(GRAMMARS[lang])
    except ImportError:
        raise UsageError(f"the grammar for {lang} is not installed: pip install {GRAMMARS[lang].replace('_', '-')}") from None
    return Language(module.language())


def _parser(lang: str):
    from tree_sitter import Parser

    cache = getattr(_local, "parsers", None)
    if cache is None:
        cache = _local.parsers = {}
    if lang not in cache:
        cache[lang] = Parser(_language(lang))
    return cache[lang]


def _tree_errors(root, limit: int = 20) -> list[SyntaxIssue]:
    errors: list[SyntaxIssue] = []
    stack = [root]
    while stack and len(errors) < limit:
        node = stack.pop()
        if node.is_error or node.is_missing:
            row, col = node.start_point
            what = f"missing {node.type}" if node.is_missing else "syntax error"
            errors.append(SyntaxIssue(row + 1, col, what))
            continue
        if node.has_error:
            stack.extend(reversed(node.children))
    return errors


def check(code: str, lang: str = "python") -> CheckResult:
    """Whether code parses cleanly as a whole program in lang, and where it fails."""
    lang = canonical_lang(lang)
    if not code.strip():
        return CheckResult(False, [SyntaxIssue(1, 0, "empty snippet")])
    if "\x00" in code:
        return CheckResult(False, [SyntaxIssue(1, code.index("\x00"), "NUL byte")])
    tree = _parser(lang).parse(code.encode("utf-8", "surrogatepass"))
    errors = _tree_errors(tree.root_node) if tree.root_node.has_error else []
    if not errors and languages.REGISTRY[lang].compile_check:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                compile(code, "<snippet>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except SyntaxError as exc:
            errors = [SyntaxIssue(exc.lineno or 1, max((exc.offset or 1) - 1, 0), exc.msg)]
        except (ValueError, RecursionError, MemoryError) as exc:
            errors = [SyntaxIssue(1, 0, type(exc).__name__)]
    return CheckResult(not errors, errors)


def parses(code: str, lang: str = "python") -> bool:
    return check(code, lang).ok


def language(lang: str = "python"):
    """The tree-sitter Language of lang's grammar (for queries, e.g. the data miners)."""
    return _language(canonical_lang(lang))


def parser(lang: str = "python"):
    """This thread's tree-sitter Parser for lang (whole-file parsing, e.g. the data miners)."""
    return _parser(canonical_lang(lang))
