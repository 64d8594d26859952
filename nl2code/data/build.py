"""`nl2code data build RECIPE --out DIR`: recipe -> train.jsonl, dev.jsonl, stats.json.

A recipe (TOML, see datasets/default.toml) names sources, where they live, their weights
and dev splits. The build reads every source, slot-canonicalises nothing (that happens at
training time, so the corpus stays human-readable), removes exact and near duplicates,
and drops every training pair whose intent or code appears in a dev or evaluation file
(the leak guard).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nl2code import safefs
from nl2code.data import readers
from nl2code.data.guard import code_norm as _code_norm, expand_path, guard_examples, leak_guard
from nl2code.data.guard import norm as _norm
from nl2code.data.records import Example, Report
from nl2code.data.resample import ResampleConfig, resample, resample_config
from nl2code.errors import DataError
from nl2code.paths import data_root
from nl2code.tomlload import load_toml
from nl2code.validate import guard_problem, source_problem

KINDS = ("conala", "jsonl", "nl2bash", "django", "mine", "tldr", "pydoc", "manpage")
_RECIPE_KEYS = {"name", "data_root", "dedup_near", "source", "leak_guard", "retrieval", "resample"}
# sources whose pairs the retrieval index holds, unless the recipe's `retrieval` lists them
_RETRIEVAL_KINDS = ("conala", "jsonl", "nl2bash", "tldr", "pydoc")
_GUARD_KEYS = {"kind", "path", "optional"}


@dataclass
class Source:
    name: str
    kind: str
    path: str = ""
    lang: str = "python"
    weight: float = 1.0
    dev_first: int = 0  # first N records are dev (CoNaLa's official convention)
    dev_path: str = ""  # a separate dev file/prefix
    range: list[int] = field(default_factory=list)  # [start, stop) lines used for train
    dev_range: list[int] = field(default_factory=list)
    roots: list[str] = field(default_factory=list)  # for kind = "mine"
    miners: list[str] = field(default_factory=lambda: ["docstring", "comment", "doctest"])
    cap: int = 50_000
    max_examples: int = 0
    # > 0: also train on the intent with backticks and quotes removed (the code keeps the
    # names), tagged `<name>-free`, with this weight
    freeform_weight: float = 0.0
    include: list[str] = field(default_factory=list)  # kind = "manpage": file-name globs
    exclude: list[str] = field(default_factory=list)
    resample: bool = False  # drawn toward the curated pairs when [resample] is enabled
    # kind = "conala": which intent a record gives, "rewritten" (the curated rewrite, with
    # backticked names) or "title" (the StackOverflow question's title, free phrasing)
    intent: str = "rewritten"


@dataclass
class Recipe:
    name: str
    path: Path
    data_root: Path
    sources: list[Source]
    leak_guard: list[dict[str, str]]
    dedup_near: bool = True
    retrieval: list[str] | None = None  # source tags for the retrieval index
    resample: ResampleConfig = field(default_factory=ResampleConfig)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    raw = load_toml(path, DataError, "recipe")
    unknown = set(raw) - _RECIPE_KEYS
    if unknown:
        raise DataError(f"{path}: unknown key(s) {sorted(unknown)}; expected {sorted(_RECIPE_KEYS)}")
    _check_recipe_values(raw, path)
    for i, entry in enumerate(raw.get("leak_guard", [])):
        bad = set(entry) - _GUARD_KEYS if isinstance(entry, dict) else {"(not a table)"}
        if bad:
            raise DataError(f"{path}: leak_guard[{i}] has unknown key(s) {sorted(bad)}")
        problem = guard_problem(entry)
        if problem:
            raise DataError(f"{path}: leak_guard[{i}] {problem}")
    root_text = raw.get("data_root", "")
    root = expand_path(root_text, path.parent) if root_text and "$" not in root_text else None
    if root_text.startswith("$") and not os.environ.get(root_text.strip("${}")):
        root = None
    root = root or data_root()
    sources = []
    fields_ok = set(Source.__dataclass_fields__)
    for i, s in enumerate(raw.get("source", [])):
        if not isinstance(s, dict):
            raise DataError(f"{path}: source[{i}] must be a table ([[source]])")
        unknown = set(s) - fields_ok
        if unknown:
            raise DataError(f"{path}: source[{i}] has unknown key(s) {sorted(unknown)}")
        if "name" not in s or s.get("kind") not in KINDS:
            raise DataError(f"{path}: source[{i}] needs a name and a kind from {KINDS}")
        problem = source_problem(s)
        if not problem and "intent" in s and s["kind"] != "conala":
            problem = f"intent = {s['intent']!r}: only a source of kind 'conala' has a choice of intent"
        if problem:
            raise DataError(f"{path}: source[{i}] ({s.get('name')!r}) {problem}")
        if any(s["name"] == other.name for other in sources):
            raise DataError(f"{path}: source[{i}]: the name {s['name']!r} is used by another source; "
                            f"names must be unique (they key weights and statistics)")
        sources.append(Source(**s))
    if not sources:
        raise DataError(f"{path}: the recipe names no [[source]]")
    guard = raw.get("leak_guard", [])
    retrieval = raw.get("retrieval")
    if retrieval is not None and (not isinstance(retrieval, list) or not all(isinstance(x, str) for x in retrieval)):
        raise DataError(f"{path}: retrieval must be a list of source names")
    cfg = resample_config(raw.get("resample"), str(path))
    missing = [n for n in cfg.to if not any(s.name == n for s in sources)]
    if cfg.enabled and missing:
        raise DataError(f"{path}: resample.to names unknown source(s) {missing}")
    return Recipe(raw.get("name", path.stem), path, root, sources, guard, raw.get("dedup_near", True), retrieval, cfg)


def _check_recipe_values(raw: dict[str, Any], path: Path) -> None:
    """The recipe's top-level values have the types they are used as."""
    for key, kind, what in (("name", str, "text"), ("data_root", str, "text"), ("dedup_near", bool, "true or false"),
                            ("source", list, "a list of [[source]] tables"),
                            ("leak_guard", list, "a list of [[leak_guard]] tables")):
        if key in raw and not isinstance(raw[key], kind):
            raise DataError(f"{path}: {key} = {raw[key]!r} must be {what}")


