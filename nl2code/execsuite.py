"""The execution-based dev suite: load cases, run candidates confined in child processes, score.

Generated code runs only through nl2code.execrun (see SECURITY.md): a child process per run,
a fresh temporary folder, a timeout and resource limits. Never in the nl2code process.

A suite is a TOML file (`[[case]]` tables), a JSONL file, or a folder of them. A case:
    id, lang ("python"|"bash"), intent, style ("free"|"conala"), tags (list of str),
    setup, check, reference, wrong (str; setup may be empty), timeout (optional seconds),
    variants (optional, python: more setups; the candidate must pass the check after each)
"""

from __future__ import annotations

import json
import re
import tomllib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nl2code import execrun
from nl2code.data.records import Example
from nl2code.errors import NoParseableCandidate, UsageError
from nl2code.execrun import RunResult

LANGS = ("python", "bash")
STYLES = ("free", "conala")
TEXT_FIELDS = ("id", "lang", "intent", "style", "setup", "check", "reference", "wrong")
OPTIONAL = ("timeout", "variants")
DEFAULT_TIMEOUT = 10.0
MAX_WORKERS = 2
QUOTED = re.compile(r"[`\"]|(?<!\w)'[^']*'")  # an apostrophe (don't) is not a quote


class SuiteError(UsageError):
    """A suite file that cannot be used: the message names the file, the case and the field."""


@dataclass(frozen=True)
class Case:
    id: str
    lang: str
    intent: str
    style: str
    tags: tuple[str, ...]
    setup: str
    check: str
    reference: str
    wrong: str
    timeout: float = DEFAULT_TIMEOUT
    where: str = ""
    variants: tuple[str, ...] = ()  # python: more setups the candidate must also pass after


# --- loading --------------------------------------------------------------------------------

def _raw_cases(path: Path) -> list[tuple[str, object]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SuiteError(f"{path}: not UTF-8 text") from None
    if path.suffix == ".toml":
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SuiteError(f"{path}: invalid TOML: {exc}") from None
        unknown = set(raw) - {"case"}
        if unknown or not isinstance(raw.get("case", []), list):
            raise SuiteError(f"{path}: a suite file holds only [[case]] tables (found {sorted(unknown) or 'case'})")
        return [(f"{path}: case {i + 1}", c) for i, c in enumerate(raw.get("case", []))]
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append((f"{path}:{n}", json.loads(line)))
            except json.JSONDecodeError as exc:
                raise SuiteError(f"{path}:{n}: invalid JSON: {exc.msg}") from None
    return out


def _validate(where: str, raw: object) -> Case:
    if not isinstance(raw, dict):
        raise SuiteError(f"{where}: a case must be a table/object, not {type(raw).__name__}")
    known = set(TEXT_FIELDS) | {"tags"} | set(OPTIONAL)
    if unknown := sorted(set(raw) - known):
        raise SuiteError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for name in TEXT_FIELDS + ("tags",):
        if name not in raw:
            raise SuiteError(f"{where}: missing field '{name}'")
    for name in TEXT_FIELDS:
        if not isinstance(raw[name], str):
            raise SuiteError(f"{where}: field '{name}' must be a string")
        if name not in ("setup",) and not raw[name].strip():
            raise SuiteError(f"{where}: field '{name}' is empty")
    where = f"{where} ({raw['id']})"
    if raw["lang"] not in LANGS:
        raise SuiteError(f"{where}: lang must be one of {', '.join(LANGS)}, not {raw['lang']!r}")
    if raw["style"] not in STYLES:
        raise SuiteError(f"{where}: style must be free or conala, not {raw['style']!r}")
    tags = raw["tags"]
    if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t.strip() for t in tags):
        raise SuiteError(f"{where}: tags must be a non-empty list of strings")
    if raw["style"] == "free" and QUOTED.search(raw["intent"]):
        raise SuiteError(f"{where}: a free-form intent has no backticks or quotes")
    if raw["style"] == "conala" and not QUOTED.search(raw["intent"]):
        raise SuiteError(f"{where}: a conala-style intent names something in `backticks` or 'quotes'")
    if raw["reference"].strip() == raw["wrong"].strip():
        raise SuiteError(f"{where}: reference and wrong are the same")
    variants = raw.get("variants", [])
    if not isinstance(variants, list) or not all(isinstance(v, str) for v in variants):
        raise SuiteError(f"{where}: variants must be a list of setup strings")
    if variants and raw["lang"] != "python":
        raise SuiteError(f"{where}: variants are for python cases only")
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
        raise SuiteError(f"{where}: timeout must be a number of seconds in (0, 120]")
    if raw["lang"] == "python":
        sources = [("setup", raw["setup"]), ("check", raw["check"])]
        sources += [(f"variant {i + 1}", v) for i, v in enumerate(variants)]
        for name, text in sources:
            try:
                compile(text, f"<{name}>", "exec", flags=0x400, dont_inherit=True)  # ast only
            except SyntaxError as exc:
                raise SuiteError(f"{where}: {name} is not valid Python (line {exc.lineno}: {exc.msg})") from None
    return Case(raw["id"], raw["lang"], raw["intent"], raw["style"], tuple(tags), raw["setup"],
                raw["check"], raw["reference"], raw["wrong"], float(timeout), where, tuple(variants))


