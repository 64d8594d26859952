"""Where pygls falls short of the LSP and JSON-RPC specs, and what this server does about it.

Each class closes a gap that left a client waiting forever or the server dead:

    Nl2CodeProtocol      requests before `initialize`, with params that do not fit, or after
                         `shutdown` get the error response the specs ask for; error responses
                         carry no traceback
    QuietExpectedErrors  one log line, not a traceback, for the errors we answer on purpose
    ResyncingStdin       a wrong Content-Length no longer loses every later message, and an
                         absurd one no longer allocates its size up front

Kept apart from the handlers (server.py) so that they can go when pygls mends them.
"""

from __future__ import annotations

import logging

from lsprotocol import types
from pygls.exceptions import (
    JsonRpcException, JsonRpcInternalError, JsonRpcInvalidRequest, JsonRpcServerNotInitialized,
)
from pygls.protocol import LanguageServerProtocol


class InvalidRequest:
    """A request whose params did not fit its method: answered with the error, not run."""

    def __init__(self, msg_id, error: JsonRpcException):
        self.id, self.error = msg_id, error


class Nl2CodeProtocol(LanguageServerProtocol):
    """pygls's protocol with three gaps closed (each left a client waiting forever):

    - a request before `initialize` ran its handler, which failed for want of a workspace;
      the LSP spec wants ServerNotInitialized (-32002) and other notifications than `exit`
      dropped;
    - a request whose params do not fit its method got no response at all (pygls raises
      while parsing the frame); JSON-RPC wants an error response for every request, and
      params may be omitted (an unknown method without params is MethodNotFound);
    - a request after `shutdown` was dropped without a reply; the LSP spec wants
      InvalidRequest (-32600).
    """

    def structure_message(self, data):
        if isinstance(data, dict) and "jsonrpc" in data and "method" in data:
            data.setdefault("params", None)  # pygls's fallback message types require the key
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "method" in data and data.get("id") is not None:
                return InvalidRequest(data["id"], exc)
            raise

    def _send_response(self, msg_id, result=None, error=None):
        """Error responses carry one line, never the server's traceback (pygls puts it in
        error.data for an unexpected exception): the client gets a message, stderr the rest."""
        if error is not None and isinstance(getattr(error, "data", None), dict) and "traceback" in error.data:
            error.data = None
        return super()._send_response(msg_id, result, error)

    def handle_message(self, message) -> None:
        if isinstance(message, InvalidRequest):
            self._send_response(message.id, None, message.error.to_response_error())
            return
        method = getattr(message, "method", None)
        if self._workspace is None and method is not None and method not in (types.INITIALIZE, types.EXIT):
            if getattr(message, "id", None) is not None:
                error = JsonRpcServerNotInitialized(f"{method}: the server has not been initialized")
                self._send_response(message.id, None, error.to_response_error())
            return
        if self._shutdown and method is not None and method != types.EXIT:
            if getattr(message, "id", None) is not None:
                error = JsonRpcInvalidRequest(f"{method}: the server is shutting down")
                self._send_response(message.id, None, error.to_response_error())
            return
        super().handle_message(message)


class QuietExpectedErrors(logging.Filter):
    """pygls logs a traceback with every error response; ours are deliberate (bad command
    arguments, a model that did not load), so one line is enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, JsonRpcException) and not isinstance(exc, JsonRpcInternalError):
            record.msg, record.args = f"{record.getMessage()}: {exc.message}", ()
            record.exc_info = record.exc_text = None
        return True


class ResyncingStdin:
    """stdin for pygls's reader loop, which is not robust to a wrong Content-Length:

    - it recognises a header only at the start of a line, so after a body that was shorter
      or longer than announced the leftover bytes and the next header share a line and every
      later message is lost: such a line is cut to start at its header;
    - it reads a body with one read(n), which allocates n bytes up front, so an absurd
      Content-Length killed the server with MemoryError: the body is read in chunks.
    """

    HEADER = b"Content-Length: "
    CHUNK = 1 << 20

    def __init__(self, raw):
        self.raw = raw

    def readline(self) -> bytes:
        line = self.raw.readline()
        at = line.rfind(self.HEADER)
        return line[at:] if at > 0 else line

    def read(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = self.raw.read(min(n, self.CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)
