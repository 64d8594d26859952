"""The language server's weak spots (issue 16, items 2, 4 and 9): hostile model folders,
the TCP mode, huge numbers in settings, positions inside a character, big documents, and
`exit` without `shutdown`.

Server processes run with a memory cap, and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("nl2code_lsp") is None:
    sys.path.insert(0, str(ROOT / "lsp"))

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from benchmarks.lsp_soak import RawClient, frame
from conftest import code_env
from nl2code_lsp import convert, document, text
from nl2code_lsp.host import ModelHost, ModelLoadError
from nl2code_lsp.settings import Settings
from nl2code_lsp.text import Target

SORT = "sort list `xs` in descending order"
WAIT = 300
SERVER_MEM_MB = 6000

CAPPED = ("import resource, runpy, sys; cap = int(sys.argv[1]) << 20; "
          "resource.setrlimit(resource.RLIMIT_AS, (cap, cap)); sys.argv = ['nl2code-lsp'] + sys.argv[2:]; "
          "runpy.run_module('nl2code_lsp', run_name='__main__')")


def server_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", CAPPED, str(SERVER_MEM_MB), *args]


def spawn(tmp_path: Path, *args: str) -> RawClient:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return RawClient(server_cmd(*args), code_env(NL2CODE_HOME=str(home), PYTHONWARNINGS="ignore"), cwd=tmp_path)


def completion(client: RawClient, uri: str, line: int, col: int) -> dict:
    return client.wait(client.completion(uri, line, col), WAIT)


# -- item 2: a hostile modelPath neither jams the server nor blocks a later load -----------

def hostile_folder(tiny_model: Path, tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / f"hostile-{kind}"
    shutil.copytree(tiny_model, folder)
    (folder / "manifest.json").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "manifest.json")
    else:
        os.symlink("/dev/stdin", folder / "manifest.json")
    return folder


def test_hostile_model_path_then_back_to_the_default(tiny_model, tmp_path):
    """modelPath -> a folder whose manifest is a link to /dev/stdin (the loader read the
    server's own protocol input) or a FIFO (the single loader thread blocked forever, and
    switching back to null never recovered): each is an error response now, and setting
    modelPath back to null serves the --model again."""
    with spawn(tmp_path, "--model", str(tiny_model)) as client:
        client.initialize({"nl2code": {"maxLatencyMs": 0}})
        uri = client.open("file:///h/check.py", f"xs = [3, 1, 2]\n# {SORT}\n")
        for kind, words in (("stdin-link", "symbolic link"), ("fifo", "FIFO")):
            folder = hostile_folder(tiny_model, tmp_path, kind)
            client.notify("workspace/didChangeConfiguration", {"settings": {"nl2code": {"modelPath": str(folder)}}})
            reply = completion(client, uri, 1, len(SORT) + 2)
            assert "error" in reply, reply
            assert words in reply["error"]["message"] and "\n" not in reply["error"]["message"]
        client.notify("workspace/didChangeConfiguration", {"settings": {"nl2code": {"modelPath": None}}})
        reply = completion(client, uri, 1, len(SORT) + 2)
        assert reply["result"]["items"][0]["textEdit"]["newText"] == "\nxs.sort(reverse=True)"
        assert client.shutdown(WAIT) == 0


def test_a_stuck_load_does_not_block_the_next_one(monkeypatch):
    """One loader thread served every load: a load that never returned held up all later
    ones. Each load now has its own thread."""
    release = threading.Event()

    def fake_load(path):
        if path == "stuck":
            release.wait(60)
            raise ModelLoadError("nl2code: gave up")
        return f"model at {path}"

    host = ModelHost()
    monkeypatch.setattr(host, "_load", fake_load)
    try:
        stuck = host.load(Settings(model_path="stuck"))
        good = host.load(Settings(model_path="good"))
        assert good.result(timeout=30) == "model at good"
        assert not stuck.done()
        assert asyncio.run(host.generator(5)) == "model at good"
    finally:
        release.set()
        host.shutdown()


# -- item 4: --tcp serves one client --------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _connect(port: int, deadline: float) -> socket.socket:
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=5)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _send(sock: socket.socket, message: dict) -> None:
    sock.sendall(frame({"jsonrpc": "2.0", **message}))


_unread: dict[int, bytes] = {}  # bytes received after the message returned, per socket


def _recv(sock: socket.socket, timeout: float = WAIT) -> dict | None:
    """The next message, or None when the server closed the connection. Bytes of the next
    message that arrived in the same read are kept for the next call."""
    sock.settimeout(timeout)
    buf = _unread.pop(id(sock), b"")

    def more() -> bool:
        nonlocal buf
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed while our bytes were unread
            return False
        buf += chunk
        return bool(chunk)

    while b"\r\n\r\n" not in buf:
        if not more():
            return None
    head, _, body = buf.partition(b"\r\n\r\n")
    length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < length:
        if not more():
            return None
        head, _, body = buf.partition(b"\r\n\r\n")
    _unread[id(sock)] = body[length:]
    return json.loads(body[:length])


def _call(sock: socket.socket, msg_id: int, method: str, params) -> dict:
    _send(sock, {"id": msg_id, "method": method, "params": params})
    while True:
        msg = _recv(sock)
        assert msg is not None, f"connection closed before the answer to {method}"
        if msg.get("id") == msg_id and "method" not in msg:
            return msg


def test_tcp_serves_one_client_and_survives_probes(tmp_path):
    port = _free_port()
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(server_cmd("--tcp", f"127.0.0.1:{port}"), env=code_env(NL2CODE_HOME=str(home)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + WAIT
        _connect(port, deadline).close()  # a port probe: connects and hangs up without a word
        time.sleep(0.5)
        assert proc.poll() is None, "a port probe shut the server down"
        a = _connect(port, deadline)
        init = _call(a, 1, "initialize", {"processId": None, "rootUri": None, "capabilities": {},
                                          "initializationOptions": {"nl2code": {"modelPath": "/nonexistent"}}})
        assert "capabilities" in init["result"]
        _send(a, {"method": "initialized", "params": {}})
        b = _connect(port, deadline)  # a second client while the first is in session
        _send(b, {"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": None,
                                                              "capabilities": {}}})
        assert _recv(b, 30) is None  # refused: closed without a byte of anyone's traffic
        b.close()
        _connect(port, deadline).close()  # another probe, during the session
        reply = _call(a, 2, "workspace/executeCommand",
                      {"command": "nl2code.generate", "arguments": ["print 'secret-of-a'"]})
        assert "error" in reply and "/nonexistent" in reply["error"]["message"]  # a's own answer
        assert proc.poll() is None
        assert "error" not in _call(a, 3, "shutdown", None)
        _send(a, {"method": "exit"})
        assert proc.wait(WAIT) == 0  # the session ended: the server ends with it
        a.close()
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


# -- item 9: initialization options, positions, big documents, exit ------------------------

def test_huge_numbers_in_initialization_options(tmp_path):
    """1e400 is valid JSON (it parses as inf): it failed `initialize` with the server's
    traceback in the error sent to the client."""
    with spawn(tmp_path) as client:
        body = (b'{"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"processId": null, '
                b'"rootUri": null, "capabilities": {}, "initializationOptions": {"nl2code": '
                b'{"n": 1e400, "beam": -1e400, "maxLatencyMs": 1e400}}}}')
        client.send_bytes(frame(body))
        reply = client.wait(1, WAIT)
        assert "error" not in reply, reply
        assert "capabilities" in reply["result"]
        warnings = [m for m in client.notifications if m["method"] == "window/logMessage"]
        assert any("nl2code.n" in m["params"]["message"] for m in warnings)
        assert client.shutdown(WAIT) == 0


def test_error_responses_carry_no_traceback(monkeypatch):
    from pygls.exceptions import JsonRpcInternalError

    from nl2code_lsp.server import build_server

    sent = []
    ls = build_server()
    monkeypatch.setattr(type(ls.protocol).__mro__[1], "_send_response",
                        lambda self, msg_id, result=None, error=None: sent.append(error))
    try:
        raise ValueError("boom")
    except ValueError:
        error = JsonRpcInternalError.of(sys.exc_info()).to_response_error()
    assert error.data and "traceback" in error.data
    ls.protocol._send_response(1, None, error)
    assert sent[0].data is None and "boom" in sent[0].message


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8"])
def test_completion_range_never_splits_a_character(encoding):
    """A position inside a surrogate pair (UTF-16) or a multi-byte character (UTF-8) became
    the start of the replaced range: accepting the completion cut the character in two."""
    codec = PositionCodec(encoding=types.PositionEncodingKind.Utf16 if encoding == "utf-16"
                          else types.PositionEncodingKind.Utf8)
    line = "# sort \U0001F600 list `xs`"
    target = Target("sort list `xs`", 0, "", True, line)
    units = line.encode("utf-16-le" if encoding == "utf-16" else "utf-8")
    width = 2 if encoding == "utf-16" else 1
    emoji_at = len(line[:7].encode("utf-16-le" if encoding == "utf-16" else "utf-8")) // width
    for col in range(emoji_at + 1, emoji_at + (2 if encoding == "utf-16" else 4)):  # inside the emoji
        rng, prefix = convert.placement(target, types.Position(0, col), codec)
        a, b = rng.start.character * width, rng.end.character * width
        edited = units[:a] + (prefix + "x = 1").encode(encoding + ("-le" if encoding == "utf-16" else "")) + units[b:]
        decoded = edited.decode("utf-16-le" if encoding == "utf-16" else "utf-8")  # raises if a character was split
        assert "\U0001F600" in decoded and decoded.count("list `xs`") == 1


def test_incremental_edit_inside_a_character_does_not_split_it():
    codec = PositionCodec(encoding=types.PositionEncodingKind.Utf16)
    doc = document.FastTextDocument("file:///x.py", "a\U0001F600b\nsecond\n", position_codec=codec)
    doc.apply_change(types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(0, 2), types.Position(0, 2)), text="Z"))  # between the halves
    assert doc.source == "a\U0001F600Zb\nsecond\n"


def _reference_edit(source: str, start: tuple[int, int], end: tuple[int, int], new: str) -> str:
    lines = source.split("\n")

    def offset(line: int, col: int) -> int:
        if line >= len(lines):
            return len(source)
        return sum(len(x) + 1 for x in lines[:line]) + min(col, len(lines[line]))

    a, b = offset(*start), offset(*end)
    return source[:a] + new + source[b:]


def test_document_edits_do_not_split_the_whole_document(monkeypatch):
    """pygls applied each keystroke by splitting the whole document into lines (a
    million-line file: ~150 ms per keystroke). The edit must give the same text without
    ever computing the document's line list."""
    def no_lines(self):
        raise AssertionError("the whole document was split into lines")

    monkeypatch.setattr(document.FastTextDocument, "lines", property(no_lines))
    rng = random.Random(7)
    source = "".join(f"line {i} {'é' * (i % 3)}\n" for i in range(3000))
    doc = document.FastTextDocument("file:///big.py", source, position_codec=PositionCodec())
    for _ in range(200):
        l1 = rng.randrange(3005)
        l2 = min(l1 + rng.randrange(3), 3005)
        c1, c2 = rng.randrange(12), rng.randrange(12)
        if l1 == l2 and c2 < c1:
            c1, c2 = c2, c1
        new = rng.choice(["", "x", "ab\ncd", "\n", "é"])
        expected = _reference_edit(doc.source, (l1, c1), (l2, c2), new)
        doc.apply_change(types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(l1, c1), types.Position(l2, c2)), text=new))
        assert doc.source == expected


