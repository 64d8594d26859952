"""The HTTP API (Starlette): generate, explain, accept, health, metrics, OpenAPI.

Every error is a JSON object {"error": "one line"} with a fitting status: 400 bad input,
401 missing or wrong token, 404/405 unknown route, 408 body too slow, 409 a model or
precision other than the one served, 413 body or intent too large, 501 no explain in this
engine, 503 queue full (with Retry-After), 504 generation outlasted the timeout.
Bodies are read in chunks against a byte limit and a deadline, so neither a huge body nor
one sent a byte at a time can hold the server. The token, when set, is compared in
constant time (hmac.compare_digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from nl2code import __version__, history
from nl2code.errors import NoParseableCandidate, UsageError
from nl2code.serve.openapi import openapi
from nl2code.serve.worker import QueueFull, Worker, rss_bytes

API = "/v1"


@dataclass
class Settings:
    token: str | None = None
    max_body_bytes: int = 64 * 1024
    max_intent_chars: int = 10_000
    body_timeout_s: float = 10.0
    timeout_s: float = 30.0
    max_queue: int = 32
    log: bool = True  # record generations in the history
    history_path: str | None = None


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status, headers=headers)


async def read_json(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object, read against the size limit and the body deadline."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, "Content-Length is not a number")
        if int(declared) > settings.max_body_bytes:
            raise ApiError(413, f"body too large ({int(declared):,} bytes; the limit is "
                                f"{settings.max_body_bytes:,})", {"Connection": "close"})
    chunks: list[bytes] = []
    size = 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise ApiError(413, f"body too large (over {settings.max_body_bytes:,} bytes)", {"Connection": "close"})
            chunks.append(chunk)

    try:
        await asyncio.wait_for(read(), settings.body_timeout_s)
    except asyncio.TimeoutError:
        raise ApiError(408, f"the body did not arrive within {settings.body_timeout_s:g} s",
                       {"Connection": "close"}) from None
    try:
        data = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "the body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the body must be a JSON object")
    return data


GENERATE_FIELDS = {"intent": str, "lang": str, "n": int, "beam": int, "model": str, "precision": str,
                   "log": bool, "source": str}


EXPLAIN_FIELDS = {"code": str, "lang": str, "n": int, "model": str, "precision": str}


def _typed(data: dict[str, Any], fields: dict[str, type]) -> None:
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
    for key, kind in fields.items():
        value = data.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise ApiError(400, f"{key} must be {'a whole number' if kind is int else kind.__name__}")


def parse_explain(data: dict[str, Any]) -> dict[str, Any]:
    _typed(data, EXPLAIN_FIELDS)
    if "code" not in data:
        raise ApiError(400, 'code is required: {"code": "the code to explain"}')
    req = {"lang": "python", "n": 1, **data}
    if not 1 <= req["n"] <= 10:
        raise ApiError(400, "n must be between 1 and 10")
    return req


def can_explain(gen) -> bool:
    """Whether the engine explains code: Generator.explain needs the model's reverse part."""
    if not callable(getattr(gen, "explain", None)):
        return False
    if hasattr(gen, "augment"):
        return getattr(gen.augment, "explainer", None) is not None
    return True


def parse_generate(data: dict[str, Any], settings: Settings) -> dict[str, Any]:
    _typed(data, GENERATE_FIELDS)
    if "intent" not in data:
        raise ApiError(400, 'intent is required: {"intent": "what the code should do"}')
    if len(data["intent"]) > settings.max_intent_chars:
        raise ApiError(413, f"intent too long ({len(data['intent']):,} characters; the limit is "
                            f"{settings.max_intent_chars:,})")
    req = {"lang": "python", "n": 1, "beam": 5, "log": True, "source": "server", **data}
    if not 1 <= req["n"] <= 20:
        raise ApiError(400, "n must be between 1 and 20")
    if not 1 <= req["beam"] <= 32:
        raise ApiError(400, "beam must be between 1 and 32")
    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,19}", req["source"]):
        raise ApiError(400, "source must be a short lowercase name (cli, server, ...)")
    return req


