"""The execution-based dev suite: load cases, run snippets confined in a child process, score.

This is the ONE place in nl2code where generated code is executed (see SECURITY.md). Each
run gets a fresh temporary folder, a child process of its own (nl2code/exec_driver.py, in a
new process group, stdin from /dev/null, a minimal environment) with resource limits and a
wall-clock timeout after which the whole process group is killed. It is confinement against
accidents (loops, memory blow-ups, stray files), not a sandbox against malicious code.

A suite is a TOML file (`[[case]]` tables), a JSONL file, or a folder of them. A case:
    id, lang ("python"|"bash"), intent, style ("free"|"conala"), tags (list of str),
    setup, check, reference, wrong (str; setup may be empty), timeout (optional seconds)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nl2code.data.records import Example
from nl2code.errors import NoParseableCandidate, UsageError

DRIVER = Path(__file__).with_name("exec_driver.py")
LANGS = ("python", "bash")
STYLES = ("free", "conala")
TEXT_FIELDS = ("id", "lang", "intent", "style", "setup", "check", "reference", "wrong")
OPTIONAL = ("timeout",)
DEFAULT_TIMEOUT = 10.0
MAX_WORKERS = 2
GiB = 1 << 30
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


@dataclass
class RunResult:
    passed: bool
    status: str  # pass | fail (check said no) | error (setup/candidate raised) | timeout | crash
    stage: str = ""
    error: str = ""
    seconds: float = 0.0


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
    timeout = raw.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 120:
        raise SuiteError(f"{where}: timeout must be a number of seconds in (0, 120]")
    if raw["lang"] == "python":
        for name in ("setup", "check"):
            try:
                compile(raw[name], f"<{name}>", "exec", flags=0x400, dont_inherit=True)  # ast only
            except SyntaxError as exc:
                raise SuiteError(f"{where}: {name} is not valid Python (line {exc.lineno}: {exc.msg})") from None
    return Case(raw["id"], raw["lang"], raw["intent"], raw["style"], tuple(tags), raw["setup"],
                raw["check"], raw["reference"], raw["wrong"], float(timeout), where)


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

_MPL_DIR: list[str] = []


def _mpl_config_dir() -> str:
    """One matplotlib cache folder per nl2code process (its font cache takes a second to build)."""
    if not _MPL_DIR:
        _MPL_DIR.append(tempfile.mkdtemp(prefix="nl2code-mpl-"))
        import atexit

        atexit.register(shutil.rmtree, _MPL_DIR[0], True)
    return _MPL_DIR[0]


def _own_tasks() -> int:
    """Processes and threads of this user now (RLIMIT_NPROC counts them all, not just ours)."""
    uid, n = os.getuid(), 0
    try:
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        n += len(os.listdir(f"/proc/{entry.name}/task"))
                except OSError:
                    pass
    except OSError:
        return 1024
    return n


def limits_for(case: Case) -> dict[str, int]:
    cpu = int(case.timeout) + 2
    return {"RLIMIT_AS": 2 * GiB, "RLIMIT_CPU": cpu, "RLIMIT_FSIZE": 64 << 20,
            "RLIMIT_NPROC": _own_tasks() + 64, "RLIMIT_CORE": 0}


def _environment(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": _mpl_config_dir(), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _remove(folder: Path) -> None:
    def fix(func, path, _exc):  # a candidate may chmod 000 what it made
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(folder, onerror=fix)


def run_snippet(case: Case, code: str, timeout: float | None = None) -> RunResult:
    """Run `code` as the candidate for `case` in a confined child process; the verdict."""
    timeout = case.timeout if timeout is None else timeout
    tmp = Path(tempfile.mkdtemp(prefix="nl2code-exec-"))
    try:
        run, work = tmp / "run", tmp / "work"
        run.mkdir()
        work.mkdir()
        job, result = run / "job.json", run / "result.json"
        job.write_text(json.dumps({"lang": case.lang, "setup": case.setup, "check": case.check,
                                   "code": code, "limits": limits_for(case)}))
        start = time.monotonic()
        with open(run / "output", "wb") as output:
            proc = subprocess.Popen([sys.executable, "-I", str(DRIVER), str(job), str(result)],
                                    cwd=work, env=_environment(work), stdin=subprocess.DEVNULL,
                                    stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                proc.wait(timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:  # also whatever the snippet left running in the background
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        seconds = time.monotonic() - start
        if timed_out:
            return RunResult(False, "timeout", "", f"killed after {timeout:g} s", seconds)
        try:
            verdict = json.loads(result.read_text())
        except (OSError, ValueError):
            tail = (run / "output").read_bytes()[-600:].decode("utf-8", "replace").strip()
            why = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit {proc.returncode}"
            return RunResult(False, "crash", "", f"child ended without a verdict ({why}) {tail}".strip(), seconds)
        if verdict["passed"]:
            return RunResult(True, "pass", "done", "", seconds)
        status = "fail" if verdict["stage"] == "check" else "error"
        return RunResult(False, status, verdict["stage"], verdict["error"], seconds)
    finally:
        _remove(tmp)


def _parallel(fn, items, workers: int, progress=None) -> list:
    workers = max(1, min(workers, MAX_WORKERS))
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        out = []
        for fut in futures:
            out.append(fut.result())
            if progress:
                progress()
        return out


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


def score(gen, cases: list[Case], n: int = 5, workers: int = MAX_WORKERS,
          gen_progress=None, run_progress=None) -> list[CaseResult]:
    """Generate up to n candidates per case (a miss if none parse) and run each of them."""
    results = []
    for case in cases:
        try:
            cands = [getattr(c, "code", c) for c in gen.generate(case.intent, case.lang, n=n)][:n]
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
                                          "tag": defaultdict(list)}
    for r in results:
        groups["lang"][r.case.lang].append(r)
        groups["style"][r.case.style].append(r)
        for t in r.case.tags:
            groups["tag"][t].append(r)
    out = {"suite": suite, "system": system, **_summary(results)}
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
    for name in ("lang", "style", "tag"):
        rows += [(f"{name}={k}", v) for k, v in rep[f"by_{name}"].items()]
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"suite {rep['suite']}", f"system {rep['system']}",
             f"{'group':{width}}{'cases':>6}{'answered':>10}{'pass@1':>8}{'pass@5':>8}"]
    for label, s in rows:
        lines.append(f"{label:{width}}{s['cases']:>6}{s['answered']:>10.1f}{s['pass@1']:>8.1f}{s['pass@5']:>8.1f}")
    return "\n".join(lines)