class CountingStr(str):
    finds = 0

    def find(self, *args):
        CountingStr.finds += 1
        return super().find(*args)


def test_finding_a_line_near_the_end_of_a_million_lines_is_not_a_million_steps():
    source = CountingStr("value = compute(value)\n" * 1_000_000 + "# sort list `xs`\n")
    CountingStr.finds = 0
    first, lines = text.lines_around(source, 1_000_000, before=1, after=0)
    assert lines == ["value = compute(value)", "# sort list `xs`"] and first == 999_999
    assert CountingStr.finds < 5000  # a Python step per line was a million
    assert text.line_start(source, 1_000_001) == len(source)  # the empty last line
    assert text.line_start(source, 1_000_002) is None
    rng = random.Random(3)  # from the top, forward and backward from the remembered line
    small = "".join("x" * rng.randrange(3) + "\n" for _ in range(20_000))
    starts = [0] + [i + 1 for i, ch in enumerate(small) if ch == "\n"]
    for line in [rng.randrange(len(starts)) for _ in range(300)]:
        assert text.line_start(small, line) == starts[line]


def test_keystrokes_near_the_end_scan_only_near_the_cursor(monkeypatch):
    """After the first lookup, typing at line 999,998 and completing there must not count
    its way down from the top again (that was a million Python steps per keystroke)."""
    scanned: list[int] = []
    scan, back = text._scan, text._scan_back
    monkeypatch.setattr(text, "_scan", lambda source, pos, n: scanned.append(n) or scan(source, pos, n))
    monkeypatch.setattr(text, "_scan_back", lambda source, pos, n: scanned.append(n) or back(source, pos, n))
    doc = document.FastTextDocument("file:///big.py", "value = compute(value)\n" * 1_000_000,
                                    position_codec=PositionCodec())
    line = 999_998

    def type_at(col: int, ch: str) -> None:
        doc.apply_change(types.TextDocumentContentChangePartial(
            range=types.Range(types.Position(line, col), types.Position(line, col)), text=ch))

    type_at(0, "#")  # the first keystroke finds the line from the top
    scanned.clear()
    for col, ch in enumerate(" sort list", start=1):
        type_at(col, ch)
        first, lines = text.lines_around(doc.source, line, before=1, after=0)
        assert lines[-1].startswith("#" + " sort list"[:col])
    assert scanned and max(scanned) <= 1


def test_exit_without_shutdown_ends_with_code_1(tmp_path):
    """LSP spec: `exit` before `shutdown` exits with 1 (it returned 0)."""
    with spawn(tmp_path) as client:
        client.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, WAIT)
        client.notify("exit")
        assert client.proc.wait(WAIT) == 1
