"""The child program of the execution suite: runs ONE snippet for ONE case and writes a verdict.

Started by nl2code.execrun as `python -I exec_driver.py JOB.json RESULT.json` in a fresh
temporary folder, in its own process group, with stdin from /dev/null, or forked for each
job by a long-lived `exec_driver.py --serve` process that has pandas/numpy/matplotlib
imported already (see serve). It imports nothing from nl2code (standard library only) and
sets the job's resource limits before it reads the job's code, so every process it starts
(bash, the candidate's subprocesses) inherits them.

Python cases: a prelude of common imports, the case's setup, then the candidate (and again
after each of the case's variant setups, in a fresh namespace). When the
candidate's last statement is an expression its value becomes `_result`. The check runs in
the same namespace with these helpers:
    _result, _stdout    the final expression's value (or None) and what the candidate printed
    _values             what the candidate produced: _result, every new or changed variable
                        (iterators as Iterated lists), the printed text as a Python literal when it
                        is one, and the printed text itself
    eq(v, expected)     tolerant equality (lists vs tuples/arrays/Series, float closeness)
    found_eq(expected)  some produced value eq expected;  found(pred): pred(v) for some value
    truth_is(expected)  for predicates: the first bool produced (or printed), else the truth of
                        a final match object / None, is `expected` (use with variants)
    frame_eq(v, expected, ignore_index=False), found_frame(expected, ...): pandas DataFrame or
                        Series equality by values and labels, ignoring dtypes (int vs float, str)
Bash cases: setup and candidate run with `bash -c` in the work folder; the check is Python
with out, err, rc (the candidate's stdout, stderr, exit status), lines(text=out), read(path),
exists(path) and the modules os, re, json, Path.
"""

import ast
import builtins
import collections.abc
import copy
import io
import json
import math
import os
import resource
import subprocess
import sys
import traceback
from contextlib import redirect_stdout
from pathlib import Path

PRELUDE = ("import os, sys, re, json, math, random, time, datetime, collections, itertools, "
           "functools, string, shutil, glob, csv, hashlib, base64, pathlib, subprocess, "
           "statistics, operator, textwrap, heapq, bisect, copy, uuid, decimal, fractions, "
           "calendar, struct, tempfile, zipfile, tarfile, gzip, io, urllib.parse\n"
           "random.seed(0)\n")
HELPERS = ("_result", "_stdout", "_values", "eq", "found", "found_eq", "frame_eq", "found_frame", "truth_is")


class Stage(Exception):
    def __init__(self, stage: str, message: str):
        super().__init__(message)
        self.stage = stage


def set_limits(limits: dict) -> None:
    for name, value in limits.items():
        res = getattr(resource, name)
        soft, hard = resource.getrlimit(res)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        try:
            resource.setrlimit(res, (value, value))
        except (ValueError, OSError):
            pass


def describe(exc: BaseException, label: str, source: str) -> str:
    """One or two lines: where in the snippet (by its own line), and the exception."""
    where = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == f"<{label}>" and frame.lineno:
            lines = source.splitlines()
            text = lines[frame.lineno - 1].strip() if frame.lineno <= len(lines) else ""
            where = f"{label} line {frame.lineno}: {text}\n"
    if isinstance(exc, SyntaxError) and exc.filename == f"<{label}>":
        where = f"{label} line {exc.lineno}: {(exc.text or '').strip()}\n"
    only = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return (where + only)[-1000:]


def equal(a, b) -> bool:
    if type(a) is not type(b):
        return False
    try:
        if hasattr(a, "equals"):
            return bool(a.equals(b))
        if hasattr(a, "shape") and hasattr(a, "tolist"):
            return a.shape == b.shape and a.tolist() == b.tolist()
        r = a == b
        return r if isinstance(r, bool) else bool(r)
    except Exception:
        return False


def snapshot(ns: dict) -> dict:
    snap = {}
    for name, value in ns.items():
        if name.startswith("__") or isinstance(value, type(os)):
            continue
        try:
            snap[name] = (id(value), copy.deepcopy(value))
        except Exception:
            snap[name] = (id(value), value)
    return snap