def _source_path(recipe: Recipe, src: Source, key: str) -> Path:
    value = getattr(src, key)
    p = expand_path(value, recipe.data_root)
    probe = [p] if src.kind in ("conala", "jsonl", "tldr", "pydoc", "manpage") else [
        p.with_suffix(ext) for ext in ((".nl", ".cm") if src.kind == "nl2bash" else (".anno", ".code"))
    ]
    for q in probe:
        if not q.exists():
            raise DataError(
                f"{q} not found (recipe {recipe.path.name}, source '{src.name}', key '{key}'); "
                f"set NL2CODE_DATA or data_root"
            )
    return p


def read_source(recipe: Recipe, src: Source, report: Report, which: str = "train") -> list[Example]:
    """Read one source's train or dev examples."""
    if src.kind == "mine":
        if which == "dev":
            return []
        from nl2code.data.miners import mine

        examples, versions = mine(src.roots, tuple(src.miners), src.cap, report)
        src.__dict__["versions"] = versions
        return examples
    if which == "dev" and not src.dev_path and src.kind != "django":
        if not src.dev_first:
            return []  # no dev split: do not read (and report on) the file a second time
        report = Report()  # the train pass already reported this file's malformed input
    key = "dev_path" if which == "dev" and src.dev_path else "path"
    path = _source_path(recipe, src, key)
    if src.kind == "conala":
        items = list(readers.read_conala(path, report, src.name, src.intent))
    elif src.kind == "jsonl":
        items = list(readers.read_jsonl(path, report, src.name, src.lang))
    elif src.kind == "nl2bash":
        items = list(readers.read_nl2bash(path, report, src.name))
    elif src.kind == "tldr":
        if which == "dev":
            return []
        from nl2code.data.tldr import read_tldr

        items = list(read_tldr(path, report, src.name))
    elif src.kind == "manpage":
        if which == "dev":
            return []
        from nl2code.data.manpages import package_versions, read_manpages

        used: list[Path] = []
        items = list(read_manpages(path, report, src.name, src.include, src.exclude, used))
        src.__dict__["versions"] = {src.name: package_versions(used)}
    elif src.kind == "pydoc":
        if which == "dev":
            return []
        from nl2code.data.pydoc import read_pydoc

        from nl2code.data.manpages import package_versions

        items = list(read_pydoc(path, report, src.name))
        src.__dict__["versions"] = {src.name: package_versions([path])}  # the Debian package
    else:
        rng = src.dev_range if which == "dev" else src.range
        start, stop = (rng + [0, None])[:2] if rng else (0, None)
        if which == "dev" and not src.dev_range:
            return []
        items = list(readers.read_django(path, report, src.name, start, stop))
    if src.dev_first:
        items = items[: src.dev_first] if which == "dev" else items[src.dev_first :]
    elif which == "dev" and not src.dev_path and src.kind != "django":
        return []
    if src.max_examples and which == "train":
        items = items[: src.max_examples]
    if src.freeform_weight > 0 and which == "train":
        items = items + freeform_variants(items, f"{src.name}-free")
    return items


