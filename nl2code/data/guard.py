"""The leak guard: nothing of a dev set, an evaluation file or the execution suite (intent
or code) enters training. Also the normal forms the build's near-duplicate check shares."""

from __future__ import annotations

import json
import os
import re
import string
from pathlib import Path

from nl2code.data import readers
from nl2code.data.records import Example, Report
from nl2code.errors import DataError
from nl2code.tomlload import load_toml


def expand_path(value: str, root: Path) -> Path:
    """A recipe path: ~ and $VARS expanded; relative paths are under root."""
    value = os.path.expandvars(os.path.expanduser(value))
    p = Path(value)
    return p if p.is_absolute() else root / p


_PUNCT = str.maketrans("", "", string.punctuation)


def norm(text: str) -> str:
    """Normal form for near-duplicate and leak checks: case, spacing, punctuation folded."""
    return " ".join(text.lower().translate(_PUNCT).split())


def code_norm(code: str) -> str:
    return re.sub(r"\s+", "", code)


def exec_suite_examples(folder: Path) -> list[Example]:
    """(intent, reference) of every case of an execution suite (*.toml [[case]] tables or
    *.jsonl records with intent/reference/lang), for the leak guard."""
    folder = Path(folder)
    files = sorted(folder.glob("*.toml")) + sorted(folder.glob("*.jsonl")) if folder.is_dir() else [folder]
    out = []
    for f in files:
        if f.suffix == ".toml":
            cases = load_toml(f, DataError, "execution suite file").get("case", [])
        else:
            try:
                cases = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, ValueError) as exc:
                raise DataError(f"leak_guard: cannot read execution suite file {f}: {exc}") from None
        for c in cases:
            if isinstance(c, dict) and isinstance(c.get("intent"), str):
                ref = c.get("reference") if isinstance(c.get("reference"), str) else ""
                out.append(Example(c["intent"], ref, c.get("lang", "python"), "exec-suite"))
    return out


def guard_examples(recipe, entry: dict[str, str], report: Report) -> list[Example]:
    kind = entry.get("kind", "conala")
    if kind == "exec":  # relative to the recipe's folder (the suite lives in the repository)
        value = os.path.expandvars(entry.get("path", ""))
        p = Path(value) if Path(value).is_absolute() else recipe.path.parent / value
        if not p.exists():
            if entry.get("optional", False):
                return []
            raise DataError(f"leak_guard execution suite {p} not found (recipe {recipe.path.name})")
        return exec_suite_examples(p)
    p = expand_path(entry.get("path", ""), recipe.data_root)
    exists = p.exists() or p.with_suffix(".nl").exists()
    if not exists:
        if entry.get("optional", False):
            return []
        raise DataError(f"leak_guard file {p} not found (recipe {recipe.path.name})")
    if kind == "conala":
        return list(readers.read_conala(p, report))
    if kind == "nl2bash":
        return list(readers.read_nl2bash(p, report))
    return list(readers.read_jsonl(p, report, "guard"))


def leak_guard(train: list[Example], held_out: list[Example], report: Report) -> list[Example]:
    """Drop training pairs whose intent or code appears in any held-out example."""
    bad_intents = {norm(e.intent) for e in held_out}
    bad_codes = {code_norm(e.code) for e in held_out if len(code_norm(e.code)) >= 8}
    out = []
    for ex in train:
        if norm(ex.intent) in bad_intents or code_norm(ex.code) in bad_codes:
            report.drop("leak guard: appears in a dev/eval file")
            continue
        out.append(ex)
    return out