def answer(gen, intent: str, lang: str, n: int, beam: int) -> tuple[dict[str, Any], list[dict]]:
    """The --json record for one intent, as `nl2code --json` builds it in-process."""
    from nl2code.engine import clean_intent
    from nl2code.syntax import canonical_lang

    lang = canonical_lang(lang, gen.languages)  # the error names this model's languages, as the CLI's does
    text = clean_intent(intent)
    try:
        cands = [c.to_dict() for c in gen.generate(text, lang, n=n, beam=beam)]
        err = None
    except NoParseableCandidate as exc:
        cands, err = [], str(exc)
    return {"intent": text, "lang": lang, "model": str(gen.path), "candidates": cands, "error": err}, cands


class Api:
    def __init__(self, gen, settings: Settings, worker: Worker | None = None):
        self.gen = gen
        self.settings = settings
        self.worker = worker or Worker(settings.max_queue, settings.timeout_s)
        self.started = time.time()
        self._history: history.History | None = None
        self._history_failed = False

    # -- helpers -------------------------------------------------------------------------

    def history(self) -> history.History | None:
        if self._history is None and not self._history_failed:
            try:
                self._history = history.History(self.settings.history_path)
            except Exception as exc:  # a broken history never stops the server answering
                self._history_failed = True
                print(f"nl2code serve: warning: history disabled: {' '.join(str(exc).split())}", flush=True)
        return self._history

    def _check_model(self, req: dict[str, Any]) -> None:
        if req.get("model") and Path(req["model"]).resolve() != self.gen.path.resolve():
            raise ApiError(409, f"this server serves {self.gen.path}, not {req['model']}")
        if req.get("precision"):
            from nl2code.model import resolve_precision

            wanted = resolve_precision(req["precision"])
            if wanted != self.gen.precision:
                raise ApiError(409, f"this server runs {self.gen.precision}, not {wanted}")

    def _record(self, req: dict[str, Any], rec: dict[str, Any], cands: list[dict], seconds: float) -> int | None:
        if not (req["log"] and self.settings.log and history.enabled()):
            return None
        h = self.history()
        if h is None:
            return None
        try:
            return h.record(req["source"], rec["intent"], rec["lang"], cands, model=self.gen.path,
                            latency_ms=round(seconds * 1000, 2), error=rec["error"])
        except Exception as exc:
            print(f"nl2code serve: warning: history not recorded: {' '.join(str(exc).split())}", flush=True)
            return None

    async def _run(self, fn):
        try:
            return await self.worker.run(fn)
        except QueueFull as exc:
            raise ApiError(503, str(exc), {"Retry-After": str(exc.retry_after)}) from None
        except asyncio.TimeoutError:
            raise ApiError(504, f"generation took longer than {self.worker.timeout_s:g} s") from None
        except UsageError as exc:
            raise ApiError(400, str(exc)) from None

    # -- endpoints -----------------------------------------------------------------------

    async def generate(self, request: Request) -> Response:
        req = parse_generate(await read_json(request, self.settings), self.settings)
        self._check_model(req)

        def work():
            t = time.perf_counter()
            rec, cands = answer(self.gen, req["intent"], req["lang"], req["n"], req["beam"])
            return rec, self._record(req, rec, cands, time.perf_counter() - t)

        rec, rid = await self._run(work)
        return JSONResponse(rec, headers={"X-Nl2code-Record": str(rid)} if rid else None)

    async def explain(self, request: Request) -> Response:
        """Code -> what it does, in words: the JSON of `nl2code explain --json`."""
        req = parse_explain(await read_json(request, self.settings))
        self._check_model(req)
        if not can_explain(self.gen):
            raise ApiError(501, f"explain is not available: the model at {self.gen.path} has no reverse model "
                                f"(package one with `nl2code model package --explain`)")

        def work():
            from nl2code.syntax import canonical_lang

            lang = canonical_lang(req["lang"])
            texts = self.gen.explain(req["code"], lang, n=req["n"])
            return {"code": req["code"], "lang": lang, "model": str(self.gen.path), "explanations": list(texts),
                    "error": None}

        return JSONResponse(await self._run(work))

    async def accept(self, request: Request) -> Response:
        data = await read_json(request, self.settings)
        unknown = sorted(set(data) - {"id", "index", "code"})
        if unknown:
            raise ApiError(400, f"unknown field(s): {', '.join(unknown)}")
        rid, index, code = data.get("id"), data.get("index"), data.get("code")
        if not isinstance(rid, int) or isinstance(rid, bool):
            raise ApiError(400, "id must be the record id (the X-Nl2code-Record header of a generate answer)")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool)):
            raise ApiError(400, "index must be a whole number")
        if code is not None and (not isinstance(code, str) or len(code) > self.settings.max_body_bytes):
            raise ApiError(400, "code must be text")
        h = self.history()
        if h is None:
            raise ApiError(503, "the history is not available on this server")
        try:
            found = h.accept(rid, index if index is not None else (None if code is not None else 0), code)
        except UsageError as exc:
            raise ApiError(400, str(exc)) from None
        if not found:
            raise ApiError(404, f"no history record {rid}")
        return JSONResponse({"id": rid, "accepted": True})

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "pid": os.getpid(), "model": str(self.gen.path),
                             "model_hash": history.model_hash(self.gen.path), "precision": self.gen.precision,
                             "languages": list(self.gen.languages), "queue": self.worker.depth,
                             "max_queue": self.worker.max_queue, "uptime_s": round(time.time() - self.started, 1)})

    async def metrics(self, request: Request) -> Response:
        text = self.worker.metrics.render({
            "nl2code_queue_depth": ("Requests admitted and not finished.", self.worker.depth),
            "nl2code_queue_capacity": ("Most requests admitted at once.", self.worker.max_queue),
            "nl2code_process_resident_memory_bytes": ("Resident memory of the server.", rss_bytes()),
            "nl2code_uptime_seconds": ("Seconds since the server started.", time.time() - self.started),
        })
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi(__version__))


