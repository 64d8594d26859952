"""A small client for a local nl2code server, on the standard library alone.

The CLI asks the warm server first and falls back to loading the model in-process when
none answers, so this module must stay cheap to import: no torch, no third-party packages.

Where the server is: NL2CODE_SERVER when set ("off" disables the server path; a socket
path, "unix:PATH", or "http://HOST:PORT"), else the unix socket $NL2CODE_HOME/server.sock
that `nl2code serve` creates. NL2CODE_TOKEN, when set, is sent as a bearer token.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

CONNECT_TIMEOUT_S = 1.0
READ_TIMEOUT_S = 120.0
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
OFF = ("", "0", "off", "no", "none", "false")


class Unavailable(Exception):
    """No server answered (none running, a stale socket, a refused connection)."""


def socket_path() -> Path:
    from nl2code.paths import home

    return home() / "server.sock"


def address() -> str | None:
    """The server to try, or None when the server path is switched off."""
    env = os.environ.get("NL2CODE_SERVER")
    if env is None:
        return str(socket_path())
    if env.strip().lower() in OFF:
        return None
    return env.strip()


def _open(addr: str, timeout: float) -> socket.socket:
    """A connected socket to the server (unix path, unix:PATH or http://HOST:PORT)."""
    if addr.startswith("http://"):
        parts = urlsplit(addr)
        sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), CONNECT_TIMEOUT_S)
    elif addr.startswith("https://"):
        raise Unavailable("https servers are not supported by the CLI's fast path")
    else:
        path = addr[5:] if addr.startswith("unix:") else addr
        if not os.path.exists(path):
            raise Unavailable(f"no server socket at {path}")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(CONNECT_TIMEOUT_S)
        try:
            sock.connect(path)
        except BaseException:
            sock.close()
            raise
    sock.settimeout(timeout)
    return sock


