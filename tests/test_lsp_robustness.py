"""nl2code-lsp under hostile and heavy traffic, driven over raw stdio (no LSP library).

benchmarks.lsp_soak.RawClient frames every message by hand, so a test can send what no
well-behaved client would: bodies that are not JSON, Content-Length headers that lie,
unknown methods, requests before `initialize`, params of the wrong shape. Every wait has
a timeout, so a server that stops answering fails a test instead of hanging it. After
each abuse the server must still answer a normal completion. Then load: a 5 MB document,
a storm of 200 concurrent completions with 90 of them cancelled, and a short soak of
200 real generations; finally `shutdown` + `exit` must end the process with code 0.

Most tests share one server (module scope: the tiny model loads once); the tests of the
start and end of a server's life get one of their own.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ holds the client
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("nl2code_lsp") is None:
    sys.path.insert(0, str(ROOT / "lsp"))

from benchmarks.lsp_soak import RawClient, frame, server_command, server_env
from conftest import TOY

SORT = "sort list `xs` in descending order"
WAIT = 120  # seconds: generous, a loaded CI machine is slow; a dead server fails at once
SERVER_NOT_INITIALIZED, METHOD_NOT_FOUND, INVALID_PARAMS, REQUEST_CANCELLED = -32002, -32601, -32602, -32800
INVALID_REQUEST = -32600


def spawn(home: Path, model: Path | None = None) -> RawClient:
    return RawClient(server_command(model), server_env(home), cwd=home.parent)


def completion_params(uri: str, line: int, character: int) -> dict:
    return {"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}


def items(reply: dict) -> list[dict]:
    assert "error" not in reply, reply["error"]
    return reply["result"]["items"]


@pytest.fixture(scope="module")
def lsp(tiny_model, tmp_path_factory):
    """One initialized server with the tiny model loaded, and a document to check it with."""
    home = tmp_path_factory.mktemp("robust") / "home"
    home.mkdir()
    client = spawn(home, tiny_model)
    client.initialize({"nl2code": {"maxLatencyMs": 0}})
    client.open("file:///robust/check.py", f"xs = [3, 1, 2]\n# {SORT}\n")
    assert_serving(client)  # waits for the model to load
    yield client
    client.close()


def assert_serving(client: RawClient) -> None:
    """The server is alive and still answers a normal completion with the right snippet."""
    reply = client.wait(client.completion("file:///robust/check.py", 1, len(SORT) + 2), WAIT)
    assert items(reply)[0]["textEdit"]["newText"] == "\nxs.sort(reverse=True)"
    assert client.alive()


# -- the start and the end of a server's life ---------------------------------------------

def test_requests_before_initialize_are_refused_then_shutdown_exit_is_clean(tmp_path):
    """LSP spec: a request before `initialize` gets ServerNotInitialized (-32002), a
    notification is dropped; then `initialize` works and shutdown + exit gives code 0."""
    with spawn(tmp_path / "home") as client:
        early = client.call("textDocument/completion", completion_params("file:///early.py", 0, 3), WAIT)
        assert early["error"]["code"] == SERVER_NOT_INITIALIZED
        assert client.call("nl2code/noSuchMethod", {}, WAIT)["error"]["code"] == SERVER_NOT_INITIALIZED
        client.open("file:///early.py", f"# {SORT}\n")  # dropped, not an error
        # no `initialized` notification: this server never needs its (missing) model
        result = client.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, WAIT)
        assert result["result"]["capabilities"]["completionProvider"] is not None
        assert not [m for m in client.notifications if m["method"] == "window/showMessage"]
        # the early didOpen was dropped: the document is unknown, so the answer is empty
        assert items(client.call("textDocument/completion", completion_params("file:///early.py", 0, 3), WAIT)) == []
        assert client.shutdown(WAIT) == 0


def test_stdio_flag_is_accepted_as_the_default_transport(tmp_path):
    """vscode-languageclient (TransportKind.stdio) and other clients append `--stdio`; the
    server must serve on stdio with it, as without it."""
    home = tmp_path / "home"
    with RawClient(server_command() + ["--stdio"], server_env(home), cwd=tmp_path) as client:
        result = client.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, WAIT)
        assert result["result"]["serverInfo"]["name"] == "nl2code-lsp"
        assert client.shutdown(WAIT) == 0


def test_stdio_and_tcp_together_are_a_usage_error(tmp_path):
    proc = subprocess.run(server_command() + ["--stdio", "--tcp", "127.0.0.1:0"], env=server_env(tmp_path / "home"),
                          capture_output=True, text=True, timeout=WAIT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "nl2code-lsp: error: --stdio and --tcp exclude each other"


def test_requests_after_shutdown_are_refused_then_exit_is_clean(tmp_path):
    """LSP spec: after `shutdown` a request errors with InvalidRequest (-32600) instead of
    waiting forever; notifications are dropped; `exit` still ends the process with 0."""
    with spawn(tmp_path / "home") as client:
        client.call("initialize", {"processId": None, "rootUri": None, "capabilities": {}}, WAIT)
        assert "error" not in client.call("shutdown", None, WAIT)
        late = client.call("textDocument/completion", completion_params("file:///late.py", 0, 3), WAIT)
        assert late["error"]["code"] == INVALID_REQUEST
        assert client.call("shutdown", None, WAIT)["error"]["code"] == INVALID_REQUEST
        client.open("file:///late.py", f"# {SORT}\n")  # dropped, not an error
        client.notify("exit")
        assert client.proc.wait(WAIT) == 0


def test_absurd_content_length_does_not_kill_the_server(tmp_path):
    """A header announcing a terabyte used to kill the server (MemoryError from one read of
    that size). Now it waits for the bytes; when the client hangs up it exits cleanly."""
    with spawn(tmp_path / "home") as client:
        client.send_bytes(b"Content-Length: 1099511627776\r\n\r\n" + b'{"jsonrpc": "2.0"' * 1000)
        client.proc.stdin.close()
        assert client.proc.wait(WAIT) == 0
        assert "MemoryError" not in client.stderr_text()


# -- malformed traffic --------------------------------------------------------------------

@pytest.mark.parametrize("body", [
    b'{"jsonrpc": "2.0", "id": 7, "method": ',  # cut short
    b"\xff\xfe not utf-8",
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the parser's recursion limit
    b"null",
    b"[1, 2, 3]",
    b'{"jsonrpc": "2.0"}',
    b'{"jsonrpc": "2.0", "method": 42}',
], ids=["truncated", "not-utf8", "deep-nesting", "null", "array", "no-method", "method-not-text"])
def test_malformed_body(lsp: RawClient, body: bytes):
    lsp.send_bytes(frame(body))
    assert_serving(lsp)


def _request_body(msg_id: str) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": "nl2code/noSuchMethod"}).encode()


@pytest.mark.parametrize("kind", ["too-short", "too-long", "non-numeric", "negative", "missing"])
def test_wrong_content_length(lsp: RawClient, kind: str):
    """The lying frame is lost (and, when the length is too long, the start of the next
    one with it); the server must find the frame after that and keep serving."""
    body = _request_body(f"liar-{kind}")
    if kind == "too-short":
        lsp.send_bytes(frame(body, len(body) - 5))
    elif kind == "too-long":
        lsp.send_bytes(frame(body, len(body) + 30))
        lsp.send_bytes(frame(_request_body("eaten")))  # its first 30 bytes complete the liar
    elif kind == "non-numeric":
        lsp.send_bytes(frame(body, "forty"))
    elif kind == "negative":
        lsp.send_bytes(frame(body, -len(body)))
    else:
        lsp.send_bytes(b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n" + body)
    assert_serving(lsp)


def test_request_with_params_of_the_wrong_shape_gets_an_error(lsp: RawClient):
    """JSON-RPC answers every request; pygls used to drop one whose params did not parse."""
    bad = lsp.call("textDocument/completion", {"textDocument": 3, "position": "here"}, WAIT)
    assert bad["error"]["code"] == INVALID_PARAMS
    assert lsp.call("textDocument/completion", None, WAIT)["error"]["code"] == INVALID_PARAMS
    assert_serving(lsp)


def test_unknown_methods(lsp: RawClient):
    reply = lsp.call("nl2code/noSuchMethod", {"x": 1}, WAIT)
    assert reply["error"]["code"] == METHOD_NOT_FOUND
    assert lsp.call("$/noSuchRequest", None, WAIT)["error"]["code"] == METHOD_NOT_FOUND  # params omitted
    before = len(lsp.responses)  # answers nobody waited for, if any
    lsp.notify("nl2code/noSuchNotification", {"x": 1})  # ignored: no response, no error
    lsp.notify("$/noSuchNotification")
    assert_serving(lsp)
    assert len(lsp.responses) == before


def test_unknown_documents(lsp: RawClient):
    ghost = "file:///robust/never-opened.py"
    lsp.notify("textDocument/didChange", {
        "textDocument": {"uri": ghost, "version": 2},
        "contentChanges": [{"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
                            "text": f"# {SORT}\n"}]})
    lsp.notify("textDocument/didChange", {"textDocument": {"uri": ghost, "version": 3},
                                          "contentChanges": [{"text": f"# {SORT}\n"}]})
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": ghost}})
    assert items(lsp.call("textDocument/completion", completion_params(ghost, 0, 5), WAIT)) == []
    inline = lsp.call("textDocument/inlineCompletion", {
        **completion_params(ghost, 0, 5), "context": {"triggerKind": 1}}, WAIT)
    assert inline["result"]["items"] == []
    assert_serving(lsp)


def test_five_megabyte_document(lsp: RawClient):
    filler = "value = compute(value)  # keep going\n" * (5 * 2**20 // 37 + 1)
    uri = lsp.open("file:///robust/big.py", filler + f"# {SORT}\n")
    line = filler.count("\n")
    reply = lsp.wait(lsp.completion(uri, line, len(SORT) + 2), WAIT)
    assert items(reply)[0]["textEdit"]["newText"] == "\nxs.sort(reverse=True)"
    lsp.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": line + 1, "character": 0}, "end": {"line": line + 1, "character": 0}},
         "text": "# reverse list `xs`\n"}]})
    reply = lsp.wait(lsp.completion(uri, line + 1, len("# reverse list `xs`")), WAIT)
    assert items(reply)[0]["textEdit"]["newText"] == "\nxs[::-1]"
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert_serving(lsp)


# -- load ------------------------------------------------------------------------------

def _intent_documents(lsp: RawClient, n_docs: int) -> list[tuple[str, int, int]]:
    """n_docs documents of every toy intent, one comment per line -> (uri, line, column)."""
    spots = []
    for d in range(n_docs):
        uri = lsp.open(f"file:///robust/storm{d}.py", "".join(f"# {intent}\n" for intent, _, _ in TOY))
        spots += [(uri, k, len(intent) + 2) for k, (intent, _, _) in enumerate(TOY)]
    return spots


def test_storm_of_concurrent_completions_with_cancellation(lsp: RawClient):
    """200 requests in flight at once over 25 documents (a newer request supersedes the
    older one of its document; the rest queue for the generation thread), every other one
    of the first 180 cancelled: each gets an answer, and the last ones real candidates."""
    spots = _intent_documents(lsp, 25)
    ids = []
    for i in range(200):
        uri, line, col = spots[(i * 7) % len(spots)]
        ids.append(lsp.completion(uri, line, col))
        if i % 2 and i < 180:
            lsp.notify("$/cancelRequest", {"id": ids[-1]})
    replies = [lsp.wait(i, WAIT) for i in ids]
    cancelled = [r for r in replies if "error" in r]
    assert all(r["error"]["code"] == REQUEST_CANCELLED for r in cancelled), cancelled[:3]
    results = [r["result"] for r in replies if "result" in r]
    assert len(results) + len(cancelled) == 200
    assert all(isinstance(r["items"], list) for r in results)
    assert any(r["items"] for r in results)  # the last ones are neither superseded nor cancelled
    assert_serving(lsp)


def test_soak_of_real_generations(lsp: RawClient):
    """200 completions, each for an intent the cache has not seen (numbered variants of the
    toy intents), answered one after another; n=1, beam=1 keeps it short."""
    lsp.notify("workspace/didChangeConfiguration", {"settings": {"nl2code": {"n": 1, "beam": 1}}})
    text = "".join(f"# {intent} (variant {k})\n" for k in range(10) for intent, _, _ in TOY)
    uri = lsp.open("file:///robust/soak.py", text)
    lines = text.splitlines()
    answered = 0
    for k in range(200):
        reply = lsp.wait(lsp.completion(uri, k, len(lines[k])), WAIT)
        assert isinstance(items(reply), list)
        answered += 1
    assert answered == 200 and lsp.alive()
    lsp.notify("workspace/didChangeConfiguration", {"settings": {"nl2code": {"n": None, "beam": None}}})
    assert_serving(lsp)


def test_shutdown_then_exit_ends_the_process_with_code_0(lsp: RawClient):
    assert lsp.shutdown(WAIT) == 0
