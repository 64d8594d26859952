"""Run every benchmark, each in its own process, and regenerate benchmarks/RESULTS.md.

Separate processes keep thread settings, allocator state and compiled graphs from
leaking between benchmarks. decode_speed runs first; compute_limit then compares its
measured paths with the compute bounds. A benchmark that fails is reported in the file
with the end of its stderr, and the others still run.

    python -m benchmarks.run_all [--quick] [--model DIR] [--out PATH]

--quick passes tiny iteration counts to every script (a smoke test: the numbers mean
nothing) and writes to a temporary file unless --out is given, so it never overwrites
the recorded results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def plan(args, tmp: Path) -> list[tuple[str, list[str]]]:
    """(module, argv) in run order."""
    quick = ["--quick"] if args.quick else []
    model = ["--model", str(args.model)] if args.model else []
    decode_json = tmp / "decode_speed.json"
    limit = ["--limit", str(args.limit)] if args.limit else []
    return [
        ("decode_speed", [*quick, *model]),
        ("compute_limit", [*quick, "--tokens", "30", "--measured", str(decode_json)]),
        ("latency", [*quick, *model, *limit]),
        ("cli_startup", [*quick, *model]),
        ("train_speed", quick),
        ("lsp_latency", [*quick, *model, *limit]),
        ("lsp_soak", [*quick, *model]),
        ("serve_load", [*quick, *model]),
    ]


def without_missing_inputs(argv: list[str]) -> list[str]:
    """Drop `--measured FILE` when FILE was not written (decode_speed failed)."""
    if "--measured" in argv:
        i = argv.index("--measured")
        if not Path(argv[i + 1]).is_file():
            return argv[:i] + argv[i + 2:]
    return argv


def run_one(module: str, argv: list[str], tmp: Path) -> tuple[str, float]:
    """-> (markdown section, wall seconds)."""
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *argv, "--json", str(tmp / f"{module}.json")]
    print(f"running {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=common.REPO, env=common.python_env(), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode == 0:
        return proc.stdout, wall
    tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
    return f"## {module}\n\n**Failed** (exit {proc.returncode}):\n\n```\n{tail}\n```\n", wall


def header(args, walls: dict[str, float], load: float) -> str:
    other = common.foreign_cores()
    m = common.machine_info()
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python -m benchmarks.run_all" + (" --quick" if args.quick else "")
    lines = ["# nl2code benchmarks", ""]
    if args.quick:
        lines += ["> **Quick run** (`--quick`): tiny iteration counts to check the scripts; the numbers mean nothing.", ""]
    lines += [f"Generated {now} by `{cmd}` (regenerate with the same command).", "",
              f"- Machine: {m['nproc']} cores, {m['cpu']}; Python {m['python']}, torch {m['torch']}.",
              f"- 1-minute load average at start: {load:.2f}. "
              + (f"Other processes (not the benchmarks) kept {other:.2f} cores busy on average during the run"
                 + (" — **timings are polluted.**" if other > 0.15 else ".") if other is not None else ""),
              "- Wall time per benchmark: " + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
              + f" (total {sum(walls.values()) / 60:.1f} min).", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny iteration counts (smoke test)")
    p.add_argument("--model", type=Path, help="model folder for decode_speed, latency and cli_startup")
    p.add_argument("--limit", type=int, help="latency: use only the first N dev intents")
    p.add_argument("--out", type=Path, help=f"markdown file to write (default {RESULTS}; --quick: a temp file)")
    args = p.parse_args()
    out = args.out or (Path(tempfile.gettempdir()) / "nl2code-RESULTS.quick.md" if args.quick else RESULTS)
    load = os.getloadavg()[0]
    sections, walls = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for module, argv in plan(args, Path(tmp)):
            text, walls[module] = run_one(module, without_missing_inputs(argv), Path(tmp))
            sections.append(text.rstrip() + "\n")
    out.write_text(header(args, walls, load) + "\n" + "\n".join(sections))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
