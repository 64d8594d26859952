"""Helpers shared by the benchmark scripts: timing, alternation, markdown, model loading.

Every comparison runs its systems round-robin in one process (A B C, B C A, ...), so a
slow patch on the machine (another job, thermal throttling) hurts all of them alike; we
report medians and ratios, never means. Each script is `python -m benchmarks.NAME`,
prints one markdown section on stdout and, with `--json PATH`, writes its result dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
# Settings measured on this project's 2-core machine; background_thread:true was 2x slower there.
JEMALLOC_CONF = "oversize_threshold:1,dirty_decay_ms:-1,muzzy_decay_ms:-1"


# --- command line -------------------------------------------------------------------
def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny iteration counts: checks the script runs, numbers mean nothing")
    p.add_argument("--json", type=Path, help="also write the result dict to this file")
    return p


def apply_quick(args: argparse.Namespace, p: argparse.ArgumentParser, **values: Any) -> None:
    """--quick: use these tiny values for every option the user left at its default."""
    if args.quick:
        for name, value in values.items():
            if getattr(args, name) == p.get_default(name):
                setattr(args, name, value)


def add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model folder (default: NL2CODE_MODEL or the bundled model)")


# --- CoNaLa dev intents (the first 400 records of conala-train.json) ------------------------
DEV_RECORDS = 400


def default_conala() -> Path:
    env = os.environ.get("NL2CODE_DATA")
    if env:
        return Path(env).expanduser() / "conala" / "conala-train.json"
    return REPO.parent / "shared" / "data" / "conala" / "conala-train.json"


def dev_intents(path: Path, limit: int | None) -> list[str]:
    """`rewritten_intent` (else `intent`) of the dev records, the first `limit` of them."""
    records = json.loads(Path(path).read_text(encoding="utf-8"))[:DEV_RECORDS]
    intents = [(r.get("rewritten_intent") or r.get("intent") or "").strip() for r in records]
    intents = [i for i in intents if i]
    return intents[:limit] if limit else intents


def model_and_conala(args: argparse.Namespace) -> tuple[Path | None, str | None]:
    """(model folder, None) when --model and --conala both exist, else (None, why the
    benchmark is skipped)."""
    folder = default_model_dir(args.model)
    if folder is None:
        return None, f"no model ({args.model or 'NL2CODE_MODEL / nl2code/assets/default'})"
    if not Path(args.conala).is_file():
        return None, f"no CoNaLa file at {args.conala} (set --conala or NL2CODE_DATA)"
    return folder, None


def add_conala_options(p: argparse.ArgumentParser, limit: bool = True) -> None:
    p.add_argument("--conala", type=Path, default=default_conala(), help="CoNaLa conala-train.json")
    if limit:
        p.add_argument("--limit", type=int, help=f"use only the first N of the {DEV_RECORDS} dev intents")


def run_main(p: argparse.ArgumentParser, run: Callable, report: Callable, **quick: Any) -> dict[str, Any]:
    """Parse the flags, apply --quick's values, run, print the report, return the result."""
    args = p.parse_args()
    apply_quick(args, p, **quick)
    r = run(args)
    return finish(args, r, report(r))


def finish(args: argparse.Namespace, results: dict[str, Any], markdown: str) -> dict[str, Any]:
    """Print the markdown section; write the result dict if --json was given."""
    print(markdown.rstrip() + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return results


# --- timing ---------------------------------------------------------------------------
def timed(fn: Callable[[], Any]) -> float:
    """Wall seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def alternate(systems: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each system `reps` times, round-robin with a rotating start; -> seconds per call."""
    names = list(systems)
    for _ in range(warmup):
        for name in names:
            systems[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(systems[name]))
    return times


def median_ms(xs: list[float]) -> float:
    return 1000.0 * statistics.median(xs)


def percentile(xs: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100.0 * len(s)) - 1))
    return s[k]