def load_suite(path: str | Path, lang: str | None = None) -> list[Case]:
    """All cases of a suite file or folder (*.toml, *.jsonl), validated; ids must be unique."""
    path = Path(path)
    if not path.exists():
        raise SuiteError(f"suite not found: {path}")
    files = sorted(p for p in path.iterdir() if p.suffix in (".toml", ".jsonl")) if path.is_dir() else [path]
    if path.is_file() and path.suffix not in (".toml", ".jsonl"):
        raise SuiteError(f"{path}: a suite is a .toml or .jsonl file, or a folder of them")
    cases, seen = [], {}
    for f in files:
        for where, raw in _raw_cases(f):
            case = _validate(where, raw)
            if case.id in seen:
                raise SuiteError(f"{where}: duplicate id (first at {seen[case.id]})")
            seen[case.id] = where
            cases.append(case)
    if not cases:
        raise SuiteError(f"{path}: no cases")
    if lang is not None:
        cases = [c for c in cases if c.lang == lang]
        if not cases:
            raise SuiteError(f"{path}: no {lang} cases")
    return cases


def load_examples(path: str | Path) -> list[Example]:
    """The suite's (intent, reference) pairs, for the data build's leak guard."""
    return [Example(c.intent, c.reference, c.lang, "exec-suite") for c in load_suite(path)]


# --- running --------------------------------------------------------------------------------

def run_snippet(case: Case, code: str, timeout: float | None = None, fork_server: bool = True) -> RunResult:
    """Run `code` as the candidate for `case`, confined in a child process (nl2code.execrun)."""
    return execrun.run_snippet(case.lang, case.setup, case.check, code,
                               case.timeout if timeout is None else timeout, fork_server, case.variants)


def _parallel(fn, items, workers: int, progress=None) -> list:
    workers = max(1, min(workers, MAX_WORKERS))
    execrun.isolation()  # probe once, before the workers start
    pool = ThreadPoolExecutor(workers)
    try:
        futures = [pool.submit(fn, item) for item in items]
        out = []
        for fut in futures:
            out.append(fut.result())
            if progress:
                progress()
        return out
    finally:  # on Ctrl-C or an error: start nothing more, let the running ones time out
        pool.shutdown(wait=True, cancel_futures=True)


# --- self-test and scoring ------------------------------------------------------------------

def self_test(cases: list[Case], workers: int = MAX_WORKERS, progress=None) -> list[str]:
    """Problems found: every reference must pass and every wrong solution must fail."""
    jobs = [(c, kind) for c in cases for kind in ("reference", "wrong")]
    results = _parallel(lambda j: run_snippet(j[0], getattr(j[0], j[1])), jobs, workers, progress)
    problems = []
    for (case, kind), res in zip(jobs, results):
        if kind == "reference" and not res.passed:
            problems.append(f"{case.id}: reference failed ({res.status}{', ' + res.stage if res.stage else ''}): "
                            + " | ".join(res.error.splitlines()))
        elif kind == "wrong" and res.passed:
            problems.append(f"{case.id}: wrong solution passed")
    return problems


@dataclass
class CaseResult:
    case: Case
    candidates: list[str]
    runs: list[RunResult] = field(default_factory=list)

    def passed_at(self, k: int) -> bool:
        return any(r.passed for r in self.runs[:k])


