"""`--tcp HOST:PORT`: one client per server, for debugging.

pygls's TCP mode gives every connection the same protocol object: the replies to one
client went to whichever connected last, and any connection that closed (a port probe)
shut the server down. Here:

- the session belongs to the first connection that sends a byte; a connection that
  closes without sending anything (a port probe) changes nothing;
- while a session runs, every other connection is closed at once, without a byte of the
  session's traffic;
- the server ends when its session ends (the client sent `exit` or hung up), never when
  another connection does.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from pygls.io_ import run_async

log = logging.getLogger(__name__)


class _PrefixedReader:
    """An asyncio StreamReader with bytes already read put back in front."""

    def __init__(self, prefix: bytes, reader: asyncio.StreamReader):
        self._prefix, self._reader = prefix, reader

    async def readline(self) -> bytes:
        if self._prefix:
            at = self._prefix.find(b"\n")
            if at >= 0:
                line, self._prefix = self._prefix[: at + 1], self._prefix[at + 1:]
                return line
            head, self._prefix = self._prefix, b""
            return head + await self._reader.readline()
        return await self._reader.readline()

    async def readexactly(self, n: int) -> bytes:
        head, self._prefix = self._prefix[:n], self._prefix[n:]
        if len(head) == n:
            return head
        try:
            return head + await self._reader.readexactly(n - len(head))
        except asyncio.IncompleteReadError as exc:
            return head + exc.partial


def serve_one_client(server, host: str, port: int) -> None:
    """Listen on host:port and serve one LSP session; return when it ends."""

    async def main() -> None:
        claimed = asyncio.Event()
        finished = asyncio.Event()
        waiting: set[asyncio.StreamWriter] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if claimed.is_set():  # one client per server: refuse the rest
                writer.close()
                return
            waiting.add(writer)
            try:
                first = await reader.read(1)
            except ConnectionError:
                first = b""
            finally:
                waiting.discard(writer)
            if not first or claimed.is_set():  # a probe that hung up, or too late
                writer.close()
                return
            claimed.set()
            for other in list(waiting):  # connected, silent, and now too late
                other.close()
            log.info("client connected from %s", writer.get_extra_info("peername"))
            server.protocol.set_writer(writer)
            try:
                await run_async(stop_event=server._stop_event, reader=_PrefixedReader(first, reader),
                                protocol=server.protocol, logger=log, error_handler=server.report_server_error)
            except ConnectionError:
                pass
            finally:
                finished.set()

        listener = await asyncio.start_server(on_connect, host, port)
        log.info("serving on %s", ", ".join(str(s.getsockname()) for s in listener.sockets))
        async with listener:
            await finished.wait()

    server._stop_event = threading.Event()
    try:
        asyncio.run(main())
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    finally:
        server.shutdown()
