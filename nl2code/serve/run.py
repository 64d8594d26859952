"""Running the server: sockets, uvicorn, the state file, --background and stop.

One process serves TCP (127.0.0.1:8765 by default) and a unix socket in NL2CODE_HOME (mode
0600, what the CLI's fast path talks to). Binding TCP to anything but a loopback address
needs a token. SIGTERM or SIGINT stop it gracefully: no new connections, requests in
flight and queued jobs finish (bounded by the graceful timeout), the socket and the state
file are removed.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from nl2code import client
from nl2code.errors import UsageError
from nl2code.paths import home

DEFAULT_PORT = 8765
HEADER_TIMEOUT_S = 10.0
UNIX_PATH_MAX = 107


def state_path() -> Path:
    return home() / "server.json"


def log_path() -> Path:
    return home() / "server.log"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise UsageError(f"binding to {host} exposes the model beyond this machine: give a token "
                         f"(--token or NL2CODE_TOKEN), or bind to 127.0.0.1")
    if token is not None and len(token) < 16:
        raise UsageError("the token is too short: use at least 16 characters (e.g. from `openssl rand -hex 16`)")


def tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UsageError(f"{host}:{port} is in use: pick another --port (0 = any free port)") from None
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def unix_socket(path: Path) -> socket.socket:
    if len(str(path)) > UNIX_PATH_MAX:
        raise UsageError(f"the socket path {path} is longer than {UNIX_PATH_MAX} bytes: set a shorter NL2CODE_HOME")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        info = client.health(f"unix:{path}")
        if info is not None:
            raise UsageError(f"a server already runs on {path} (pid {info.get('pid')}): `nl2code serve stop` first")
        path.unlink()  # stale: left by a server that was killed
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # created 0600: only this user reaches the model without a token
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def _protocol():
    """uvicorn's h11 protocol with a deadline for the first request's headers: a client
    that connects and then trickles (or sends nothing) is cut off after HEADER_TIMEOUT_S."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._no_request)

        def _no_request(self) -> None:
            if self.cycle is None and not self.transport.is_closing():
                self.transport.close()

        def connection_lost(self, exc):
            self._header_timer.cancel()
            super().connection_lost(exc)

    return HeaderDeadline


def uvicorn_server(app, max_connections: int = 1024, graceful_s: float = 30.0):
    """A uvicorn.Server for the app; .run(sockets=...) serves until SIGTERM/SIGINT (or should_exit)."""
    import uvicorn

    config = uvicorn.Config(app, http=_protocol(), lifespan="on", log_level="warning", access_log=False,
                            limit_concurrency=max_connections, timeout_keep_alive=5,
                            timeout_graceful_shutdown=graceful_s, h11_max_incomplete_event_size=16 * 1024,
                            server_header=False)
    return uvicorn.Server(config)


def serve(model: str | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT, token: str | None = None,
          unix: bool = True, precision: str | None = None, max_queue: int = 32, timeout_s: float = 30.0,
          max_body_bytes: int = 64 * 1024, max_connections: int = 1024, graceful_s: float = 30.0,
          log: bool = True, announce: Callable[[str], None] = print) -> None:
    """Load the model, bind, serve until SIGTERM/SIGINT. Blocks."""
    try:
        import uvicorn  # noqa: F401  (the serve extra)

        from nl2code.serve.app import Settings, build_app
    except ImportError as exc:
        raise UsageError(f"the server needs the serve extra ({exc.name} is missing): "
                         f"pip install 'nl2code[serve]'") from None
    from nl2code.engine import Generator

    check_bind(host, token)
    gen = Generator.from_checkpoint(model, precision=precision)
    try:  # the first call pays for lazy imports and allocations; pay it before serving
        gen.generate("print hello world", gen.languages[0], n=1)
    except Exception:
        pass
    sockets = [tcp_socket(host, port)]
    sock_path = client.socket_path() if unix else None
    if sock_path is not None:
        try:
            sockets.append(unix_socket(sock_path))
        except BaseException:
            sockets[0].close()
            raise
    bound = sockets[0].getsockname()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"
    settings = Settings(token=token, max_body_bytes=max_body_bytes, timeout_s=timeout_s, max_queue=max_queue, log=log)
    state = {"pid": os.getpid(), "url": url, "socket": str(sock_path) if sock_path else None,
             "model": str(gen.path), "precision": gen.precision}
    _write_state(state)
    announce(f"nl2code: serving {gen.path} ({gen.precision}) on {url}"
             + (f" and {sock_path}" if sock_path else "") + f" (pid {os.getpid()})")
    # uvicorn handles SIGTERM (graceful shutdown), then re-raises it once done: exit cleanly
    # then, through the finally below, instead of dying with the socket left behind
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        uvicorn_server(build_app(gen, settings), max_connections, graceful_s).run(sockets=sockets)
    finally:
        signal.signal(signal.SIGTERM, previous)
        for s in sockets:
            s.close()
        if sock_path is not None:
            sock_path.unlink(missing_ok=True)
        _remove_state(os.getpid())


def _write_state(state: dict) -> None:
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)


def _remove_state(pid: int) -> None:
    try:
        if json.loads(state_path().read_text()).get("pid") == pid:
            state_path().unlink()
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_background(args: list[str], wait_s: float = 180.0) -> dict:
    """Start `nl2code serve ARGS` detached, wait until it answers; -> its health record."""
    sock = f"unix:{client.socket_path()}"
    running = client.health(sock)
    if running is not None:
        raise UsageError(f"a server already runs (pid {running.get('pid')}, {running.get('model')}): "
                         f"`nl2code serve stop` first")
    log = log_path()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "nl2code", "serve", *args], stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        info = client.health(sock)
        if info is not None and info.get("pid") == proc.pid:
            return info
        if proc.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
            raise UsageError(f"the server exited with status {proc.returncode}"
                             + (f": {tail[0]}" if tail else f" (see {log})"))
        time.sleep(0.1)
    proc.terminate()
    raise UsageError(f"the server did not answer within {wait_s:g} s (see {log})")


def stop(wait_s: float = 60.0) -> int | None:
    """Stop the local server (SIGTERM, graceful). -> its pid, or None when none ran."""
    info = client.health(f"unix:{client.socket_path()}")
    if info is None or not isinstance(info.get("pid"), int):
        return None
    pid = info["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return pid
        try:  # our own child (a test): reap it so it does not linger as a zombie
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return pid
        except ChildProcessError:
            pass
        time.sleep(0.05)
    raise UsageError(f"the server (pid {pid}) did not stop within {wait_s:g} s")
