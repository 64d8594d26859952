"""ModelHost: the Generator behind the server, loaded in the background and kept warm.

Slow work stays off the event loop. Each load (and warm-up) runs on a thread of its own,
so a load that never returns (a model folder on a hung network mount) or fails cannot hold
up the next one: switching modelPath always starts a fresh load. One thread runs generation. One generation thread is enough (the Generator serialises
calls with a lock anyway) and it lets a request that was cancelled or superseded while
queued be skipped instead of computed. Results are cached by (intent, language, settings),
so re-asking for the same comment costs nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
import time
from collections import OrderedDict
from nl2code.errors import Nl2CodeError, NoParseableCandidate
from nl2code.rerank import Candidate

from nl2code_lsp import accept
from nl2code_lsp.settings import Settings

log = logging.getLogger(__name__)

WARMUP_INTENT = "print hello world"


class ModelLoadError(Exception):
    """The model could not be loaded; the message is one line and names the path."""


class LRUCache:
    def __init__(self, maxsize: int = 512):
        self.maxsize = maxsize
        self._data: OrderedDict[tuple, list[Candidate]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> list[Candidate] | None:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: tuple, value: list[Candidate]) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)


class Ticket:
    """One request's claim on the generation thread; a newer request for the same
    (document, method) cancels the older ticket."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.cancelled = threading.Event()  # read by the generation thread
        self.superseded = loop.create_future()  # awaited on the event loop

    def cancel(self) -> None:
        self.cancelled.set()
        if not self.superseded.done():
            self.superseded.set_result(None)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    return msg if isinstance(exc, Nl2CodeError) else f"{type(exc).__name__}: {msg}".rstrip(": ")


class ModelHost:
    def __init__(self, default_model: str | None = None):
        self.default_model = default_model  # from --model; settings.modelPath overrides it
        self.cache = LRUCache()
        self._gen_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nl2code-gen")
        self._loading: concurrent.futures.Future | None = None
        self._loading_path: str | None = None
        self._tickets: dict[tuple, Ticket] = {}

    # -- loading -------------------------------------------------------------------------

    def model_path(self, settings: Settings) -> str | None:
        return settings.model_path or self.default_model

    def load(self, settings: Settings) -> concurrent.futures.Future | None:
        """Start loading the model the settings name; None if that one is loaded or loading."""
        path = self.model_path(settings)
        if self._loading is not None and path == self._loading_path:
            return None
        self._loading_path = path
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(self._load(path))
            except BaseException as exc:
                fut.set_exception(exc)
            finally:
                gc.collect()  # what a failed or replaced load allocated goes back now

        threading.Thread(target=run, name="nl2code-load", daemon=True).start()
        self._loading = fut
        return fut

    @staticmethod
    def _load(path: str | None):
        from nl2code.engine import Generator

        try:
            gen = Generator.from_checkpoint(path)
        except Exception as exc:  # a bad folder, missing weights, a torch error: all one line
            reason = _one_line(exc)
            where = path or "the default model (NL2CODE_MODEL or the bundled one)"
            if path and path in reason:
                raise ModelLoadError(f"nl2code: cannot load the model: {reason}") from exc
            raise ModelLoadError(f"nl2code: cannot load the model at {where}: {reason}") from exc
        try:  # the first call pays for lazy imports and allocations; pay it here
            gen.generate(WARMUP_INTENT, gen.languages[0], n=1)
        except Exception:
            pass
        log.info("model loaded from %s", gen.path)
        return gen

    async def generator(self, timeout: float):
        """The Generator last asked for with load(), waiting up to timeout seconds for it;
        None if it is still loading. Raises ModelLoadError when loading failed."""
        fut = self._loading
        assert fut is not None, "load() first"
        try:
            # shield: a timeout or a cancelled request must not cancel the shared load
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(fut)), timeout)
        except asyncio.TimeoutError:
            return None

    # -- generation ----------------------------------------------------------------------

    def cached(self, intent: str, lang: str, settings: Settings) -> list[Candidate] | None:
        return self.cache.get((intent, lang, *settings.cache_key()))

    async def generate(self, gen, intent: str, lang: str, settings: Settings, *,
                       supersede: tuple | None = None, timeout: float | None = None) -> list[Candidate] | None:
        """Candidates for an intent: [] when none parses or a newer request superseded this
        one, None when generation outlasted timeout (it goes on and fills the cache).

        Raises nl2code's UsageError for input the engine rejects.
        """
        key = (intent, lang, *settings.cache_key())
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        loop = asyncio.get_running_loop()
        ticket = Ticket(loop)
        if supersede is not None:
            if (old := self._tickets.get(supersede)) is not None:
                old.cancel()
            self._tickets[supersede] = ticket
        job = loop.run_in_executor(self._gen_pool, self._work, gen, ticket, key, intent, lang, settings)
        job.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "unretrieved"
        try:
            done, _ = await asyncio.wait({job, ticket.superseded}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # $/cancelRequest: skip the job if it has not started
            ticket.cancel()
            job.cancel()
            raise
        finally:
            if supersede is not None and self._tickets.get(supersede) is ticket:
                del self._tickets[supersede]
        if ticket.superseded in done:
            return []
        if job not in done:
            return None
        return job.result() or []

    def _work(self, gen, ticket: Ticket, key: tuple, intent: str, lang: str,
              settings: Settings) -> list[Candidate] | None:
        if ticket.cancelled.is_set():
            return None
        hit = self.cache.get(key)  # an identical request may have filled it while we queued
        if hit is not None:
            return hit
        started = time.perf_counter()
        try:
            cands = gen.generate(intent, lang, n=settings.n, beam=settings.beam,
                                 max_latency_ms=settings.decode_budget_ms)
        except NoParseableCandidate:
            cands = []
        self.cache.put(key, cands)
        accept.record(intent, lang, cands, getattr(gen, "path", None), round((time.perf_counter() - started) * 1000, 2))
        return cands

    def forget(self, uri: str) -> None:
        """Drop the supersession state of a closed document."""
        for key in [k for k in self._tickets if k[0] == uri]:
            self._tickets.pop(key).cancel()

    def shutdown(self) -> None:
        self._gen_pool.shutdown(wait=False, cancel_futures=True)