def eq(v, expected, ordered=True, tol=1e-6) -> bool:
    """Tolerant equality for checks: containers by content, floats by closeness."""
    try:
        if hasattr(v, "tolist") and not hasattr(expected, "tolist"):
            v = v.tolist()
        if isinstance(expected, bool):
            return isinstance(v, bool) and v is expected
        if isinstance(expected, (int, float)):
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                return False
            return math.isclose(v, expected, rel_tol=tol, abs_tol=tol)
        if isinstance(expected, (list, tuple)):
            if isinstance(v, (str, bytes, dict)) or not isinstance(v, collections.abc.Iterable):
                return False
            seq = list(v)
            if len(seq) != len(expected):
                return False
            if not ordered:
                rest = list(expected)
                for item in seq:
                    match = next((i for i, e in enumerate(rest) if eq(item, e)), None)
                    if match is None:
                        return False
                    rest.pop(match)
                return True
            return all(eq(a, b, tol=tol) for a, b in zip(seq, expected))
        if isinstance(expected, (set, frozenset)):
            if isinstance(v, (str, bytes)) or not isinstance(v, collections.abc.Iterable):
                return False
            return eq(list(v), list(expected), ordered=False, tol=tol) and len(set(v)) == len(expected)
        if isinstance(expected, dict):
            if not isinstance(v, collections.abc.Mapping) or set(v) != set(expected):
                return False
            return all(eq(v[k], expected[k], tol=tol) for k in expected)
        r = v == expected
        return r if isinstance(r, bool) else bool(r)
    except Exception:
        return False


def frame_eq(v, expected, ignore_index=False) -> bool:
    import pandas as pd

    kind = pd.DataFrame if isinstance(expected, pd.DataFrame) else pd.Series
    if not isinstance(v, kind):
        return False
    if ignore_index:
        v, expected = v.reset_index(drop=True), expected.reset_index(drop=True)
    assert_equal = pd.testing.assert_frame_equal if kind is pd.DataFrame else pd.testing.assert_series_equal
    try:
        assert_equal(v, expected, check_dtype=False, check_index_type=False, check_names=False,
                     **({"check_column_type": False} if kind is pd.DataFrame else {}))
        return True
    except (AssertionError, TypeError, ValueError):
        return False


class Iterated(list):
    """The items of an iterator the candidate produced (map, zip, a generator): compares like
    a list, but `type(v) is list` is False where a check wants a real list."""


def produced(ns: dict, before: dict, stdout: str) -> list:
    values = []
    if ns.get("_result") is not None:
        values.append(ns["_result"])
    for name, value in ns.items():
        if name.startswith("__") or name in HELPERS or isinstance(value, type(os)):
            continue
        old = before.get(name)
        if old is not None and old[0] == id(value) and (old[1] is value or equal(old[1], value)):
            continue
        if value is not None:
            values.append(value)
    text = stdout.strip()
    if text:
        try:
            values.append(ast.literal_eval(text))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
        values.append(text)
    out = []
    for v in values:
        if isinstance(v, collections.abc.Iterator) and not isinstance(v, io.IOBase):
            try:
                v = Iterated(x for _, x in zip(range(1_000_000), v))
            except Exception:
                continue
        out.append(v)
    return out


def run_python(job: dict) -> None:
    """The candidate after the setup, then the check; again for each variant setup, each in a
    fresh namespace (a predicate must get the answer right for both truth values)."""
    for n, setup in enumerate([job["setup"], *job.get("variants", [])]):
        try:
            run_python_once(setup, job["code"], job["check"])
        except Stage as exc:
            if n:
                raise Stage(exc.stage, f"variant {n}: {exc}") from None
            raise


def run_python_once(setup: str, code: str, check_source: str) -> None:
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(PRELUDE + setup, "<setup>", "exec"), ns)
    except BaseException as exc:
        raise Stage("setup", describe(exc, "setup", PRELUDE + setup)) from None
    before = snapshot(ns)
    buf = io.StringIO()
    has_result = False
    try:
        tree = ast.parse(code, "<candidate>")
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            has_result = True
            last = tree.body[-1]
            tree.body[-1] = ast.copy_location(
                ast.Assign(targets=[ast.Name("_result", ast.Store())], value=last.value), last)
            ast.fix_missing_locations(tree)
        with redirect_stdout(buf):
            exec(compile(tree, "<candidate>", "exec"), ns)
    except SystemExit:
        raise Stage("candidate", "the candidate called exit()") from None
    except BaseException as exc:
        raise Stage("candidate", describe(exc, "candidate", code)) from None
    stdout = buf.getvalue()
    values = produced(ns, before, stdout)
    ns.setdefault("_result", None)
    ns.update(_stdout=stdout, _values=values, eq=eq,
              truth_is=lambda expected: truth_is(expected, values, has_result, ns["_result"]),
              found_eq=lambda expected, **kw: any(eq(v, expected, **kw) for v in values),
              found=lambda pred: any(_safe(pred, v) for v in values), frame_eq=frame_eq,
              found_frame=lambda expected, **kw: any(frame_eq(v, expected, **kw) for v in values))
    check(check_source, ns)


