"""API-aware checks: does a candidate call names that exist?

A table of public names, built at `data build` time and shipped in the model folder
(`api.json`, covered by the manifest):

- python: for each module people use (the standard library's common modules, numpy,
  pandas, matplotlib.pyplot, requests, ... where installed), its public attribute names,
  read with `dir()` after importing the module in the build's environment. Generated code
  is never executed: only the library modules themselves are imported, at build time.
- bash: the command names seen in the corpus's shell commands, plus bash's builtins.

A Python candidate that uses `alias.name` where alias is a known module (imported in the
snippet, or a conventional alias such as `pd`, `np`, `plt`) and the module has no such
name (`pd.read`, `os.dirname`) gets one problem per such name; so does a bash candidate
whose command is neither in the table nor a path. The reranker demotes candidates with
problems, and `--explain` shows them.
"""

from __future__ import annotations

import ast
import importlib
import json
import platform
import re
import sys
import warnings
from collections.abc import Iterable
from pathlib import Path

API_FILE = "api.json"
SCHEMA = "nl2code-api-1"

MODULES = (
    "os", "os.path", "sys", "re", "json", "csv", "math", "cmath", "random", "time", "datetime",
    "calendar", "collections", "itertools", "functools", "operator", "subprocess", "shutil", "glob",
    "fnmatch", "pathlib", "string", "textwrap", "unicodedata", "urllib.request", "urllib.parse",
    "hashlib", "hmac", "base64", "binascii", "pickle", "shelve", "zipfile", "tarfile", "gzip", "bz2",
    "lzma", "zlib", "socket", "threading", "multiprocessing", "logging", "argparse", "statistics",
    "copy", "heapq", "bisect", "struct", "uuid", "tempfile", "io", "sqlite3", "decimal", "fractions",
    "xml.etree.ElementTree", "html", "http.client", "email", "smtplib", "signal", "platform",
    "getpass", "pprint", "inspect", "typing", "dataclasses", "enum", "secrets", "locale",
    "numpy", "numpy.random", "numpy.linalg", "pandas", "matplotlib.pyplot", "requests",
    "scipy", "sklearn",
)
ALIASES = {"np": "numpy", "pd": "pandas", "plt": "matplotlib.pyplot", "ET": "xml.etree.ElementTree"}

BASH_BUILTINS = set("""alias bg bind break builtin caller cd command compgen complete continue declare dirs
disown echo enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout
mapfile popd printf pushd pwd read readarray readonly return set shift shopt source suspend test times
trap true type typeset ulimit umask unalias unset wait . [ [[ time sudo env nohup xargs""".split())


def build_table(commands: Iterable[str] = (), modules: Iterable[str] = MODULES) -> dict:
    """Introspect the modules installed here and collect command names from shell code."""
    py: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    for name in modules:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mod = importlib.import_module(name)
        except Exception:  # not installed here (or broken): left out of the table
            continue
        names = {n for n in dir(mod) if not n.startswith("__")}
        py[name] = sorted(names)
        top = name.split(".")[0]
        if top not in sys.stdlib_module_names:
            versions[top] = str(getattr(importlib.import_module(top), "__version__", "unknown"))
    versions["python"] = platform.python_version()
    bash = set()
    for code in commands:
        bash.update(command_names(code))
    return {"schema": SCHEMA, "python": py, "aliases": ALIASES, "bash": sorted(bash - BASH_BUILTINS),
            "versions": versions}


_BASH_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")


def command_names(code: str) -> list[str]:
    """The command names of a shell snippet (first word of each simple command)."""
    from nl2code.syntax import _parser

    try:
        tree = _parser("bash").parse(code.encode("utf-8", "surrogatepass"))
    except Exception:
        return []
    out = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "command_name":
            text = node.text.decode("utf-8", "replace")
            if _BASH_WORD.match(text):
                out.append(text)
        stack.extend(node.children)
    return out


def save_table(table: dict, path: Path) -> None:
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    tmp.write_text(json.dumps(table, separators=(",", ":")), encoding="utf-8")
    tmp.replace(path)


class ApiTable:
    def __init__(self, table: dict):
        if not isinstance(table, dict) or table.get("schema") != SCHEMA:
            raise ValueError(f"not an nl2code API table ({SCHEMA})")
        self.py = {k: frozenset(v) for k, v in table.get("python", {}).items()}
        self.aliases = dict(table.get("aliases", {}))
        self.bash = frozenset(table.get("bash", [])) | BASH_BUILTINS

    @classmethod
    def load(cls, path: Path) -> "ApiTable":
        from nl2code.errors import CheckpointError

        try:
            return cls(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is not a valid API table: {exc}") from None

    def problems(self, code: str, lang: str) -> list[str]:
        if lang == "bash":
            return [f"unknown command {c!r}" for c in dict.fromkeys(command_names(code))
                    if c not in self.bash and "/" not in c]
        if lang != "python":
            return []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return []
        bound = dict(self.aliases)
        assigned: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    bound[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if full in self.py:
                        bound[a.asname or a.name] = full
            elif isinstance(node, (ast.Name,)) and isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
        for name in self.py:
            if "." not in name:
                bound.setdefault(name, name)
        out = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            chain = []
            cur = node
            while isinstance(cur, ast.Attribute):
                chain.append(cur.attr)
                cur = cur.value
            if not isinstance(cur, ast.Name) or cur.id in assigned or cur.id not in bound:
                continue
            chain.reverse()
            module = bound[cur.id]
            # walk submodules that are in the table (np.random.randint, os.path.join)
            i = 0
            while i < len(chain) - 1 and f"{module}.{chain[i]}" in self.py:
                module = f"{module}.{chain[i]}"
                i += 1
            names = self.py.get(module)
            if names is not None and chain[i] not in names:
                problem = f"{cur.id}.{'.'.join(chain[: i + 1])}: {module} has no {chain[i]!r}"
                if problem not in out:
                    out.append(problem)
        return out