_TICKS = re.compile(r"`([^`]*)`")
_QUOTED = re.compile(r"""(?<![\w])(['"])(.+?)\1(?![\w])""")


def freeform_intent(intent: str) -> str:
    """`sort list `xs` by key 'name'` -> `sort list xs by key name` (how people type)."""
    text = _TICKS.sub(r"\1", intent)
    text = _QUOTED.sub(r"\2", text)
    return " ".join(text.split())


def freeform_variants(items: list[Example], tag: str) -> list[Example]:
    out = []
    for ex in items:
        free = freeform_intent(ex.intent)
        if free and free != ex.intent:
            out.append(Example(free, ex.code, ex.lang, tag))
    return out


def dedup(examples: list[Example], near: bool, report: Report) -> list[Example]:
    seen_exact: set[tuple[str, str]] = set()
    seen_near: set[tuple[str, str]] = set()
    out = []
    for ex in examples:
        key = (ex.intent, ex.code)
        if key in seen_exact:
            report.drop("exact duplicate")
            continue
        seen_exact.add(key)
        if near:  # a free-form variant differs from its original only in punctuation: keep it
            nkey = (_norm(ex.intent), _code_norm(ex.code), ex.source.endswith("-free"))
            if nkey in seen_near:
                report.drop("near duplicate")
                continue
            seen_near.add(nkey)
        out.append(ex)
    return out


def _length_histogram(examples: list[Example]) -> dict[str, int]:
    bins = [8, 16, 32, 64, 128, 256, 512]
    hist: Counter = Counter()
    for ex in examples:
        n = len(ex.code)
        label = next((f"<={b}" for b in bins if n <= b), f">{bins[-1]}")
        hist[label] += 1
    return dict(sorted(hist.items(), key=lambda kv: int(kv[0].strip("<=>"))))


def _weights(recipe: Recipe) -> dict[str, float]:
    weights = {}
    for s in recipe.sources:
        weights[s.name] = s.weight
        if s.freeform_weight > 0:
            weights[f"{s.name}-free"] = s.freeform_weight
    return weights


