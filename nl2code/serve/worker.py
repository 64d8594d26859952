"""The model behind the server: one generation thread, a bounded queue, deadlines, metrics.

The Generator serialises its calls anyway, so one thread runs them all. Admission is
counted from submit until the job really ends (not until its request gave up), so the
queue bound holds even when requests time out: a full queue answers 503 at once with a
Retry-After estimated from the queue length and the recent generation time; so does a queue
whose expected wait (length x recent generation time) exceeds the timeout already (a 503 now
beats a 504 later). A job whose
request timed out before the thread reached it is skipped, not computed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import os
import threading
import time
from collections import defaultdict
from typing import Any, Callable


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class Expired(Exception):
    """The request's deadline passed before its job ran."""


LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    """Counters and a latency histogram, written as Prometheus text (exposition format 0.0.4)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.rejected = 0
        self.timeouts = 0
        self.started = time.time()

    def request(self, endpoint: str, code: int) -> None:
        with self._lock:
            self.requests[(endpoint, code)] += 1

    def observe(self, seconds: float) -> None:
        with self._lock:
            i = next((i for i, b in enumerate(LATENCY_BUCKETS) if seconds <= b), len(LATENCY_BUCKETS))
            self.buckets[i] += 1
            self.latency_sum += seconds
            self.latency_count += 1

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        out = []

        def head(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            head("nl2code_http_requests_total", "counter", "HTTP requests by endpoint and status code.")
            for (endpoint, code), n in sorted(self.requests.items()):
                out.append(f'nl2code_http_requests_total{{endpoint="{endpoint}",code="{code}"}} {n}')
            head("nl2code_generation_seconds", "histogram", "Time the model spent on one request.")
            cumulative = 0
            for b, n in zip((*LATENCY_BUCKETS, "+Inf"), self.buckets):
                cumulative += n
                out.append(f'nl2code_generation_seconds_bucket{{le="{b}"}} {cumulative}')
            out.append(f"nl2code_generation_seconds_sum {self.latency_sum:.6f}")
            out.append(f"nl2code_generation_seconds_count {self.latency_count}")
            head("nl2code_rejected_total", "counter", "Requests refused with 503 because the queue was full.")
            out.append(f"nl2code_rejected_total {self.rejected}")
            head("nl2code_timeouts_total", "counter", "Requests answered 504 because generation outlasted the timeout.")
            out.append(f"nl2code_timeouts_total {self.timeouts}")
        for name, (help_, value) in gauges.items():
            head(name, "gauge", help_)
            out.append(f"{name} {value:g}")
        return "\n".join(out) + "\n"


def rss_bytes() -> int:
    """Resident memory of this process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Worker:
    def __init__(self, max_queue: int = 32, timeout_s: float = 30.0):
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.metrics = Metrics()
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="nl2code-gen")
        self._lock = threading.Lock()
        self._admitted = 0
        self._recent = 0.2  # moving average of a job's seconds, for Retry-After

    @property
    def depth(self) -> int:
        return self._admitted

    def retry_after(self) -> int:
        return max(1, min(60, math.ceil(self._admitted * self._recent)))

    def _release(self, _fut) -> None:
        with self._lock:
            self._admitted -= 1

    def _job(self, fn: Callable[[], Any], deadline: float) -> Any:
        if time.monotonic() > deadline:
            raise Expired()
        t = time.perf_counter()
        try:
            return fn()
        finally:
            dt = time.perf_counter() - t
            self._recent = 0.8 * self._recent + 0.2 * dt
            self.metrics.observe(dt)

    async def run(self, fn: Callable[[], Any], timeout_s: float | None = None) -> Any:
        """Run fn on the generation thread. Raises QueueFull at once when the queue is
        full, asyncio.TimeoutError when the result is not there within the timeout."""
        timeout_s = timeout_s or self.timeout_s
        with self._lock:
            # full, or the wait ahead would most likely outlast the timeout: refuse now
            if self._admitted >= self.max_queue or self._admitted * self._recent > timeout_s:
                self.metrics.rejected += 1
                raise QueueFull(self.retry_after())
            self._admitted += 1
        deadline = time.monotonic() + timeout_s
        try:
            fut = self._pool.submit(self._job, fn, deadline)
        except RuntimeError:  # shutting down
            with self._lock:
                self._admitted -= 1
            raise QueueFull(self.retry_after()) from None
        fut.add_done_callback(self._release)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(fut), timeout_s)
        except asyncio.TimeoutError:
            fut.cancel()  # skipped if the thread has not reached it yet
            self.metrics.timeouts += 1
            raise
        except Expired:
            self.metrics.timeouts += 1
            raise asyncio.TimeoutError() from None

    def close(self, wait: bool = True) -> None:
        """Finish the running job (and, with wait, the queued ones), then stop the thread."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
