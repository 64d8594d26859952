"""Run one snippet for one suite case, confined in a child process. See SECURITY.md.

This is the ONE place in nl2code where generated code is executed. Each run gets:
  - a fresh temporary folder (the snippet's working folder and HOME), removed afterwards;
  - a child process in a new session / process group, never the nl2code process itself:
    nl2code/exec_driver.py, either started fresh (`python -I`) or forked by a fork server
    (exec_driver.py --serve, one per worker) that has pandas, numpy and matplotlib imported
    already, which makes a pandas case ~10x cheaper than a fresh interpreter;
  - stdin from /dev/null and a minimal environment (PATH, HOME, LANG, TZ=UTC, MPLBACKEND=Agg);
  - resource limits set in the child before the snippet runs, inherited by whatever it starts:
    address space 2 GiB, CPU seconds (timeout + 2), file size 64 MiB, no core files, and a
    process count of (this user's tasks now + 64);
  - a wall-clock timeout after which the whole process group is killed (SIGKILL); the group
    is killed after every run too, so nothing the snippet left in the background survives;
  - where Linux allows it (probed once, see isolation()): new user, mount, network and PID
    namespaces, with every mount read-only except the run's own folder. As root without
    them, generated code is refused (untrusted_allowed), the suite's own code still runs.
It is confinement against accidents, not a sandbox against malicious code.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DRIVER = Path(__file__).with_name("exec_driver.py")
PRELOAD = ("numpy", "pandas", "matplotlib.pyplot")
GiB = 1 << 30


@dataclass
class RunResult:
    passed: bool
    status: str  # pass | fail (the check said no) | error (setup/candidate raised) | timeout | crash
    stage: str = ""
    error: str = ""
    seconds: float = 0.0


_MPL_DIR: list[str] = []
_ISOLATION: list[str] = []


def isolation() -> str:
    """"namespaces" when this machine lets a child isolate itself (probed once), else why not.

    With namespaces each run sees every mount read-only except its own temporary folder, has
    no network, and lives in its own PID namespace (it can neither see nor signal anything
    outside). Without them (some containers, AppArmor-restricted user namespaces) a run is
    confined only by the process group, folder, environment, timeout and rlimits above.
    """
    if not _ISOLATION:
        folder = tempfile.mkdtemp(prefix="nl2code-probe-")
        try:
            proc = subprocess.run([sys.executable, "-I", str(DRIVER), "--probe", folder], capture_output=True,
                                  text=True, timeout=30, env=environment(Path(folder)), stdin=subprocess.DEVNULL)
            ok = proc.returncode == 0 and (Path(folder) / "probe").exists()
            why = (proc.stdout.strip() or proc.stderr.strip()[-200:] or f"exit {proc.returncode}")
            _ISOLATION.append("namespaces" if ok else f"none ({why})")
        except (OSError, subprocess.SubprocessError) as exc:
            _ISOLATION.append(f"none ({exc})")
        finally:
            _remove(Path(folder))
    return _ISOLATION[0]


def untrusted_allowed() -> str | None:
    """Why generated code must not run here, or None. As root it needs namespace isolation:
    an unconfined root snippet can delete anything (`find /tmp -delete` from a harmless intent)."""
    if isolation() == "namespaces" or os.geteuid() != 0 or os.environ.get("NL2CODE_EXEC_UNCONFINED") == "1":
        return None
    return (f"refusing to run generated code as root without namespace isolation ({isolation()}); "
            "run as an ordinary user, or set NL2CODE_EXEC_UNCONFINED=1 if this machine is disposable")


def _mpl_config_dir() -> str:
    """One matplotlib cache folder per nl2code process (its font cache takes a second to build)."""
    if not _MPL_DIR:
        _MPL_DIR.append(tempfile.mkdtemp(prefix="nl2code-mpl-"))
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


def limits(timeout: float) -> dict[str, int]:
    return {"RLIMIT_AS": 2 * GiB, "RLIMIT_CPU": int(timeout) + 2, "RLIMIT_FSIZE": 64 << 20,
            "RLIMIT_NPROC": _own_tasks() + 64, "RLIMIT_CORE": 0}


def environment(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
            "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "TZ": "UTC", "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": _mpl_config_dir(), "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            # numpy's OpenBLAS must not start threads: the fork server forks after importing it
            # (not OMP_NUM_THREADS: `nproc` would report it as the machine's core count)
            "OPENBLAS_NUM_THREADS": "1"}


class _ForkServer:
    """One exec_driver.py --serve process; serves one job at a time (one per worker thread)."""

    def __init__(self):
        env = environment(Path(tempfile.gettempdir()))
        self.proc = subprocess.Popen([sys.executable, "-I", str(DRIVER), "--serve", *PRELOAD],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, cwd=tempfile.gettempdir(),
                                     start_new_session=True)
        self.buf = b""

    def _reply(self, deadline: float | None) -> dict | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buf:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], wait)[0]:
                return None  # deadline passed
            chunk = os.read(fd, 4096)
            if not chunk:
                raise OSError("fork server exited")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def run(self, request: dict, timeout: float) -> tuple[bool, int]:
        """(timed_out, exit status); the job's process group is killed either way."""
        self.proc.stdin.write((json.dumps(request) + "\n").encode())
        self.proc.stdin.flush()
        pid = self._reply(None)["pid"]
        try:
            done = self._reply(time.monotonic() + timeout)
        except BaseException:  # interrupted: the job must not outlive us
            done = None
            raise
        finally:
            if done is None:  # still running (the server has not reaped it): the pid is ours
                _kill(pid)
            _kill_group(pid)
        if done is None:
            return True, self._reply(None)["status"]
        return False, done["status"]

    def close(self) -> None:
        try:
            self.proc.stdin.close()
            self.proc.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