# --- markdown ---------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_sample() -> tuple[float, float, float] | None:
    """(machine busy CPU-seconds, this process's and its reaped children's CPU-seconds,
    monotonic time), or None where /proc/stat does not exist."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    busy = sum(fields) - fields[3] - fields[4]  # everything but idle and iowait (steal counts)
    t = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system + t.children_user + t.children_system, time.monotonic()


_START = cpu_sample()  # benchmarks import this module first thing


def foreign_cores(start=None) -> float | None:
    """Average cores kept busy by processes other than this one (and its children) since
    `start` (default: this module's import). Unlike the load average, this does not count
    our own work, nor the benchmark that ran just before in the same run_all."""
    start = start or _START
    end = cpu_sample()
    if start is None or end is None or end[2] - start[2] < 1.0:
        return None
    return max(0.0, (end[0] - start[0]) - (end[1] - start[1])) / (end[2] - start[2])


def polluted_note() -> str:
    """A warning line when other processes used the CPU while this benchmark ran."""
    other = foreign_cores()
    if other is not None and other > 0.15:
        return (f"> **Warning:** other processes kept {other:.2f} of the {os.cpu_count()} cores busy on "
                f"average while this ran, so these timings are polluted.\n")
    return ""


def machine_info() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# --- models -----------------------------------------------------------------------------
def default_model_dir(path: str | Path | None) -> Path | None:
    """The model folder to use: the given one, else NL2CODE_MODEL / the bundled default, if present."""
    from nl2code.paths import default_model_path

    cand = Path(path) if path else default_model_path()
    return cand if (cand / "manifest.json").is_file() else None


def load_or_random(path: str | Path | None = None):
    """-> (model in eval mode, ModelConfig, description). Random weights of the default
    shape when no model folder is available: speed does not depend on the weights when
    the output length is forced (min_len = max_len)."""
    import torch

    from nl2code.config import ModelConfig
    from nl2code.model import build_model

    folder = default_model_dir(path)
    if folder is not None:
        from nl2code.checkpoint import load_model

        model, cfg, _, _ = load_model(folder)
        return model, cfg, f"trained model {folder}"
    if path:
        raise SystemExit(f"benchmarks: no model folder at {path}")
    torch.manual_seed(0)
    cfg = ModelConfig()
    return build_model(cfg).eval(), cfg, "random weights, default ModelConfig (no model folder found)"


def random_src(batch: int, length: int, vocab: int, seed: int = 0):
    """(src ids, mask) of random non-special tokens; ids 0..3 are PAD/UNK/BOS/EOS."""
    import torch

    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, vocab, (batch, length), generator=g)
    return src, torch.ones_like(src, dtype=torch.bool)


# --- subprocesses -------------------------------------------------------------------------
def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child `python -m benchmarks.X`: the repo importable, warnings quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    env.update(extra or {})
    return env


def jemalloc_env() -> dict[str, str] | None:
    """LD_PRELOAD settings for jemalloc, or None when the library is not installed."""
    if not JEMALLOC.is_file():
        return None
    return {"LD_PRELOAD": str(JEMALLOC), "MALLOC_CONF": JEMALLOC_CONF}


def jemalloc_or_skip(rounds: int) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """(jemalloc environment, None), or (None, {"skipped": why}) when it cannot run."""
    env = jemalloc_env()
    if env is None:
        return None, {"skipped": f"{JEMALLOC} not found (apt-get install -y libjemalloc2)"}
    if rounds == 0:
        return None, {"skipped": "--jemalloc-rounds 0"}
    return env, None


def run_child_json(module: str, argv: list[str], extra_env: dict[str, str] | None, tmp: Path) -> dict[str, Any]:
    """Run `python -m module argv --json tmp` and return its result dict."""
    import subprocess

    cmd = [sys.executable, "-m", module, *argv, "--json", str(tmp)]
    proc = subprocess.run(cmd, cwd=REPO, env=python_env(extra_env), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return json.loads(tmp.read_text())