def _exchange(sock: socket.socket, method: str, path: str, data: bytes | None, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with Connection: close (plain sockets: http.client and ssl cost
    more to import than the whole exchange takes)."""
    head = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close", "Accept: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    if data is not None:
        head.append(f"Content-Length: {len(data)}")
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (data or b""))
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if sum(map(len, chunks)) > MAX_RESPONSE_BYTES:
            raise Unavailable("the server's answer is too large")
    raw = b"".join(chunks)
    header, sep, body = raw.partition(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Unavailable("the server's answer is not HTTP")
    hdrs = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        hdrs[key.strip().lower()] = value.strip()
    if "chunked" in hdrs.get("transfer-encoding", "").lower():
        body = _unchunk(body)
    elif hdrs.get("content-length", "").isdigit():
        if len(body) < int(hdrs["content-length"]):
            raise Unavailable("the server's answer was cut short")
        body = body[: int(hdrs["content-length"])]
    return int(parts[1]), hdrs, body


def _unchunk(body: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            raise Unavailable("the server's answer was cut short")
        size = int(body[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(body[end + 2: end + 2 + size])
        pos = end + 2 + size + 2


def call(method: str, path: str, body: dict[str, Any] | None = None, addr: str | None = None,
         timeout: float = READ_TIMEOUT_S) -> tuple[int, dict[str, str], Any]:
    """-> (status, headers, decoded JSON or text). Raises Unavailable when nothing answers."""
    addr = addr or address()
    if addr is None:
        raise Unavailable("the server path is off (NL2CODE_SERVER)")
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("NL2CODE_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    try:
        sock = _open(addr, timeout)
        try:
            status, hdrs, raw = _exchange(sock, method, path, data, headers)
        finally:
            sock.close()
    except (OSError, ValueError) as exc:
        raise Unavailable(str(exc)) from None
    if hdrs.get("content-type", "").startswith("application/json"):
        try:
            return status, hdrs, json.loads(raw)
        except ValueError:
            raise Unavailable("the server sent malformed JSON") from None
    return status, hdrs, raw.decode("utf-8", "replace")


def health(addr: str | None = None, timeout: float = 2.0) -> dict[str, Any] | None:
    """The server's health record, or None when no server answers."""
    try:
        status, _, data = call("GET", "/v1/health", addr=addr, timeout=timeout)
    except Unavailable:
        return None
    return data if status == 200 and isinstance(data, dict) else None


def generate(intent: str, lang: str, n: int, beam: int, model: str | None, precision: str | None,
             log: bool = True) -> tuple[int, dict[str, Any]] | None:
    """Ask the server; (status, body) for an answer the CLI should give (200: the --json
    record; 400: a usage error), None when the caller should generate in-process (no
    server, busy, timed out, another model, any surprise)."""
    from nl2code.paths import resolve_model

    body = {"intent": intent, "lang": lang, "n": n, "beam": beam, "log": log, "source": "cli",
            "model": str(resolve_model(model).resolve())}
    if precision:
        body["precision"] = precision
    try:
        status, _, data = call("POST", "/v1/generate", body)
    except Unavailable:
        return None
    if status in (200, 400) and isinstance(data, dict) and ("candidates" in data or status == 400):
        return status, data
    return None


# -- the CLI's fast path: `nl2code [options] "intent"` answered before typer is imported ----

_VALUE_OPTS = {"-n": "num", "--num": "num", "-l": "lang", "--lang": "lang", "-b": "beam", "--beam": "beam",
               "-m": "model", "--model": "model", "--precision": "precision"}
_FLAGS = {"--json": "json", "--no-log": "no_log"}
tried = False  # set once this process asked a server: the full CLI does not ask again


def _parse(argv: list[str]) -> dict[str, Any] | None:
    """The plain generate form, or None for anything else (the full CLI handles it).

    One positional argument holding a space (a command name never does), options from the
    generate command only, values in range: what typer would accept and route to generate.
    """
    opts: dict[str, Any] = {"num": 1, "lang": "python", "beam": 5, "json": False, "no_log": False,
                            "model": os.environ.get("NL2CODE_MODEL") or None,
                            "precision": os.environ.get("NL2CODE_PRECISION") or None}
    intent = None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in _FLAGS:
            opts[_FLAGS[arg]] = True
        elif arg.split("=", 1)[0] in _VALUE_OPTS and arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            opts[_VALUE_OPTS[name]] = value
        elif arg in _VALUE_OPTS:
            if i + 1 >= len(argv):
                return None
            opts[_VALUE_OPTS[arg]] = argv[i + 1]
            i += 1
        elif arg.startswith("-") or intent is not None or " " not in arg.strip():
            return None
        else:
            intent = arg
        i += 1
    if intent is None:
        return None
    try:
        opts["num"], opts["beam"] = int(opts["num"]), int(opts["beam"])
    except (TypeError, ValueError):
        return None
    if not (1 <= opts["num"] <= 20 and 1 <= opts["beam"] <= 32):  # the engine widens the beam to num
        return None
    opts["intent"] = intent
    return opts


def fast_generate(argv: list[str]) -> int | None:
    """Answer through a warm server without importing typer, rich or torch; the exit code,
    or None when the full CLI must run (another form, no server, a terminal to colour)."""
    global tried
    opts = _parse(argv)
    if opts is None or (sys.stdout.isatty() and not os.environ.get("NO_COLOR")):
        return None
    from nl2code import history

    log = history.enabled(opts["no_log"])
    got = generate(opts["intent"], opts["lang"], opts["num"], opts["beam"], opts["model"], opts["precision"], log)
    tried = True
    if got is None:
        return None
    status, rec = got
    if status != 200:
        sys.stderr.write(f"nl2code: error: {' '.join(str(rec.get('error')).split())}\n")
        return 2
    cands = rec["candidates"]
    if opts["json"]:
        sys.stdout.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if not cands:
        sys.stderr.write(f"nl2code: error: {' '.join(str(rec.get('error')).split())}\n")
        return 1
    for c in cands:
        if c.get("danger"):
            sys.stderr.write(f"nl2code: warning: a candidate looks destructive ({'; '.join(c['danger'])}); "
                             f"review before running it\n")
            break
    if not opts["json"]:
        sys.stdout.write("\n# ---\n".join(c["code"] + "\n" for c in cands))
    return 0


def entry() -> None:
    """The `nl2code` command: the fast path when it applies, else the full CLI."""
    if sys.stdout is None or sys.stdin is None or sys.stderr is None:
        from nl2code.cli import entry as full  # a closed stream: the full CLI says so in one line

        full()
        return
    try:
        code = fast_generate(sys.argv[1:])
    except KeyboardInterrupt:
        sys.stderr.write("nl2code: error: interrupted\n")
        sys.exit(130)
    if code is not None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:  # the reader went away: end quietly, as the full CLI does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        sys.exit(code)
    from nl2code.cli import entry as full

    full()
