"""CLI start-up: wall time of `nl2code --help`, `--version` and a cold generation.

Each command is a fresh process (what a user waits for at the shell), run round-robin,
median of N runs. `python -c pass` and `python -c "import torch"` are the floors the
numbers should be read against: --help and --version must not import torch, and a cold
generation cannot be faster than importing it. Uses the `nl2code` console script when it
is on PATH, else `python -m nl2code`.

    python -m benchmarks.cli_startup [--quick] [--runs 5] [--model DIR]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from benchmarks import common

INTENT = "read csv file 'a.csv'"


def nl2code_cmd() -> list[str]:
    exe = shutil.which("nl2code")
    return [exe] if exe else [sys.executable, "-m", "nl2code"]


def commands(model_available: bool) -> dict[str, list[str]]:
    base = nl2code_cmd()
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
        "nl2code --help": [*base, "--help"],
        "nl2code --version": [*base, "--version"],
    }
    if model_available:
        cmds[f'nl2code "{INTENT}" (cold)'] = [*base, INTENT]
    return cmds


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """-> (seconds, exit code, last stderr line)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=common.REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
    return dt, proc.returncode, last


def run(args) -> dict[str, Any]:
    folder = common.default_model_dir(args.model)
    extra = {"NL2CODE_MODEL": str(folder)} if folder else {}
    env = common.python_env(extra)
    cmds = commands(folder is not None)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    exits: dict[str, set[int]] = {k: set() for k in cmds}
    errors: dict[str, str] = {}
    names = list(cmds)
    for r in range(args.runs):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            dt, code, last = run_once(cmds[name], env)
            times[name].append(dt)
            exits[name].add(code)
            if code not in (0, 1):  # 1 = ran, but no candidate parsed (still a full cold run)
                errors[name] = last
    return {"launcher": " ".join(nl2code_cmd()), "runs": args.runs,
            "model": str(folder) if folder else None,
            "median_s": {k: statistics.median(v) for k, v in times.items()},
            "exit_codes": {k: sorted(v) for k, v in exits.items()}, "errors": errors}


def report(r: dict[str, Any]) -> str:
    med = r["median_s"]
    torch_floor = med["python -c 'import torch'"]
    rows = [[k, 1000 * v, v / torch_floor, ", ".join(map(str, r["exit_codes"][k]))] for k, v in med.items()]
    out = ["## CLI start-up", "", common.polluted_note(),
           f"Launcher `{r['launcher']}`; median of {r['runs']} runs each, round-robin.", "",
           common.table(["command", "ms", "× import torch", "exit"], rows), ""]
    if r["model"] is None:
        out.append("- Cold generation: **not measured — no model folder** (pass `--model DIR`, set "
                   "NL2CODE_MODEL, or ship nl2code/assets/default).")
    else:
        out.append(f"- Model: {r['model']}. Exit 1 means the model ran but no candidate parsed.")
    for name, err in r["errors"].items():
        out.append(f"- `{name}` failed: {err}")
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="runs per command")
    p.add_argument("--model", help="model folder (default: NL2CODE_MODEL or the bundled model)")
    args = p.parse_args()
    common.apply_quick(args, p, runs=1)
    r = run(args)
    return common.finish(args, r, report(r))


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    main()