_SERVERS: queue.LifoQueue = queue.LifoQueue()


def _close_servers() -> None:
    while not _SERVERS.empty():
        _SERVERS.get().close()


atexit.register(_close_servers)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _spawn(request: dict, timeout: float) -> tuple[bool, int]:
    with open(request["output"], "wb") as output:
        proc = subprocess.Popen([sys.executable, "-I", str(DRIVER), request["job"], request["result"]],
                                cwd=request["cwd"], env=request["env"], stdin=subprocess.DEVNULL,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout)
            return False, proc.returncode
        except subprocess.TimeoutExpired:
            return True, -signal.SIGKILL
        finally:
            _kill_group(proc.pid)
            proc.wait()


def _execute(request: dict, timeout: float, fork_server: bool) -> tuple[bool, int]:
    if not fork_server:
        return _spawn(request, timeout)
    try:
        server = _SERVERS.get_nowait()
    except queue.Empty:
        server = _ForkServer()
    try:
        outcome = server.run(request, timeout)
    except (OSError, ValueError, KeyError):  # the server died: this job runs in a fresh process
        server.close()
        return _spawn(request, timeout)
    _SERVERS.put(server)
    return outcome


def _remove(folder: Path) -> None:
    def fix(func, path, _exc):  # a snippet may chmod 000 what it made
        try:
            os.chmod(os.path.dirname(path), 0o700)
            os.chmod(path, 0o700)
            func(path)
        except OSError:
            pass

    shutil.rmtree(folder, onerror=fix)


def run_snippet(lang: str, setup: str, check: str, code: str, timeout: float,
                fork_server: bool = True, variants: tuple[str, ...] = ()) -> RunResult:
    """Run `code` between a case's setup and check in a confined child process; the verdict."""
    tmp = Path(tempfile.mkdtemp(prefix="nl2code-exec-"))
    try:
        run, work = tmp / "run", tmp / "work"
        run.mkdir()
        work.mkdir()
        job, result = run / "job.json", run / "result.json"
        job.write_text(json.dumps({"lang": lang, "setup": setup, "variants": list(variants), "check": check,
                                   "code": code, "limits": limits(timeout),
                                   "isolate": isolation() == "namespaces"}))
        request = {"job": str(job), "result": str(result), "cwd": str(work), "env": environment(work),
                   "output": str(run / "output")}
        start = time.monotonic()
        timed_out, status = _execute(request, timeout, fork_server)
        seconds = time.monotonic() - start
        if timed_out:
            return RunResult(False, "timeout", "", f"killed after {timeout:g} s", seconds)
        try:
            verdict = json.loads(result.read_text())
        except (OSError, ValueError):
            tail = (run / "output").read_bytes()[-600:].decode("utf-8", "replace").strip()
            why = f"signal {-status}" if status < 0 else f"exit {status}"
            return RunResult(False, "crash", "", f"child ended without a verdict ({why}) {tail}".strip(), seconds)
        if verdict["passed"]:
            return RunResult(True, "pass", "done", "", seconds)
        if verdict["stage"] == "isolate":
            raise OSError(f"could not isolate a run although the probe could: {verdict['error']}")
        status_word = "fail" if verdict["stage"] == "check" else "error"
        return RunResult(False, status_word, verdict["stage"], verdict["error"], seconds)
    finally:
        _remove(tmp)
