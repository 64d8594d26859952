"""Soak test of nl2code-lsp: thousands of completions through a raw JSON-RPC client.

Drives `python -m nl2code_lsp` over stdio with `RawClient` (below; also used by
benchmarks/lsp_latency.py and tests/test_lsp_robustness.py) and asks for completion on
CoNaLa dev intents (the first 400 records of conala-train.json, cycled). The server's
result cache is keyed by the intent text, so each pass over the intents after the first
gets a numbered suffix ("... (pass 2)"): every request is a real generation. Reports the
server's resident memory (VmRSS) at start, after the warm-up requests and at the end
(goal: growth < 10% after warm-up), and latency p50/p95 per block of requests (drift).

    python -m benchmarks.lsp_soak [--requests 2000] [--model DIR] [--conala PATH] [--json PATH]
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import common

WARMUP = 100  # requests before the "after warm-up" memory reading
BLOCK = 200  # requests per latency block


# --- a raw JSON-RPC client over a server's stdio ----------------------------------------------

def frame(body: bytes | str | dict, length: int | str | None = None) -> bytes:
    """`Content-Length: N\\r\\n\\r\\n` + body; length overrides N (to send a wrong one)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode("utf-8")
    return f"Content-Length: {len(body) if length is None else length}\r\n\r\n".encode("ascii") + body


def server_command(model: str | Path | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "nl2code_lsp"]
    return cmd + ["--model", str(model)] if model else cmd


def server_env(home: str | Path | None = None) -> dict[str, str]:
    """The checkout importable (nl2code and lsp/nl2code_lsp), not necessarily pip-installed."""
    path = [str(common.REPO), str(common.REPO / "lsp")]
    path += [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONWARNINGS": "ignore"}
    if home is not None:
        env["NL2CODE_HOME"] = str(home)
    return env


class RawClient:
    """A JSON-RPC client over a child process's stdin/stdout, framed by hand.

    A reader thread parses every frame the server sends: responses are kept by id,
    notifications in a list, and requests from the server (progress tokens, configuration)
    are answered with null. Every wait has a timeout, so a silent server fails a caller
    instead of hanging it. The server's stderr goes to a file (a full pipe would block it).
    """

    def __init__(self, cmd: list[str], env: dict[str, str] | None = None, cwd: str | Path | None = None):
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, cwd=cwd)
        self.pid = self.proc.pid
        self.responses: dict[Any, dict] = {}
        self.notifications: list[dict] = []
        self.garbage: list[bytes] = []  # frames from the server that were not valid JSON-RPC
        self._ids = itertools.count(1)
        self._write = threading.Lock()
        self._cond = threading.Condition()
        self._eof = False
        threading.Thread(target=self._read_loop, name="raw-lsp-reader", daemon=True).start()

    # -- sending -----------------------------------------------------------------------
    def send_bytes(self, data: bytes) -> None:
        with self._write:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send(self, message: dict) -> None:
        self.send_bytes(frame({"jsonrpc": "2.0", **message}))

    def request(self, method: str, params: Any = None, msg_id: Any = None) -> Any:
        """Send a request; returns its id (wait for the answer with wait())."""
        msg_id = next(self._ids) if msg_id is None else msg_id
        self.send({"id": msg_id, "method": method, **({} if params is None else {"params": params})})
        return msg_id

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"method": method, **({} if params is None else {"params": params})})

    def call(self, method: str, params: Any = None, timeout: float = 30) -> dict:
        """Request and wait: the whole response message ("result" or "error")."""
        return self.wait(self.request(method, params), timeout)

    # -- receiving -----------------------------------------------------------------------
    def wait(self, msg_id: Any, timeout: float = 30) -> dict:
        with self._cond:
            if not self._cond.wait_for(lambda: msg_id in self.responses or self._eof, timeout):
                raise TimeoutError(f"no response to request {msg_id!r} within {timeout}s{self._tail()}")
            if msg_id not in self.responses:
                raise ConnectionError(f"server closed stdout before answering {msg_id!r}{self._tail()}")
            return self.responses.pop(msg_id)

    def wait_for_notification(self, predicate, timeout: float = 30) -> dict:
        with self._cond:
            found: list[dict] = []

            def seen() -> bool:
                found[:] = [m for m in self.notifications if predicate(m)]
                return bool(found) or self._eof

            if not self._cond.wait_for(seen, timeout) or not found:
                raise TimeoutError(f"no matching notification within {timeout}s{self._tail()}")
            return found[0]

    def _read_loop(self) -> None:
        out = self.proc.stdout
        try:
            while True:
                length = None
                while True:  # headers, up to the empty line
                    line = out.readline()
                    if not line:
                        return
                    if not line.strip():
                        if length is not None:
                            break
                        continue
                    name, _, value = line.decode("ascii", "replace").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = out.read(length)
                if len(body) < length:
                    return
                self._dispatch(body)
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _dispatch(self, body: bytes) -> None:
        try:
            msg = json.loads(body)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            with self._cond:
                self.garbage.append(body)
            return
        if "method" in msg and "id" in msg:  # a request from the server: accept it
            result: Any = None
            if msg["method"] == "workspace/configuration":
                result = [None for _ in (msg.get("params") or {}).get("items", [])]
            try:
                self.send({"id": msg["id"], "result": result})
            except OSError:
                pass
            return
        with self._cond:
            if "method" in msg:
                self.notifications.append(msg)
            else:
                self.responses[msg.get("id")] = msg
            self._cond.notify_all()

    # -- life cycle ----------------------------------------------------------------------
    def initialize(self, options: dict | None = None, capabilities: dict | None = None, timeout: float = 60) -> dict:
        reply = self.call("initialize", {"processId": os.getpid(), "rootUri": None,
                                         "capabilities": capabilities or {},
                                         "initializationOptions": options}, timeout)
        if "error" in reply:
            raise RuntimeError(f"initialize failed: {reply['error']}")
        self.notify("initialized", {})
        return reply["result"]

    def open(self, uri: str, text: str, language_id: str = "python") -> str:
        self.notify("textDocument/didOpen", {"textDocument": {
            "uri": uri, "languageId": language_id, "version": 1, "text": text}})
        return uri

    def completion(self, uri: str, line: int, character: int) -> Any:
        return self.request("textDocument/completion", {
            "textDocument": {"uri": uri}, "position": {"line": line, "character": character}})

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        """The server's resident set size (VmRSS) in kB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def stderr_text(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def _tail(self) -> str:
        text = self.stderr_text().strip()
        return f"; server stderr ends:\n{text[-2000:]}" if text else ""

    def shutdown(self, timeout: float = 30) -> int:
        """shutdown, then exit: the process's exit code."""
        reply = self.call("shutdown", None, timeout)
        if "error" in reply:
            raise RuntimeError(f"shutdown failed: {reply['error']}")
        self.notify("exit")
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Make sure the process is gone (after shutdown(), or instead of it)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self._stderr.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- the soak ------------------------------------------------------------------------------

