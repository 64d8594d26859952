"""`nl2code serve` (issue 20): the HTTP API on a real uvicorn (a thread, port 0 and a unix
socket in tmp), its limits and errors, the bounded queue, the token, graceful shutdown.

Most tests serve the session's tiny model; queue, timeout and shutdown tests serve a stub
whose generate() waits on an event, so they control exactly when a job ends.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from nl2code import client
from nl2code.errors import UsageError
from nl2code.history import History
from nl2code.rerank import Candidate
from nl2code.serve import run
from nl2code.serve.app import Settings, build_app

SORT = "sort list `xs` in descending order"


class Served:
    """An app on a uvicorn thread, listening on 127.0.0.1:0 and a unix socket."""

    def __init__(self, app, sock_path: Path, graceful_s: float = 10.0):
        self.tcp = run.tcp_socket("127.0.0.1", 0)
        self.unix = run.unix_socket(sock_path)
        self.sock_path = sock_path
        self.url = f"http://127.0.0.1:{self.tcp.getsockname()[1]}"
        self.server = run.uvicorn_server(app, graceful_s=graceful_s)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.tcp, self.unix]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def http(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kw)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture(scope="module")
def generator(tiny_model):
    from nl2code.engine import Generator

    return Generator.from_checkpoint(tiny_model)


@pytest.fixture
def serve(tmp_path):
    started = []

    def start(gen, **settings) -> Served:
        s = Served(build_app(gen, Settings(**settings)), tmp_path / "s.sock")
        started.append(s)
        return s

    yield start
    for s in started:
        if s.thread.is_alive():
            s.stop()


class StubGenerator:
    """generate() blocks until release(); counts calls. No model, same interface."""

    def __init__(self, path: Path):
        self.path, self.precision, self.languages = path, "float32", ["python", "bash"]
        self.gate = threading.Event()
        self.calls = 0

    def generate(self, intent, lang="python", n=5, beam=None):
        self.calls += 1
        assert self.gate.wait(30)
        return [Candidate(f"# {intent}", lang, 1.0, -0.5, True, {}, [])]


def test_generate_is_the_json_record_and_is_logged(serve, generator, tiny_model):
    s = serve(generator)
    with s.http() as http:
        r = http.post("/v1/generate", json={"intent": SORT, "n": 2})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"intent", "lang", "model", "candidates", "error"}
        assert body["candidates"][0]["code"] == "xs.sort(reverse=True)" and body["error"] is None
        assert set(body["candidates"][0]) == {"code", "score", "logprob", "parses", "danger", "low_confidence"}
        want = [c.to_dict() for c in generator.generate(SORT, "python", n=2)]
        assert body["candidates"] == want
        rec = History().get(int(r.headers["x-nl2code-record"]))
        assert rec.source == "server" and rec.intent == SORT and rec.candidates == want
        assert rec.model == str(tiny_model) and rec.latency_ms > 0
        r = http.post("/v1/generate", json={"intent": "count lines in file 'a.txt'", "lang": "sh", "log": False})
        assert r.status_code == 200 and r.json()["lang"] == "bash" and "x-nl2code-record" not in r.headers
        assert History().count() == 1
        ok = http.post("/v1/accept", json={"id": rec.id, "index": 1})
        assert ok.status_code == 200 and History().get(rec.id).accepted
        assert http.post("/v1/accept", json={"id": 10**6}).status_code == 404
        assert http.post("/v1/accept", json={"id": rec.id, "index": 9}).status_code == 400


def test_health_metrics_openapi(serve, generator):
    s = serve(generator, max_queue=7)
    with s.http() as http:
        health = http.get("/v1/health").json()
        assert health["status"] == "ok" and health["max_queue"] == 7 and health["languages"] == ["python", "bash"]
        http.post("/v1/generate", json={"intent": SORT})
        http.post("/v1/generate", content=b"{nope")
        r = http.get("/metrics")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
        lines = r.text.splitlines()
        assert 'nl2code_http_requests_total{endpoint="/v1/generate",code="200"} 1' in lines
        assert 'nl2code_http_requests_total{endpoint="/v1/generate",code="400"} 1' in lines
        assert "nl2code_generation_seconds_count 1" in lines and "nl2code_queue_capacity 7" in lines
        for line in lines:  # every sample line is `name{labels} number`
            if not line.startswith("#"):
                float(line.rsplit(" ", 1)[1])
        doc = http.get("/openapi.json").json()
        assert doc["openapi"].startswith("3.") and {"/v1/generate", "/v1/explain", "/v1/health",
                                                    "/metrics"} <= set(doc["paths"])
        r = http.get("/nowhere")
        assert r.status_code == 404 and "error" in r.json()
        assert http.get("/v1/generate").status_code == 405


@pytest.mark.parametrize("body, status, words", [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"intent": "x", "temperature": 2}', 400, "unknown field"),
    (b'{"lang": "python"}', 400, "intent is required"),
    (b'{"intent": 3}', 400, "intent must be str"),
    (b'{"intent": "x y", "n": true}', 400, "whole number"),
    (b'{"intent": "x y", "n": 0}', 400, "between 1 and 20"),
    (b'{"intent": "   "}', 400, "empty intent"),
    (b'{"intent": "x y", "lang": "cobol"}', 400, "cobol"),
    (b'{"intent": "x y", "source": "Bad Source"}', 400, "source"),
    (b'{"intent": "x y", "model": "/elsewhere"}', 409, "/elsewhere"),
    (b'\xff\xfe', 400, "not valid JSON"),
    (b"[" * 30000 + b"]" * 30000, 400, "nested too deeply"),
    (json.dumps({"intent": "a " * 6000}).encode(), 413, "intent too long"),
])
def test_bad_requests_get_one_line_json_errors(serve, generator, body, status, words):
    s = serve(generator)
    with s.http() as http:
        r = http.post("/v1/generate", content=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"]


def test_body_limits_and_slow_bodies(serve, generator):
    s = serve(generator, max_body_bytes=2048, body_timeout_s=1.0)
    with s.http() as http:
        r = http.post("/v1/generate", content=b"x" * 5000)
        assert r.status_code == 413 and "body too large" in r.json()["error"]

        def chunks():  # no Content-Length: the limit is counted while reading
            for _ in range(10):
                yield b" " * 1000

        r = http.post("/v1/generate", content=chunks())
        assert r.status_code == 413
        assert http.post("/v1/generate", json={"intent": SORT}).status_code == 200
    # a body announced and then sent a byte a second: cut off at the body deadline
    with socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=10) as c:
        c.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        t = time.monotonic()
        reply = b""
        for _ in range(20):
            try:
                c.sendall(b" ")
            except OSError:
                break
            c.settimeout(1.0)
            try:
                got = c.recv(4096)
            except TimeoutError:
                continue
            reply += got
            if not got or b"\r\n\r\n" in reply:
                break
        assert reply.startswith(b"HTTP/1.1 408"), reply
        assert time.monotonic() - t < 5


def test_a_connection_that_never_sends_its_headers_is_closed(serve, generator, monkeypatch):
    monkeypatch.setattr(run, "HEADER_TIMEOUT_S", 0.5)
    s = serve(generator)
    with socket.create_connection(("127.0.0.1", int(s.url.rsplit(":", 1)[1])), timeout=10) as c:
        c.sendall(b"POST /v1/generate HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        t = time.monotonic()
        assert c.recv(100) == b""  # closed by the server
        assert time.monotonic() - t < 5


def test_full_queue_answers_503_with_retry_after(serve, tmp_path):
    stub = StubGenerator(tmp_path)
    s = serve(stub, max_queue=2)
    results = []

    def ask(i):
        with s.http() as http:
            results.append(http.post("/v1/generate", json={"intent": f"job number {i}", "log": False}))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while stub.calls < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)  # both admitted: one running, one queued
    with s.http() as http:
        busy = [http.post("/v1/generate", json={"intent": f"extra {i}"}) for i in range(3)]
        assert all(r.status_code == 503 for r in busy)
        assert all(int(r.headers["retry-after"]) >= 1 for r in busy) and "busy" in busy[0].json()["error"]
        assert http.get("/v1/health").json()["queue"] == 2  # health answers while the model is busy
        stub.gate.set()
        for t in threads:
            t.join(30)
        assert [r.status_code for r in results] == [200, 200]
        assert http.post("/v1/generate", json={"intent": "after the rush"}).status_code == 200
        assert "nl2code_rejected_total 3" in http.get("/metrics").text


def test_slow_generation_times_out_and_the_queue_bound_holds(serve, tmp_path):
    stub = StubGenerator(tmp_path)
    s = serve(stub, timeout_s=0.5, max_queue=2)
    with s.http() as http:
        r = http.post("/v1/generate", json={"intent": "slow one"})
        assert r.status_code == 504 and "0.5 s" in r.json()["error"]
        # a timed-out job that runs keeps its place until it really ends; a queued one is dropped
        assert http.post("/v1/generate", json={"intent": "queued"}).status_code == 504
        assert http.get("/v1/health").json()["queue"] == 1
        stub.gate.set()
        time.sleep(0.3)
        assert http.post("/v1/generate", json={"intent": "after"}).status_code == 200
    assert stub.calls == 2  # "queued" expired before its turn: skipped, never computed


def test_a_running_job_past_its_timeout_still_counts_against_the_queue(serve, tmp_path):
    stub = StubGenerator(tmp_path)
    s = serve(stub, timeout_s=0.5, max_queue=1)
    with s.http() as http:
        assert http.post("/v1/generate", json={"intent": "slow one"}).status_code == 504
        assert http.post("/v1/generate", json={"intent": "next one"}).status_code == 503
        stub.gate.set()
        time.sleep(0.3)
        assert http.post("/v1/generate", json={"intent": "later"}).status_code == 200


def test_explain_says_what_code_does_when_the_model_can(serve, tmp_path, generator):
    s = serve(generator)  # the tiny model has no reverse part
    with s.http() as http:
        r = http.post("/v1/explain", json={"code": "xs.sort()"})
    assert r.status_code == 501 and "no reverse model" in r.json()["error"]
    s.stop()

    class Explaining(StubGenerator):
        def explain(self, code, lang="python", n=1):
            return [f"{lang} explanation {i} of {code}" for i in range(n)]

    stub = Explaining(tmp_path)
    s = serve(stub)
    with s.http() as http:
        r = http.post("/v1/explain", json={"code": "ls -la", "lang": "sh", "n": 2})
        assert r.status_code == 200
        assert r.json() == {"code": "ls -la", "lang": "bash", "model": str(tmp_path), "error": None,
                            "explanations": ["bash explanation 0 of ls -la", "bash explanation 1 of ls -la"]}
        assert http.post("/v1/explain", json={"code": "x", "lang": "cobol"}).status_code == 400
        assert http.post("/v1/explain", json={"intent": "x"}).status_code == 400
        assert http.post("/v1/explain", json={"code": "x", "n": 11}).status_code == 400


def test_token_is_required_on_tcp_when_set(serve, generator):
    token = "s3cret-token-0123456789"
    s = serve(generator, token=token)
    with s.http() as http:
        assert http.get("/v1/health").status_code == 401
        r = http.post("/v1/generate", json={"intent": SORT})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert http.get("/v1/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/v1/health", headers={"Authorization": f"Bearer {token}x"}).status_code == 401
        assert http.get("/v1/health", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get("/v1/health", headers={"X-Nl2code-Token": token}).status_code == 200
    # the unix socket (mode 0600) needs no token
    assert oct(s.sock_path.stat().st_mode & 0o777) == "0o600"
    assert client.health(f"unix:{s.sock_path}")["status"] == "ok"


def test_binding_beyond_loopback_needs_a_token():
    run.check_bind("127.0.0.1", None)
    run.check_bind("::1", None)
    run.check_bind("localhost", None)
    for host in ("0.0.0.0", "192.168.1.5", "example.com"):
        with pytest.raises(UsageError, match="token"):
            run.check_bind(host, None)
    run.check_bind("0.0.0.0", "a" * 32)
    with pytest.raises(UsageError, match="too short"):
        run.check_bind("0.0.0.0", "short")


def test_graceful_shutdown_finishes_the_request_in_flight(serve, tmp_path):
    stub = StubGenerator(tmp_path)
    s = serve(stub)
    result = {}

    def ask():
        with s.http() as http:
            result["r"] = http.post("/v1/generate", json={"intent": "in flight"})

    t = threading.Thread(target=ask)
    t.start()
    while stub.calls < 1:
        time.sleep(0.01)
    s.server.should_exit = True  # what SIGTERM does
    time.sleep(0.3)
    with pytest.raises(httpx.ConnectError):  # no new connections
        httpx.get(s.url + "/v1/health", timeout=2)
    stub.gate.set()
    t.join(30)
    assert result["r"].status_code == 200 and result["r"].json()["candidates"][0]["code"] == "# in flight"
    s.thread.join(30)
    assert not s.thread.is_alive()


def test_a_second_server_on_the_same_socket_is_refused(serve, generator, tmp_path):
    s = serve(generator)
    with pytest.raises(UsageError, match="already runs"):
        run.unix_socket(s.sock_path)
    s.stop()
    stale = tmp_path / "stale.sock"  # left by a killed server: replaced
    sk = socket.socket(socket.AF_UNIX)
    sk.bind(str(stale))
    sk.close()
    run.unix_socket(stale).close()


def test_an_engine_bug_is_a_500_and_the_server_goes_on(serve, tmp_path):
    class Broken(StubGenerator):
        def generate(self, intent, lang="python", n=5, beam=None):
            if "boom" in intent:
                raise RuntimeError("kaput")
            return super().generate(intent, lang, n, beam)

    stub = Broken(tmp_path)
    stub.gate.set()
    s = serve(stub)
    with s.http() as http:
        r = http.post("/v1/generate", json={"intent": "go boom"})
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError: kaput"}
        assert http.post("/v1/generate", json={"intent": "fine now"}).status_code == 200
        assert 'endpoint="/v1/generate",code="500"} 1' in http.get("/metrics").text
