"""Manual pages (roff, usually gzipped): the EXAMPLES section's prose -> command line.

Read from the pages installed on the machine (/usr/share/man/man1). Only the sections
titled EXAMPLES, EXAMPLE or USAGE EXAMPLES are read. The section is cut into prose
paragraphs and code blocks (`.nf`/`.fi`, `.EX`/`.EE`, `.RS`/`.RE` display blocks):

- a block's command lines are the lines after a `$ ` prompt (with `\\`-continued lines
  joined into one line), or, without prompts, lines that start with the page's command;
  output lines are left out; a block with more than MAX_COMMANDS commands is dropped;
- the intent is the paragraph just before the block ("To create an instance, run:" ->
  "create an instance"); when the section opens with a block, the page puts each
  description after its command (DocBook style) and the paragraph after is used;
- the command must parse as bash (tree-sitter, nl2code/syntax.py), carry no `<name>` or
  `[options]` placeholders and fit MAX_CODE_CHARS.

`include`/`exclude` are file-name globs (e.g. the gcloud pages as their own source).
Versions: the Debian package (name==version) that owns each page that gave pairs.
"""

from __future__ import annotations

import fnmatch
import gzip
import re
from collections.abc import Iterator
from pathlib import Path

from nl2code import syntax
from nl2code.data.records import Example, Report
from nl2code.errors import DataError

MAX_PAGE_BYTES = 4_000_000
MAX_COMMANDS = 3
MAX_CODE_CHARS = 300
MIN_WORDS, MAX_WORDS = 3, 40

_SECTION = re.compile(r'^\.SH\s+"?(.*?)"?\s*$', re.I)
_EXAMPLE_TITLES = {"EXAMPLES", "EXAMPLE", "USAGE EXAMPLES", "EXAMPLES OF USE"}
_BLOCK_OPEN = {".nf": ".fi", ".EX": ".EE", ".RS": ".RE"}
_BREAKS = (".PP", ".P", ".LP", ".IP", ".TP", ".SS", ".sp", ".br", ".HP", ".TQ")
_FONT_MACROS = re.compile(r"^\.(B|I|R|BR|RB|BI|IB|RI|IR|SM|SB|CW)\s+(.*)$")
_ESCAPES = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),  # font changes \fB \f(CW \f[B]
    (re.compile(r"\\s[+-]?\d"), ""),  # size changes
    (re.compile(r"\\\*\((?:lq|rq)|\\\((?:lq|rq)|\\\[(?:lq|rq)\]"), '"'),
    (re.compile(r"\\\*\((?:Aq|aq)|\\\((?:aq|oq|cq)|\\\[(?:aq|oq|cq)\]"), "'"),
    (re.compile(r"\\\(dq|\\\[dq\]"), '"'),
    (re.compile(r"\\\(ga|\\\[ga\]"), "`"),
    (re.compile(r"\\\(ti|\\\[ti\]|\\\(a~"), "~"),
    (re.compile(r"\\\(ha|\\\[ha\]|\\\(a\^"), "^"),
    (re.compile(r"\\\((?:em|en|hy)|\\\[(?:em|en|hy)\]"), "-"),
    (re.compile(r"\\\(bu|\\\[bu\]"), ""),
    (re.compile(r"\\\*\(.."), ""),  # other strings (trademarks, ...)
    (re.compile(r"\\[&|^:%)]"), ""),  # zero-width characters
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\[e\\]"), "\\\\"),
]
_PLACEHOLDER = re.compile(r"<[A-Za-z][\w.-]*(?:\s[\w.-]+)*>|\[(?:-?-?[A-Za-z][\w-]*|OPTIONS?|options?)\]|\.\.\.$")
_LEAD = re.compile(r"^(?:to|in order to)\s+", re.I)
_TAIL = re.compile(
    r"(?:,?\s*(?:you (?:can|could|would|may)\s+)?(?:run|use|type|enter|execute|do|try|invoke|issue)"
    r"(?:\s+(?:the\s+)?(?:following|this|these)(?:\s+commands?)?)?(?:\s+(?:command|in a shell))?"
    r"|,?\s*the following commands? (?:can be used|will do|does it|is used|works))?\s*:+\s*$",
    re.I,
)


def roff_text(line: str) -> str:
    """One roff line as plain text: font macros unwrapped, escapes resolved."""
    m = _FONT_MACROS.match(line)
    if m:
        line = " ".join(a.strip('"') for a in re.findall(r'"[^"]*"|\S+', m.group(2)))
        if m.group(1) in ("BR", "RB", "BI", "IB", "RI", "IR"):
            line = line.replace(" ", "", 1) if len(line.split()) == 2 and "(" in line else line
    for pattern, repl in _ESCAPES:
        line = pattern.sub(repl, line)
    return line


