"""Documentation pages in reStructuredText (Sphinx `_sources/*.rst.txt`): prose -> code.

Read from the real artifacts installed on the machine, e.g. Debian's `python3.11-doc`
(/usr/share/doc/python3.11/html/_sources: tutorial, how-tos, library pages) and
`python-pandas-doc` (user guide, getting-started tasks). A pair is the prose paragraph
just before a code block (`.. ipython:: python`, `.. code-block:: python`, a `::` literal
block or `>>>` lines) and the block's statements:

- roles and markup are removed from the prose (`:meth:`DataFrame.head`` ->
  `DataFrame.head`, ``x`` -> x, references keep their text); only the last two
  sentences are kept, and the trailing colon goes;
- `>>>` blocks keep the input lines only (outputs dropped); lines that only display a
  name (`df`) are dropped; IPython prompts and `@verbatim` blocks are skipped;
- the code must compile as Python and be at most MAX_LINES lines.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from nl2code.data.records import Example, Report, read_page

MAX_FILE_BYTES = 2_000_000
MAX_LINES = 8
MAX_CODE_CHARS = 400
MIN_WORDS, MAX_WORDS = 3, 60

_ROLE = re.compile(r":[\w:.-]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_+")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPH = re.compile(r"(\*\*|\*)([^*]+)\1")
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_CODE_DIRECTIVES = {"ipython", "code-block", "code", "sourcecode", "doctest", "testcode"}


def clean_prose(text: str) -> str:
    text = _ROLE.sub(lambda m: m.group(1).strip(), text)
    text = _LINK.sub(r"\1", text)
    text = _LITERAL.sub(r"\1", text)
    text = _EMPH.sub(r"\2", text)
    text = re.sub(r"`([^`]+)`_*", r"\1", text)
    text = " ".join(text.split())
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", text)
    text = " ".join(sentences[-2:]).strip()
    text = re.sub(r"\s*::?$", "", text).rstrip(".").strip()
    return text


def _compiles(code: str) -> bool:
    from nl2code.data.readers import _python_ok

    return _python_ok(code)


def clean_code(lines: list[str]) -> str | None:
    """The statements of a block, or None when it is not a usable example."""
    if any(line.strip().startswith("@") for line in lines[:1]):  # @verbatim, @savefig...
        lines = [line for line in lines if not line.strip().startswith("@")]
    if any(re.match(r"\s*(In|Out)\s*\[\d*\]:", line) for line in lines):
        return None
    if any(line.lstrip().startswith(">>>") for line in lines):
        kept = []
        for line in lines:
            s = line.strip()
            if s.startswith(">>> ") or s == ">>>":
                kept.append(s[4:])
            elif s.startswith("... ") or s == "...":
                kept.append(s[4:])
        lines = kept
    text = "\n".join(lines)
    # dedent
    body = [line for line in text.splitlines() if line.strip()]
    if not body:
        return None
    indent = min(len(line) - len(line.lstrip()) for line in body)
    text = "\n".join(line[indent:] for line in text.splitlines()).strip("\n")
    if not _compiles(text):
        return None
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    src_lines = text.splitlines()
    keep = []
    done_to = 0  # statements sharing a line (`a = 1; b = 2`) are kept once
    for node in tree.body:  # drop statements that only display a name or attribute
        if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Name, ast.Attribute, ast.Constant)):
            continue
        if node.end_lineno <= done_to:
            continue
        keep.append("\n".join(src_lines[max(node.lineno - 1, done_to) : node.end_lineno]))
        done_to = node.end_lineno
    code = "\n".join(keep).strip()
    if not code or code.count("\n") + 1 > MAX_LINES or len(code) > MAX_CODE_CHARS:
        return None
    if code.startswith(("import ", "from ")) and "\n" not in code:
        return None  # a bare import teaches nothing about the task
    return code if _compiles(code) else None


def parse_rst(text: str) -> Iterator[tuple[str, list[str]]]:
    """(prose before, block lines) pairs of one page."""
    lines = text.splitlines()
    i, n = 0, len(lines)
    para: list[str] = []
    last_para = ""
    while i < n:
        line = lines[i]
        s = line.strip()
        m = _DIRECTIVE.match(s) if not line.startswith((" ", "\t")) else None
        literal = bool(para) and s == "" and " ".join(para).rstrip().endswith("::")
        if m or literal or (s.startswith(">>>") and not line.startswith((" ", "\t"))):
            is_code = False
            if m:
                name, arg = m.group(1), m.group(2).strip().lower()
                is_code = name in _CODE_DIRECTIVES and (not arg or arg.startswith(("python", "pycon", "py")))
                if para:
                    last_para = " ".join(para)
                para = []
                i += 1
                while i < n and lines[i].strip().startswith(":") and lines[i].startswith((" ", "\t")):
                    i += 1  # directive options
            elif literal:
                last_para = " ".join(para)
                para = []
                is_code = True
            if s.startswith(">>>") and not m:
                if para:
                    last_para = " ".join(para)
                    para = []
                block = []
                while i < n and lines[i].strip():
                    block.append(lines[i])
                    i += 1
                yield last_para, block
                continue
            block = []
            while i < n and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            if is_code and last_para:
                yield last_para, block
            last_para = ""
            continue
        if not s:
            if para:
                last_para = " ".join(para)
                para = []
        elif line.startswith((" ", "\t")) and not para:
            pass  # indented text outside a paragraph (a quote, a table): no prose
        elif set(s) <= set("=-~^*#+"):
            para, last_para = [], ""  # a section underline: the title is not a task
        else:
            para.append(s)
        i += 1


def read_pydoc(root: Path, report: Report, source: str = "pydoc") -> Iterator[Example]:
    """Every *.rst.txt (or *.rst) under root, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        from nl2code.errors import DataError

        raise DataError(f"documentation sources folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix in (".txt", ".rst")
                   and p.name.endswith((".rst.txt", ".rst")) and p.is_file() and not p.is_symlink())
    for page in files:
        if "whatsnew" in page.parts or "changelog" in page.name:
            continue  # release notes describe changes, not tasks
        text = read_page(page, MAX_FILE_BYTES, report, "documentation page")
        if text is None:
            continue
        for prose, block in parse_rst(text):
            intent = clean_prose(prose)
            words = len(intent.split())
            if words < MIN_WORDS or words > MAX_WORDS:
                report.drop("doc prose too short or too long")
                continue
            code = clean_code(block)
            if code is None:
                report.drop("doc block is not a usable Python example")
                continue
            yield Example(intent, code, "python", source)