ENDPOINTS = {f"{API}/generate", f"{API}/explain", f"{API}/accept", f"{API}/health", "/metrics", "/openapi.json"}


class Guard:
    """ASGI middleware: the token check, JSON errors, and request counts per endpoint."""

    def __init__(self, app, api: Api):
        self.app, self.api = app, api
        self.token = api.settings.token.encode() if api.settings.token else None

    def _authorised(self, scope) -> bool:
        if self.token is None:
            return True
        server = scope.get("server")
        if server and server[1] is None:  # the unix socket: mode 0600, only this user reaches it
            return True
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"")
        supplied = auth[7:].strip() if auth[:7].lower() == b"bearer " else headers.get(b"x-nl2code-token", b"")
        return hmac.compare_digest(supplied, self.token)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in ENDPOINTS else "other"
        status = {"code": 500}

        async def counting_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
            await send(message)

        try:
            if not self._authorised(scope):
                response = error(401, "missing or wrong token: send Authorization: Bearer <token>",
                                 {"WWW-Authenticate": "Bearer"})
            else:
                try:
                    return await self.app(scope, receive, counting_send)
                except ApiError as exc:
                    response = error(exc.status, exc.message, exc.headers)
                except Exception as exc:  # Starlette re-raises after its 500: one log line, no traceback
                    print(f"nl2code serve: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}",
                          flush=True)
                    if status.get("started"):
                        return
                    response = error(500, f"internal error: {type(exc).__name__}")
            await response(scope, receive, counting_send)
        finally:
            self.api.worker.metrics.request(endpoint, status["code"])


def build_app(gen, settings: Settings | None = None, worker: Worker | None = None) -> Starlette:
    settings = settings or Settings()
    api = Api(gen, settings, worker)

    async def api_error(request: Request, exc: ApiError) -> Response:
        return error(exc.status, exc.message, exc.headers)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return error(exc.status_code, f"{exc.detail}: {request.method} {request.url.path}", exc.headers)

    async def internal(request: Request, exc: Exception) -> Response:
        return error(500, f"internal error: {type(exc).__name__}: {exc}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        api.worker.close(wait=True)  # graceful: admitted jobs finish before the process ends
        if api._history is not None:
            api._history.close()

    app = Starlette(
        routes=[
            Route(f"{API}/generate", api.generate, methods=["POST"]),
            Route(f"{API}/explain", api.explain, methods=["POST"]),
            Route(f"{API}/accept", api.accept, methods=["POST"]),
            Route(f"{API}/health", api.health, methods=["GET"]),
            Route("/metrics", api.metrics, methods=["GET"]),
            Route("/openapi.json", api.openapi, methods=["GET"]),
        ],
        exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal},
        lifespan=lifespan,
    )
    app.state.api = api
    return Guard(app, api)