def score(gen, cases: list[Case], n: int = 5, beam: int | None = None, workers: int = MAX_WORKERS,
          gen_progress=None, run_progress=None) -> list[CaseResult]:
    """Generate up to n candidates per case (a miss if none parse) and run each of them.

    gen needs only generate(intent, lang, n=..., beam=...) returning candidates (objects with
    .code, or strings); beam None: the Generator's default.
    """
    refusal = execrun.untrusted_allowed()
    if refusal:
        raise UsageError(refusal)
    results = []
    for case in cases:
        try:
            cands = [getattr(c, "code", c) for c in gen.generate(case.intent, case.lang, n=n, beam=beam)][:n]
        except NoParseableCandidate:
            cands = []
        results.append(CaseResult(case, cands))
        if gen_progress:
            gen_progress()
    jobs = [(r, code) for r in results for code in r.candidates]
    runs = _parallel(lambda j: run_snippet(j[0].case, j[1]), jobs, workers, run_progress)
    for (res, _), run in zip(jobs, runs):
        res.runs.append(run)
    return results


def _summary(rows: list[CaseResult]) -> dict:
    n = len(rows)
    return {"cases": n,
            "answered": round(100 * sum(bool(r.candidates) for r in rows) / n, 1),
            "pass@1": round(100 * sum(r.passed_at(1) for r in rows) / n, 1),
            "pass@5": round(100 * sum(r.passed_at(5) for r in rows) / n, 1)}


def report(results: list[CaseResult], suite: str, system: str) -> dict:
    """Percentages overall, per lang, per style and per tag, plus every case's candidates."""
    groups: dict[str, dict[str, list]] = {"lang": defaultdict(list), "style": defaultdict(list),
                                          "lang_style": defaultdict(list), "tag": defaultdict(list)}
    for r in results:
        groups["lang"][r.case.lang].append(r)
        groups["style"][r.case.style].append(r)
        groups["lang_style"][f"{r.case.lang}/{r.case.style}"].append(r)
        for t in r.case.tags:
            groups["tag"][t].append(r)
    out = {"suite": suite, "system": system, **_summary(results), "isolation": execrun.isolation()}
    for name, by in groups.items():
        out[f"by_{name}"] = {k: _summary(v) for k, v in sorted(by.items())}
    out["results"] = [{"id": r.case.id, "lang": r.case.lang, "style": r.case.style, "tags": list(r.case.tags),
                       "intent": r.case.intent, "candidates": r.candidates,
                       "passed": [x.passed for x in r.runs],
                       "status": [x.status for x in r.runs],
                       "errors": [x.error[-300:] for x in r.runs]} for r in results]
    return out


def format_table(rep: dict) -> str:
    """The summary as an aligned text table (percentages); the per-case results are in --json."""
    rows = [("all", rep)]
    for name in ("lang", "style", "lang_style", "tag"):
        rows += [(f"{name}={k}", v) for k, v in rep[f"by_{name}"].items()]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"suite {rep['suite']}", f"system {rep['system']}",
             f"{'group':{width}}{'cases':>6}{'answered':>10}{'pass@1':>8}{'pass@5':>8}"]
    for label, s in rows:
        lines.append(f"{label:{width}}{s['cases']:>6}{s['answered']:>10.1f}{s['pass@1']:>8.1f}{s['pass@5']:>8.1f}")
    return "\n".join(lines)


def for_report(rep: dict) -> dict:
    """The report's figures in the shape nl2code.report draws (kind "exec", fractions)."""
    def keep(d: dict) -> dict:
        return {"pass@1": d["pass@1"] / 100, "pass@5": d["pass@5"] / 100, "n": d["cases"]}

    out = {"kind": "exec", "system": rep["system"], "suite": rep["suite"], "overall": keep(rep)}
    for name in ("lang", "tag", "style"):
        out[f"by_{name}"] = {k: keep(v) for k, v in rep.get(f"by_{name}", {}).items()}
    out["cases"] = [{"id": r["id"], "intent": r["intent"], "lang": r["lang"], "tags": r["tags"],
                     "style": r["style"], "candidates": r["candidates"], "passed": r["passed"],
                     "errors": r["errors"], "error": next((e for e in r["errors"] if e), None)}
                    for r in rep.get("results", [])]
    return out
