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

from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from nl2code.data.minecode import mine_comments, mine_docstrings, mine_doctests
from nl2code.data.mineparse import ParsedFile, english_looking, parse_file, reject_reason
from nl2code.data.records import Example, Report
from nl2code.data.sources import iter_python_files, resolve_root
from nl2code.errors import DataError

__all__ = ["KINDS", "MINERS", "TAGS", "english_looking", "iter_python_files", "mine", "mine_file",
           "reject_reason", "resolve_root"]

KINDS = ("docstring", "comment", "doctest")
TAGS = {"docstring": "mined-docstring", "comment": "mined-comment", "doctest": "mined-doctest"}

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
