"""tldr pages (CC BY 4.0, tldr-pages team and contributors): description -> command pairs.

A page is Markdown: `# name`, `> ` lines about the command, then examples, each a line
`- Description:` followed by a line holding the command in backticks. The reader:

- removes mnemonic brackets from descriptions (`[c]reate a g[z]ipped archive` ->
  `create a gzipped archive`) and the trailing colon;
- resolves option alternatives `{{[-C|--directory]}}` to the short spelling and other
  alternatives `{{--tcp|--udp}}` to the first one;
- turns every other `{{placeholder}}` into a concrete, plausible example value
  (`{{path/to/target.tar.gz}}` -> `target.tar.gz`, `{{path/to/file1 path/to/file2 ...}}`
  -> `file1 file2`, `{{100}}` -> `100`), so that the model learns the free-form phrasing
  people type rather than template syntax;
- keeps only commands that tree-sitter-bash parses.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from nl2code.data.records import Example, Report, read_page

MAX_PAGE_BYTES = 200_000

_MNEMONIC = re.compile(r"\[([A-Za-z0-9.-]{1,4})\]")
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
_OPTION_ALT = re.compile(r"^\[([^|\]]*)\|([^\]]*)\]$")  # [-C|--directory], [ls|list]
_INNER_ALT = re.compile(r"\[[^\[\]]*\|[^\[\]]*\]")  # .tar[.gz|.bz2] inside a value


def clean_description(text: str) -> str:
    """`- [c]reate a g[z]ipped archive:` -> `create a gzipped archive`."""
    text = text.strip()
    if text.startswith("- "):
        text = text[2:]
    text = _MNEMONIC.sub(r"\1", text)
    text = text.rstrip().rstrip(":").strip()
    return " ".join(text.split())


def example_value(inner: str) -> str:
    """A concrete value for one placeholder's text (option alternatives included)."""
    inner = inner.strip()
    m = _OPTION_ALT.match(inner)
    if m:  # [-C|--directory], [ls|list]: the short spelling
        return m.group(1).strip()
    inner = _INNER_ALT.sub("", inner)  # path/to/source.tar[.gz|.bz2] -> path/to/source.tar
    if inner.startswith("[") and inner.endswith("]") and "|" not in inner:
        inner = inner[1:-1]
    if "|" in inner and " " not in inner.split("|")[0]:
        inner = inner.split("|")[0]  # --tcp|--udp|--raw -> --tcp
    words = [w for w in inner.split() if w not in ("...", "…")]
    out = []
    for w in words:
        w = w.rstrip(".") if w.endswith("...") else w
        if "path/to/" in w:
            base = w.rsplit("path/to/", 1)[1].rstrip("/")
            w = (w.split("path/to/", 1)[0] + base) if base else w.split("path/to/", 1)[0] + "dir"
        out.append(w)
    return " ".join(out) if out else inner


def fill_command(command: str) -> str:
    return _PLACEHOLDER.sub(lambda m: example_value(m.group(1)), command).strip()


def parse_page(text: str) -> Iterator[tuple[str, str]]:
    """(description, raw command) pairs of one page, in order."""
    desc = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("- "):
            desc = s
        elif s.startswith("`") and s.endswith("`") and len(s) > 2 and desc is not None:
            yield desc, s[1:-1]
            desc = None


def _mentions(intent: str, name: str) -> bool:
    words = set(re.findall(r"[\w.+-]+", intent.lower()))
    return name.lower() in words or name.lower().split("-")[0] in words


def read_tldr(root: Path, report: Report, source: str = "tldr") -> Iterator[Example]:
    """Every page under root/common and root/linux (or root itself), sorted by path.

    A description that does not name its command ("Display help") is also emitted with
    the command named ("Display help using pop") under the tag `<source>-named`, so the
    model sees both how people phrase a task and which tool a named request means.
    """
    from nl2code.syntax import parses

    root = Path(root)
    if not root.is_dir():
        from nl2code.errors import DataError

        raise DataError(f"tldr pages folder not found: {root}")
    pages = sorted(p for p in root.rglob("*.md") if p.is_file() and not p.is_symlink())
    for page in pages:
        text = read_page(page, MAX_PAGE_BYTES, report, "tldr page")
        if text is None:
            continue
        for desc, raw in parse_page(text):
            intent = clean_description(desc)
            code = fill_command(raw)
            if not intent or not code or "{{" in code or "}}" in code:
                report.drop("tldr example without intent or command", str(page))
                continue
            if not parses(code, "bash"):
                report.drop("tldr command does not parse", str(page))
                continue
            yield Example(intent, code, "bash", source)
            name = page.stem
            if not _mentions(intent, name):
                yield Example(f"{intent} using {name}", code, "bash", f"{source}-named")
