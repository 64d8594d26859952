"""The import rules of docs/ARCHITECTURE.md, checked on every module's syntax tree.

Each module of nl2code/ and lsp/nl2code_lsp/ belongs to one floor; a module may import
from its own floor and the floors below, never from above. A few rooms have stricter rules
(the tokenizer reads only the ground floor; only cli.py imports typer/rich; ...). Imports
inside functions count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# lowest first; a module's floor is the first pattern that matches its dotted name
FLOORS: list[tuple[str, tuple[str, ...]]] = [
    ("ground", ("nl2code", "nl2code.errors", "nl2code.languages", "nl2code.paths", "nl2code.config",
                "nl2code.safefs", "nl2code.validate", "nl2code.metrics", "nl2code.runguard",
                "nl2code.execrun", "nl2code.exec_driver", "nl2code.exec_isolate", "nl2code.serve",
                "nl2code.serve.openapi", "nl2code.serve.worker", "nl2code.budget", "nl2code.tomlload")),
    ("text", ("nl2code.slots", "nl2code.syntax", "nl2code.safety", "nl2code.repair", "nl2code.apicheck",
              "nl2code.retrieval", "nl2code.tokenizer", "nl2code.viability")),
    ("data", ("nl2code.data*", "nl2code.execsuite", "nl2code.report*")),
    ("model", ("nl2code.model*", "nl2code.weights", "nl2code.decode", "nl2code.checkpoint",
               "nl2code.explain", "nl2code.augment", "nl2code.batches", "nl2code.noise", "nl2code.trainrun",
               "nl2code.train", "nl2code.guided", "nl2code.context", "nl2code.card")),
    ("engine", ("nl2code.rerank", "nl2code.engine", "nl2code.evaluate", "nl2code.learn", "nl2code.history")),
    ("front", ("nl2code.cli*", "nl2code.client", "nl2code.__main__", "nl2code.serve.app", "nl2code.serve.run",
               "nl2code_lsp*")),
]

# stricter rules: (module pattern, forbidden import pattern, why)
FORBIDDEN: list[tuple[str, str, str]] = [
    ("nl2code.tokenizer", "nl2code.slots", "the placeholders come from nl2code.languages"),
    ("nl2code.tokenizer", "nl2code.syntax", "the tokenizer reads only the ground floor"),
    ("nl2code.data*", "nl2code.tokenizer", "data knows no vocabulary: languages come from nl2code.languages"),
    ("nl2code.data*", "torch*", "building a corpus needs no torch"),
    ("nl2code.languages", "nl2code.*", "the ground floor's ground: it imports only nl2code.errors"),
    ("nl2code.slots", "torch*", "text parts need no torch"),
    ("nl2code.syntax", "torch*", "text parts need no torch"),
    ("nl2code.safety", "torch*", "text parts need no torch"),
    ("nl2code.*", "typer*", "only cli.py imports typer"),
    ("nl2code.*", "rich*", "only cli.py imports rich"),
    ("nl2code.*", "pygls*", "the library never imports the language server's framework"),
    ("nl2code_lsp*", "nl2code.cli*", "the language server is a front door of its own"),
    ("nl2code_lsp*", "typer*", "the language server has no CLI framework"),
]
ALLOWED = {("nl2code.languages", "nl2code.errors"), ("nl2code.cli*", "typer*"), ("nl2code.cli*", "rich*")}


def _match(name: str, pattern: str) -> bool:
    """`a.b` matches itself only; `a.b*` matches a.b and everything that starts with it."""
    return name.startswith(pattern[:-1]) if pattern.endswith("*") else name == pattern


def floor_of(module: str) -> int | None:
    for i, (_, patterns) in enumerate(FLOORS):
        if any(_match(module, p) for p in patterns):
            return i
    return None


def modules() -> dict[str, Path]:
    found = {}
    for base, package in ((ROOT, "nl2code"), (ROOT / "lsp", "nl2code_lsp")):
        for path in sorted((base / package).rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(module: str, path: Path) -> set[str]:
    """Every module name an import statement in the file names (relative ones resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            # `from nl2code import slots` imports the module nl2code.slots
            out.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES)
    return out


MODULES = modules()


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Every import that breaks a rule, as `module -> import: why`."""
    bad = []
    for module, deps in sorted(graph.items()):
        mine = floor_of(module)
        for dep in sorted(deps):
            if any(_match(module, m) and _match(dep, d) for m, d in ALLOWED):
                continue
            for mod_pat, dep_pat, why in FORBIDDEN:
                if _match(module, mod_pat) and _match(dep, dep_pat) and dep != module:
                    bad.append(f"{module} -> {dep}: {why}")
            theirs = floor_of(dep) if dep in graph else None
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{module} -> {dep}: the {FLOORS[mine][0]} floor may not import "
                           f"from the {FLOORS[theirs][0]} floor")
    return bad


def graph() -> dict[str, set[str]]:
    return {m: imports_of(m, p) for m, p in MODULES.items()}


def test_every_module_has_a_floor():
    assert [m for m in MODULES if floor_of(m) is None] == []


def test_no_forbidden_imports():
    assert violations(graph()) == []


@pytest.mark.parametrize("module, dep, why", [
    ("nl2code.data.readers", "nl2code.tokenizer", "vocabulary"),
    ("nl2code.tokenizer", "nl2code.slots", "placeholders"),
    ("nl2code.syntax", "nl2code.engine", "may not import from the engine floor"),
    ("nl2code.engine", "nl2code.cli", "may not import from the front floor"),
    ("nl2code.rerank", "typer", "only cli.py"),
    ("nl2code.languages", "nl2code.syntax", "ground floor's ground"),
])
def test_the_check_catches_a_forbidden_import(module, dep, why):
    g = graph()
    g[module] = g[module] | {dep}
    found = violations(g)
    assert any(v.startswith(f"{module} -> {dep}") and why in v for v in found), found


def test_documented():
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    for name, _ in FLOORS:
        assert f"**{name}**" in doc
    assert "tests/test_architecture.py" in doc
