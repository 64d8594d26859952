"""`nl2code serve` under load, under a malformed-request storm, and the CLI with a warm server.

All on loopback, against a real `python -m nl2code serve` child process (its own
NL2CODE_HOME in a temp folder, OMP_NUM_THREADS=1):

1. load: C concurrent clients (each its own connection) x R generate requests each, intents
   from the CoNaLa dev set (else a fixed list). A 503 is a deliberate refusal from the bounded
   queue: the client waits its Retry-After and moves on (--retry K: asks again, up to K times).
   Anything else than 200/503 is an error. p50/p99 latency of answers, server RSS before/after.
2. storm: while good clients keep asking, bad ones send broken JSON, wrong fields, a 30k-deep
   JSON array, bodies over the limit (declared and chunked), slowloris bodies (a byte every
   0.5 s) and slow headers. Each must get its 4xx (or be cut off) within a bound.
3. cli: `python -m nl2code "intent"` (a fresh process) 10 times with the warm server, vs a
   cold in-process run (NL2CODE_SERVER=off), vs `python -c pass`; outputs must be equal.

    python -m benchmarks.serve_load [--quick] [--clients 200] [--requests 10] [--model DIR] [--json PATH]
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import common

FALLBACK_INTENTS = ["sort list `xs` in descending order", "read csv file 'data.csv' into a dataframe",
                    "reverse list `xs`", "convert string `s` to lowercase", "get the maximum of list `nums`",
                    "list all files in the current directory", "count lines in file 'log.txt'"]
CLI_INTENT = "sort list `xs` in descending order"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def start_server(model: Path, home: Path, max_queue: int) -> tuple[subprocess.Popen, str]:
    env = common.python_env({"NL2CODE_HOME": str(home), "OMP_NUM_THREADS": "1", "NL2CODE_MODEL": str(model)})
    log = open(home / "server.out", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "nl2code", "serve", "--port", "0", "--max-queue", str(max_queue)],
                            cwd=common.REPO, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        state = home / "server.json"
        if state.exists() and proc.poll() is None:
            url = json.loads(state.read_text())["url"]
            import httpx

            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(home / 'server.out').read_text()[-500:]}")
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start within 180 s")


async def load(url: str, intents: list[str], clients: int, requests: int, retry: int) -> dict[str, Any]:
    import httpx

    statuses: Counter = Counter()
    errors: list[str] = []
    served: list[float] = []
    refused: list[float] = []

    async def one_client(c: int) -> None:
        rng = random.Random(c)
        async with httpx.AsyncClient(base_url=url, timeout=120) as http:
            for _ in range(requests):
                body = {"intent": rng.choice(intents), "n": 1}
                for attempt in range(retry + 1):
                    t = time.perf_counter()
                    try:
                        r = await http.post("/v1/generate", json=body)
                    except httpx.HTTPError as exc:
                        errors.append(f"{type(exc).__name__}: {exc}")
                        break
                    dt = time.perf_counter() - t
                    statuses[r.status_code] += 1
                    if r.status_code == 200:
                        served.append(dt)
                        break
                    if r.status_code != 503:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        break
                    refused.append(dt)
                    await asyncio.sleep(min(float(r.headers.get("retry-after", 1)), 5.0))

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client(c) for c in range(clients)))
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests_each": requests, "retry": retry, "wall_s": round(wall, 1),
            "statuses": dict(statuses), "errors": len(errors), "first_errors": errors[:5],
            "answered": len(served), "answers_per_s": round(len(served) / wall, 2),
            "p50_ms": round(1000 * pct(served, 0.5), 1), "p99_ms": round(1000 * pct(served, 0.99), 1),
            "refusal_p50_ms": round(1000 * pct(refused, 0.5), 1) if refused else None}


async def raw(host: str, port: int, payload: bytes, trickle: bytes = b"", every: float = 0.5,
              bound: float = 30.0) -> tuple[str, float]:
    """Send payload, then trickle a byte every `every` s; -> (first status or 'closed', seconds)."""
    t = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(payload)
        await writer.drain()
        for i in range(max(len(trickle), 1)):
            try:
                line = await asyncio.wait_for(reader.readline(), every)
                return (line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"), time.perf_counter() - t
            except asyncio.TimeoutError:
                pass
            if time.perf_counter() - t > bound:
                return "unbounded", time.perf_counter() - t
            if trickle:
                try:
                    writer.write(trickle[i:i + 1])
                    await writer.drain()
                except OSError:
                    return "closed", time.perf_counter() - t
        line = await asyncio.wait_for(reader.readline(), bound)
        return (line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"), time.perf_counter() - t
    except (ConnectionError, asyncio.IncompleteReadError):
        return "closed", time.perf_counter() - t
    except asyncio.TimeoutError:
        return "unbounded", time.perf_counter() - t
    finally:
        writer.close()


async def storm(url: str, intents: list[str], rounds: int) -> dict[str, Any]:
    import httpx

    host, port = url.rsplit("/", 1)[1].rsplit(":", 1)[0], int(url.rsplit(":", 1)[1])
    head = b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    bad_bodies = {"broken JSON": b'{"intent": "x', "not an object": b"[1, 2, 3]", "wrong type": b'{"intent": 5}',
                  "unknown field": b'{"intent": "x y", "temperature": 9}', "n out of range": b'{"intent": "x", "n": 999}',
                  "binary": bytes(range(256)), "deep nesting": b"[" * 30000 + b"]" * 30000,
                  "huge intent": json.dumps({"intent": "w " * 20000}).encode()}
    expected = {"broken JSON": {"400"}, "not an object": {"400"}, "wrong type": {"400"}, "unknown field": {"400"},
                "n out of range": {"400"}, "binary": {"400"}, "deep nesting": {"400"}, "huge intent": {"413"},
                "declared huge body": {"413", "closed"}, "chunked huge body": {"413", "closed"},
                "slowloris body": {"408", "closed"}, "slow headers": {"closed"}, "good": {"200", "503"}}
    outcomes: dict[str, Counter] = {k: Counter() for k in expected}
    times: dict[str, list[float]] = {k: [] for k in expected}

    def note(kind: str, status: str, dt: float) -> None:
        outcomes[kind][status] += 1
        times[kind].append(dt)

    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        async def bad_json():
            for _ in range(rounds):
                for kind, body in bad_bodies.items():
                    t = time.perf_counter()
                    r = await http.post("/v1/generate", content=body)
                    note(kind, str(r.status_code), time.perf_counter() - t)

        async def huge():
            for _ in range(rounds):
                status, dt = await raw(host, port, head + b"Content-Length: 10000000\r\n\r\n" + b"x" * 65536)
                note("declared huge body", status, dt)
                payload = head + b"Transfer-Encoding: chunked\r\n\r\n" + (b"10000\r\n" + b"x" * 65536 + b"\r\n") * 4
                status, dt = await raw(host, port, payload)
                note("chunked huge body", status, dt)

        async def slow_body(i: int):
            status, dt = await raw(host, port, head + b"Content-Length: 200\r\n\r\n", trickle=b" " * 200, bound=40)
            note("slowloris body", status, dt)

        async def slow_headers(i: int):
            status, dt = await raw(host, port, b"POST /v1/generate HTTP/1.1\r\n", trickle=b"X-Slow: " + b"a" * 200,
                                   bound=40)
            note("slow headers", status, dt)

        async def good(c: int):
            async with httpx.AsyncClient(base_url=url, timeout=120) as own:
                for k in range(5):
                    t = time.perf_counter()
                    r = await own.post("/v1/generate", json={"intent": intents[(c + k) % len(intents)]})
                    note("good", str(r.status_code), time.perf_counter() - t)
                    if r.status_code == 503:
                        await asyncio.sleep(float(r.headers.get("retry-after", 1)))

        t0 = time.perf_counter()
        await asyncio.gather(bad_json(), huge(), *(slow_body(i) for i in range(20)),
                             *(slow_headers(i) for i in range(20)), *(good(c) for c in range(20)))
        wall = time.perf_counter() - t0
    unexpected = {k: {s: n for s, n in c.items() if s not in expected[k]} for k, c in outcomes.items()}
    unexpected = {k: v for k, v in unexpected.items() if v}
    return {"wall_s": round(wall, 1), "outcomes": {k: dict(v) for k, v in outcomes.items()},
            "max_s": {k: round(max(v), 2) for k, v in times.items() if v}, "unexpected": unexpected}


def cli_runs(home: Path, model: Path, runs: int) -> dict[str, Any]:
    env = common.python_env({"NL2CODE_HOME": str(home), "OMP_NUM_THREADS": "1", "NL2CODE_MODEL": str(model),
                             "NO_COLOR": "1"})
    cmd = [sys.executable, "-m", "nl2code", CLI_INTENT]

    def once(extra=None):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        p = subprocess.run(cmd, env={**env, **(extra or {})}, cwd=common.REPO, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        return time.perf_counter() - t, p

    warm, cold, floor, outputs, cpu = [], [], [], set(), []
    for i in range(runs):
        dt, p = once()
        warm.append(dt)
        outputs.add((p.returncode, p.stdout))
        floor.append(common.timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env)))
    warm_cpu = list(cpu)
    for _ in range(max(1, runs // 5)):
        dt, p = once({"NL2CODE_SERVER": "off"})
        cold.append(dt)
        cold_out = (p.returncode, p.stdout)
    return {"runs": runs, "warm_median_s": round(statistics.median(warm), 3), "warm_max_s": round(max(warm), 3),
            "warm_client_cpu_median_s": round(statistics.median(warm_cpu), 3),
            "cold_median_s": round(statistics.median(cold), 3), "python_pass_median_s": round(statistics.median(floor), 3),
            "same_output_as_in_process": outputs == {cold_out}, "output": sorted(outputs)[0][1].strip()}


def run(args) -> dict[str, Any]:
    model = common.default_model_dir(args.model)
    if model is None:
        raise SystemExit("no model: pass --model DIR or set NL2CODE_MODEL")
    try:
        intents = common.dev_intents(args.conala, 100)
    except (OSError, ValueError):
        intents = FALLBACK_INTENTS
    home = Path(tempfile.mkdtemp(prefix="nl2code-serve-"))
    proc, url = start_server(Path(model), home, args.max_queue)
    result: dict[str, Any] = {"model": str(model), "url": url, "max_queue": args.max_queue,
                              "intents": len(intents), "load_avg_at_start": os.getloadavg()[0]}
    try:
        result["rss_kib_before"] = rss_kib(proc.pid)
        if "load" in args.parts:
            result["load"] = asyncio.run(load(url, intents, args.clients, args.requests, args.retry))
            result["rss_kib_after_load"] = rss_kib(proc.pid)
        if "storm" in args.parts:
            result["storm"] = asyncio.run(storm(url, intents, args.storm_rounds))
            result["rss_kib_after_storm"] = rss_kib(proc.pid)
        if "cli" in args.parts:
            result["cli"] = cli_runs(home, Path(model), args.cli_runs)
        import httpx

        result["health_after"] = httpx.get(url + "/v1/health", timeout=10).json()
    finally:
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        try:
            result["exit_code"] = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            result["exit_code"] = "killed after 60 s"
        result["stop_s"] = round(time.perf_counter() - t, 2)
        result["socket_removed"] = not (home / "server.sock").exists()
        shutil.rmtree(home, ignore_errors=True)
    return result


def report(r: dict[str, Any]) -> str:
    out = ["## HTTP server (`nl2code serve`) under load", "", common.polluted_note(),
           f"Model {r['model']}, queue bound {r['max_queue']}, {r['intents']} distinct intents, loopback.", ""]
    if "load" in r:
        out += _load_lines(r)
    if "storm" in r:
        out += _storm_lines(r)
    if "cli" in r:
        cli = r["cli"]
        out.append(f"- **CLI with a warm server**: `python -m nl2code \"{CLI_INTENT}\"` median {cli['warm_median_s']} s "
                   f"(max {cli['warm_max_s']} s; the CLI process's own CPU {cli['warm_client_cpu_median_s']} s) over "
                   f"{cli['runs']} fresh processes; in-process (NL2CODE_SERVER=off) {cli['cold_median_s']} s; "
                   f"`python -c pass` {cli['python_pass_median_s']} s. Same output as in-process: "
                   f"{cli['same_output_as_in_process']}.")
    out.append(f"- SIGTERM: exit code {r['exit_code']} after {r['stop_s']} s; socket removed: {r['socket_removed']}.")
    return "\n".join(out) + "\n"


def _load_lines(r: dict[str, Any]) -> list[str]:
    ld = r["load"]
    return [f"- **Load**: {ld['clients']} concurrent clients x {ld['requests_each']} requests: statuses "
           f"{ld['statuses']}, **errors {ld['errors']}** (503 = deliberate refusal with Retry-After); "
           f"{ld['answered']} answered in {ld['wall_s']} s ({ld['answers_per_s']}/s); answer latency "
           f"p50 {ld['p50_ms']} ms, p99 {ld['p99_ms']} ms; a refusal takes {ld['refusal_p50_ms']} ms (p50).",
           f"- **RSS** of the server: {r['rss_kib_before'] / 1024:.0f} MiB before, "
           f"{r['rss_kib_after_load'] / 1024:.0f} MiB after the load."]


def _storm_lines(r: dict[str, Any]) -> list[str]:
    st = r["storm"]
    return [f"- **Storm** ({st['wall_s']} s): unexpected outcomes {st['unexpected'] or 'none'}.", "",
           common.table(["kind", "outcomes", "slowest s"],
                        [[k, json.dumps(v), st["max_s"].get(k, "")] for k, v in st["outcomes"].items()]), "",
            f"- RSS after the storm: {r['rss_kib_after_storm'] / 1024:.0f} MiB."]


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    common.add_model_option(p)
    common.add_conala_options(p, limit=False)
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=10, help="requests per client")
    p.add_argument("--retry", type=int, default=0, help="times a refused (503) request is asked again")
    p.add_argument("--max-queue", type=int, default=32)
    p.add_argument("--storm-rounds", type=int, default=5)
    p.add_argument("--cli-runs", type=int, default=10)
    p.add_argument("--parts", default="load,storm,cli", help="which parts to run (comma-separated)")
    return common.run_main(p, run, report, clients=20, requests=2, storm_rounds=1, cli_runs=2)


if __name__ == "__main__":
    main()