def build(recipe_path: str | Path, out: str | Path, progress=None) -> dict[str, Any]:
    """Build the corpus; returns the stats that are also written to out/stats.json."""
    recipe = load_recipe(recipe_path)
    out = Path(out)
    report = Report()
    train: list[Example] = []
    dev: list[Example] = []
    per_source: dict[str, dict[str, int]] = {}
    versions: dict[str, str] = {}
    guard_only: list[Example] = []
    for src in recipe.sources:
        if progress:
            progress(src.name)
        tr = read_source(recipe, src, report, "train")
        dv = read_source(recipe, src, report, "dev")
        versions.update(src.__dict__.get("versions", {}))
        train.extend(tr)
        if src.kind == "conala" and src.intent == "title":
            # the titles of dev records: held out (a train pair with the same title or code
            # is dropped), but not dev examples: CoNaLa's dev set is its rewritten intents
            per_source[src.name] = {"read_train": len(tr), "dev": 0, "held_out_only": len(dv)}
            guard_only.extend(dv)
            continue
        per_source[src.name] = {"read_train": len(tr), "dev": len(dv)}
        dev.extend(dv)
    held_out = dev + guard_only
    for entry in recipe.leak_guard:
        held_out.extend(guard_examples(recipe, entry, report))
    n_before = len(train)
    train = dedup(train, recipe.dedup_near, report)
    n_dedup = len(train)
    train = leak_guard(train, held_out, report)
    n_guarded = len(train)
    resampled = _resample(recipe, train, report)
    if resampled is not None:
        train, resample_summary = resampled
    for src in recipe.sources:
        own = _tags(src) - {f"{src.name}-free", f"{src.name}-named"}
        per_source[src.name]["train"] = sum(1 for e in train if e.source in own)
        for variant in ("free", "named"):
            n = sum(1 for e in train if e.source == f"{src.name}-{variant}")
            if n:
                per_source[src.name][f"train_{variant}"] = n
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("train", train), ("dev", dev)):
        # a fresh temporary file (a link planted at its name is removed, never followed),
        # renamed over the final name (which replaces a link there instead of writing through it)
        tmp = out / f".{name}.jsonl.tmp"
        with safefs.create_new(tmp, DataError, replace_temp=True) as fh:
            for ex in items:
                fh.write((ex.to_json() + "\n").encode("utf-8"))
        tmp.replace(out / f"{name}.jsonl")
    by_tag = Counter(e.source for e in train)
    stats = {
        "recipe": str(recipe.path),
        "data_root": str(recipe.data_root),
        "train": len(train),
        "dev": len(dev),
        "read": n_before,
        "duplicates_removed": n_before - n_dedup,
        "leak_guard_removed": n_dedup - n_guarded,
        "sources": per_source,
        "by_source_tag": dict(by_tag),
        "by_lang": dict(Counter(e.lang for e in train)),
        "weights": _weights(recipe),
        "mined_versions": versions,  # mined roots and read artifacts (man pages' packages)
        "code_length_chars": _length_histogram(train),
        "drops": dict(report.drops),
        "problems": report.problems,
    }
    if resampled is not None:
        stats["resample"] = {"to": list(recipe.resample.to), "keep": recipe.resample.keep,
                             "temperature": recipe.resample.temperature, "seed": recipe.resample.seed,
                             "sources": resample_summary}
    if progress:
        progress("retrieval index and API table")
    stats["retrieval"] = _write_index(recipe, train, out)
    stats["api_versions"] = _write_api_table(train, out)
    safefs.write_atomic(out / "stats.json", (json.dumps(stats, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
                        DataError)
    return stats


def _tags(src: Source) -> set[str]:
    """The tags a source's pairs carry (a miner has one per miner; variants get suffixes)."""
    if src.kind == "mine":
        from nl2code.data.miners import TAGS

        return set(TAGS.values())
    return {src.name, f"{src.name}-free", f"{src.name}-named"}


def _resample(recipe: Recipe, train: list[Example], report: Report):
    """(train, summary) after resampling, or None when the recipe does not ask for it."""
    if not recipe.resample.enabled:
        return None
    reference = set().union(*(_tags(s) for s in recipe.sources if s.name in recipe.resample.to))
    chosen = {s.name: _tags(s) for s in recipe.sources if s.resample}
    if not chosen:
        raise DataError(f"{recipe.path}: [resample] is enabled but no [[source]] has resample = true")
    return resample(train, recipe.resample, reference, chosen, report)


def retrieval_tags(recipe: Recipe) -> set[str]:
    if recipe.retrieval is not None:
        return set(recipe.retrieval)
    tags = set()
    for s in recipe.sources:
        if s.kind in _RETRIEVAL_KINDS:
            tags.update({s.name, f"{s.name}-named"})
    return tags


def _write_index(recipe: Recipe, train: list[Example], out: Path) -> dict:
    from nl2code import retrieval

    return retrieval.build(train, out / retrieval.INDEX_FILE, retrieval_tags(recipe))


def _write_api_table(train: list[Example], out: Path) -> dict:
    from nl2code import apicheck

    table = apicheck.build_table(e.code for e in train if e.lang == "bash")
    apicheck.save_table(table, out / apicheck.API_FILE)
    return table["versions"]