def truth_is(expected: bool, values: list, has_result: bool, result) -> bool:
    """A predicate's answer: a bool the candidate produced or printed, or (when it ended in an
    expression) the truth of a match object or None, e.g. re.match(...)."""
    bools = [bool(v) for v in values if type(v).__name__ in ("bool", "bool_")]
    if bools:
        return bools[0] is expected
    if has_result and (result is None or hasattr(result, "group")):
        return bool(result) is expected
    return False


def _safe(pred, v) -> bool:
    try:
        return bool(pred(v))
    except Exception:
        return False


def check(source: str, ns: dict) -> None:
    try:
        with redirect_stdout(io.StringIO()):
            exec(compile(source, "<check>", "exec"), ns)
    except BaseException as exc:
        raise Stage("check", describe(exc, "check", source)) from None


def run_bash(job: dict, run: Path) -> None:
    def bash(script):
        # files, not pipes: a command left running in the background (`sleep 99 &`) must not
        # hold the verdict back; the parent kills the whole process group afterwards
        with open(run / "stdout", "w+b") as out, open(run / "stderr", "w+b") as err:
            proc = subprocess.run(["bash", "-c", script], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode,
                                               out.read().decode("utf-8", "replace"),
                                               err.read().decode("utf-8", "replace"))

    if job["setup"].strip():
        setup = bash(job["setup"])
        if setup.returncode != 0:
            raise Stage("setup", f"setup exited {setup.returncode}: {setup.stderr.strip()[-800:]}")
    cand = bash(job["code"])
    work = Path.cwd()

    def lines(text=None):
        return [line.strip() for line in (cand.stdout if text is None else text).splitlines() if line.strip()]

    ns = {"out": cand.stdout, "err": cand.stderr, "rc": cand.returncode, "lines": lines,
          "read": lambda p: (work / p).read_text(errors="replace"), "exists": lambda p: (work / p).exists(),
          "os": os, "re": __import__("re"), "json": json, "Path": Path}
    try:
        check(job["check"], ns)
    except Stage as exc:
        tail = cand.stderr.strip()[-300:]
        raise Stage("check", str(exc) + (f"\nstderr: {tail}" if tail else "")) from None


def _isolation_module():
    """nl2code/exec_isolate.py, loaded by path: the driver runs with `python -I` and must not
    put nl2code's folder on sys.path (a snippet's `import config` would find ours)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("exec_isolate", Path(__file__).with_name("exec_isolate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_job(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    if job.get("isolate"):
        iso = _isolation_module()
        try:
            iso.isolate([str(Path(job_path).parent.parent)])
        except (iso.Refused, OSError) as exc:  # the probe said yes, this run says no: do not run unconfined
            Path(result_path).write_text(json.dumps({"passed": False, "stage": "isolate", "error": str(exc)}))
            return 0
    set_limits(job.get("limits", {}))
    verdict = {"passed": True, "stage": "done", "error": ""}
    try:
        run_python(job) if job["lang"] == "python" else run_bash(job, Path(result_path).parent)
    except Stage as exc:
        verdict = {"passed": False, "stage": exc.stage, "error": str(exc)}
    sys.stdout.flush()
    Path(result_path).write_text(json.dumps(verdict))
    return 0


def serve(preload: list[str]) -> int:
    """Fork server: import the slow libraries once, then fork one child per request.

    A request is one JSON line on stdin: job, result, cwd, env, output. The child starts a
    new session (so the parent can kill its whole process group), takes the request's
    folder, environment and output file, and runs the job exactly as a fresh process would.
    Replies on stdout: {"pid": N} at once, {"status": S} when the child is gone. Exits on EOF.
    """
    for name in preload:
        try:
            __import__(name)
        except Exception:
            pass
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(replies.fileno())  # only the server answers the parent
                os.setsid()
                os.chdir(req["cwd"])
                os.environ.clear()
                os.environ.update(req["env"])
                import tempfile

                tempfile.tempdir = None
                out = os.open(req["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.dup2(out, 1)
                os.dup2(out, 2)
                sys.stdin = open(os.devnull)
                sys.stdout = open(1, "w", closefd=False)
                sys.stderr = open(2, "w", closefd=False)
                code = run_job(req["job"], req["result"])
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                os._exit(code)
        replies.write(json.dumps({"pid": pid}) + "\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"status": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        sys.exit(serve(sys.argv[2:]))
    if sys.argv[1] == "--probe":
        sys.exit(_isolation_module().probe(sys.argv[2]))
    sys.exit(run_job(sys.argv[1], sys.argv[2]))