def example_section(text: str) -> list[str]:
    """The lines of the EXAMPLES (or similar) section, or []."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        m = _SECTION.match(line)
        if m:
            if inside:
                break
            inside = roff_text(m.group(1)).strip().upper() in _EXAMPLE_TITLES
            continue
        if inside:
            out.append(line)
    return out


def section_items(lines: list[str]) -> list[tuple[str, list[str]]]:
    """("text", [paragraph]) and ("code", [block lines]) items in page order."""
    items: list[tuple[str, list[str]]] = []
    para: list[str] = []
    block: list[str] | None = None
    closer = ""
    depth = 0

    def flush_para():
        if para:
            items.append(("text", [" ".join(para)]))
            para.clear()

    for raw in lines:
        line = raw.rstrip()
        word = line.split(" ", 1)[0] if line.startswith((".", "'")) else ""
        if block is not None:
            if word == closer and depth == 0:
                if any(s.strip() for s in block):
                    items.append(("code", list(block)))
                block = None
            elif word in _BLOCK_OPEN and _BLOCK_OPEN[word] == closer:
                depth += 1
            elif word == closer:
                depth -= 1
            elif not word or _FONT_MACROS.match(line):
                block.append(roff_text(line))
            continue
        if word in _BLOCK_OPEN:
            flush_para()
            block, closer, depth = [], _BLOCK_OPEN[word], 0
        elif word in _BREAKS or not line.strip():
            flush_para()
        elif word and not _FONT_MACROS.match(line):
            continue  # other requests (.if, .in, .ft, comments)
        else:
            text = roff_text(line).strip()
            if text:
                para.append(text)
    flush_para()
    return items


def block_commands(block: list[str], command: str) -> list[str]:
    """The commands of a display block: prompted lines (continuations joined), or lines
    that start with the page's command when the block has no prompt."""
    lines = [s.rstrip() for s in block if s.strip()]
    prompted = any(s.lstrip().startswith(("$ ", "% ")) for s in lines)
    out: list[str] = []
    i = 0
    while i < len(lines):
        s = lines[i].strip()
        if prompted and s.startswith(("$ ", "% ")):
            cmd = s[2:].strip()
        elif not prompted and (s == command or s.startswith(command + " ")):
            cmd = s
        else:
            i += 1
            continue  # output, or text inside the block
        while cmd.endswith("\\") and i + 1 < len(lines):
            i += 1
            cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
        out.append(" ".join(cmd.split()) if "'" not in cmd and '"' not in cmd else cmd)
        i += 1
    return out


def clean_intent(text: str) -> str:
    text = " ".join(text.split())
    text = _TAIL.sub("", text).rstrip(" .,;:")
    text = _LEAD.sub("", text)
    return text[:1].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text


def page_pairs(text: str, command: str, report: Report, where: str) -> Iterator[tuple[str, str]]:
    items = section_items(example_section(text))
    after = bool(items) and items[0][0] == "code"  # descriptions follow their commands
    for k, (kind, body) in enumerate(items):
        if kind != "code":
            continue
        j = k + 1 if after else k - 1
        near = items[j] if 0 <= j < len(items) else None
        if near is None or near[0] != "text":
            report.drop("man example without a description")
            continue
        commands = block_commands(body, command)
        if not commands:
            report.drop("man block holds no command")
            continue
        if len(commands) > MAX_COMMANDS:
            report.drop("man block has too many commands")
            continue
        intent, code = clean_intent(near[1][0]), "\n".join(commands)
        reason = _reject(intent, code)
        if reason:
            report.drop(reason, where if reason.endswith("parse") else None)
            continue
        yield intent, code


def _reject(intent: str, code: str) -> str | None:
    words = len(intent.split())
    if words < MIN_WORDS or words > MAX_WORDS:
        return "man description too short or too long"
    if len(code) > MAX_CODE_CHARS:
        return "man command too long"
    if _PLACEHOLDER.search(code):
        return "man command has placeholders"
    if not syntax.parses(code, "bash"):
        return "man command does not parse"
    return None


def _read_page(path: Path, report: Report) -> str | None:
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as fh:
            data = fh.read(MAX_PAGE_BYTES + 1)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        report.drop("unreadable man page", f"{path}: {exc}")
        return None
    if len(data) > MAX_PAGE_BYTES:
        report.drop("man page too large", str(path))
        return None
    return data.decode("utf-8", "replace")


def page_files(root: Path, include: list[str], exclude: list[str]) -> list[Path]:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"manual page folder not found: {root}")
    out = []
    for p in sorted(root.iterdir()):
        if p.is_symlink() or not p.is_file():
            continue  # links are aliases of another page
        if include and not any(fnmatch.fnmatch(p.name, g) for g in include):
            continue
        if any(fnmatch.fnmatch(p.name, g) for g in exclude):
            continue
        out.append(p)
    return out


def read_manpages(root: Path, report: Report, source: str = "manpages", include: list[str] | None = None,
                  exclude: list[str] | None = None, used: list[Path] | None = None) -> Iterator[Example]:
    """Pairs of every page under root (sorted by name); `used` collects the pages that
    gave pairs (for the package versions)."""
    for path in page_files(root, include or [], exclude or []):
        text = _read_page(path, report)
        if text is None or ".SH" not in text:
            continue
        name = path.name.split(".")[0]
        command = name.replace("_", " ") if name.startswith("gcloud") else name
        got = False
        for intent, code in page_pairs(text, command, report, str(path)):
            got = True
            yield Example(intent, code, "bash", source)
        if got and used is not None:
            used.append(path)


def package_versions(pages: list[Path], info: Path = Path("/var/lib/dpkg")) -> str:
    """"pkg==version, ..." of the Debian packages that own the given pages (dpkg's own
    database; pages no package owns are left out)."""
    wanted = {str(p) for p in pages}
    owners: set[str] = set()
    lists = sorted((info / "info").glob("*.list")) if (info / "info").is_dir() else []
    for lst in lists:
        try:
            names = lst.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        if wanted.intersection(names):
            owners.add(lst.stem.split(":")[0])
    versions: dict[str, str] = {}
    try:
        status = (info / "status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        status = ""
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version): (.*)$", stanza, re.M))
        if fields.get("Package") in owners and "Version" in fields:
            versions[fields["Package"]] = fields["Version"]
    return ", ".join(f"{k}=={v}" for k, v in sorted(versions.items()))
