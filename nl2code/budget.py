"""Latency budgets on an injectable clock: no torch here (the engine imports it eagerly).

`Deadline` splits one generate call's budget: the beam searches for a share of it, then
finishes its live hypotheses greedily; a reserve is kept for checking and ranking; optional
extras (retrieval, reverse-model reranking) run only when their measured cost still fits.
Budgets are wall-clock: when one cuts the search, the answer depends on machine speed and
load, so it is not deterministic. Tests pass a fake clock and advance it by hand.
"""

from __future__ import annotations

import time
from contextlib import contextmanager


class Deadline:
    """A wall-clock budget for one generation, on an injectable clock (seconds, monotonic).

    The beam searches until `search_over` (a share of the budget), then finishes its live
    hypotheses greedily until `decode_over` (the budget less a reserve for checking and
    ranking); the caller skips optional work once too little is left (`allows`).
    """

    def __init__(self, budget_ms: float, clock=time.perf_counter, search_share: float = 0.5,
                 reserve_share: float = 0.1):
        if not budget_ms > 0:
            raise ValueError("a latency budget must be positive")
        self.clock = clock
        self.start = clock()
        self.budget = budget_ms / 1000.0
        self.search_share, self.reserve_share = search_share, reserve_share
        self.notes: dict = {}  # what the budget cut: greedy_from_step, stopped_at_step, ...

    def elapsed(self) -> float:
        return self.clock() - self.start

    def remaining(self) -> float:
        return self.budget - self.elapsed()

    def search_over(self) -> bool:
        return self.elapsed() >= self.search_share * self.budget

    def decode_over(self, next_step: float = 0.0) -> bool:
        """Whether the decoder must stop now: one more step (`next_step` seconds, the last
        one's cost) would run into the reserve."""
        return self.remaining() - next_step <= self.reserve_share * self.budget

    def allows(self, seconds: float) -> bool:
        """Whether work expected to take `seconds` still fits before the reserve."""
        return self.remaining() - seconds > self.reserve_share * self.budget


class CostMeter:
    """A running estimate (exponential moving average) of how long a piece of work takes."""

    def __init__(self, initial_s: float, clock=time.perf_counter, weight: float = 0.2):
        self.estimate = initial_s
        self.clock, self.weight = clock, weight

    @contextmanager
    def measure(self):
        t = self.clock()
        try:
            yield
        finally:
            self.estimate += self.weight * (max(self.clock() - t, 0.0) - self.estimate)