def soak_intents(path: Path, requests: int) -> list[str]:
    """`requests` intents cycling through the CoNaLa dev intents; pass k > 1 is marked in
    the text, so the server's cache (keyed by intent) never answers instead of the model."""
    base = [" ".join(i.split()) for i in common.dev_intents(path, None)]
    return [base[i % len(base)] + (f" (pass {i // len(base) + 1})" if i >= len(base) else "")
            for i in range(requests)]


def _model_news(message: dict) -> bool:
    """The server's "model ready" log line, or its error message when the model did not load."""
    params = message.get("params") or {}
    text = str(params.get("message", ""))
    return message.get("method") in ("window/logMessage", "window/showMessage") and (
        "model ready" in text or params.get("type") == 1)


def run(args) -> dict[str, Any]:
    folder, skipped = common.model_and_conala(args)
    if skipped:
        return {"skipped": skipped}
    intents = soak_intents(args.conala, args.requests)
    uri = "file:///nl2code-soak/soak.py"
    with tempfile.TemporaryDirectory() as home, RawClient(server_command(folder), server_env(home)) as client:
        t0 = time.perf_counter()
        client.initialize({"nl2code": {"maxLatencyMs": 0}})
        ready = client.wait_for_notification(_model_news, args.timeout)
        if "model ready" not in ready["params"]["message"]:
            raise SystemExit(f"lsp_soak: {ready['params']['message']}")
        load_s = time.perf_counter() - t0
        client.open(uri, "".join(f"# {i}\n" for i in intents))
        rss = {"start": client.rss_kb()}
        warmup = min(WARMUP, len(intents))
        latencies: list[float] = []
        outcome = {"with items": 0, "empty": 0, "error": 0}
        for k, intent in enumerate(intents):
            t = time.perf_counter()
            reply = client.wait(client.completion(uri, k, len(intent) + 2), args.timeout)
            latencies.append(time.perf_counter() - t)
            if "error" in reply:
                outcome["error"] += 1
            else:
                outcome["with items" if reply["result"]["items"] else "empty"] += 1
            if k + 1 == warmup:
                rss["after warm-up"] = client.rss_kb()
        rss["end"] = client.rss_kb()
        exit_code = client.shutdown(args.timeout)
    blocks = [{"requests": f"{b + 1}-{min(b + BLOCK, len(latencies))}",
               "p50_ms": 1000 * statistics.median(latencies[b:b + BLOCK]),
               "p95_ms": 1000 * common.percentile(latencies[b:b + BLOCK], 95)}
              for b in range(0, len(latencies), BLOCK)]
    growth = (rss["end"] - rss["after warm-up"]) / rss["after warm-up"]
    return {"model": str(folder), "conala": str(args.conala), "requests": len(intents), "warmup": warmup,
            "load_s": load_s,
            "outcome": outcome, "rss_kb": rss, "growth_after_warmup": growth, "blocks": blocks,
            "exit_code": exit_code}


def report(r: dict[str, Any]) -> str:
    out = ["## nl2code-lsp soak (completions over raw JSON-RPC, stdio)", "", common.polluted_note()]
    if "skipped" in r:
        return "\n".join(out + [f"Not measured: {r['skipped']}."]) + "\n"
    verdict = "within" if r["growth_after_warmup"] < 0.10 else "**over**"
    out += [f"Model {r['model']}; {r['requests']} sequential completions on CoNaLa dev intents from "
            f"{r['conala']} (cycled; later passes marked, so every request generates). Model loaded in "
            f"{r['load_s']:.1f} s.", "",
            common.table(["server RSS", "MB"], [[k, v / 1024] for k, v in r["rss_kb"].items()]), "",
            f"- Growth after warm-up (the first {r['warmup']} requests): {100 * r['growth_after_warmup']:+.1f}% "
            f"({verdict} the 10% goal)" + ("." if r["requests"] > r["warmup"] else
                                          f"; but no request came after it: use --requests > {WARMUP}."),
            f"- Answers: {r['outcome']['with items']} with items, {r['outcome']['empty']} empty, "
            f"{r['outcome']['error']} errors; shutdown + exit code {r['exit_code']}.", "",
            common.table(["requests", "p50 ms", "p95 ms"], [[b["requests"], b["p50_ms"], b["p95_ms"]]
                                                            for b in r["blocks"]])]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=2000, help="completions to send (default 2000)")
    common.add_model_option(p)
    common.add_conala_options(p, limit=False)
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for any one answer")
    return common.run_main(p, run, report, requests=50)

if __name__ == "__main__":
    main()
