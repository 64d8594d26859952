"""Guards around a training run: signals, the run-folder lock, epochs without batches,
and the source weights a corpus brings along.

- SIGINT and SIGTERM stop a run at any point: before the training loop they end it at
  once (nothing to save); inside it they set a flag that the loop polls after every step,
  between epochs and while it builds an epoch's batches, and the run saves `last/` and
  exits with status 128 + the signal's number.
- One run per folder: rank 0 holds an flock on OUT/.lock; a second run (fresh or
  --resume) fails at once, naming the holder.
- An epoch with no batches (weights so small that nothing is drawn) is an error, not an
  endless loop of empty epochs.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

from nl2code import safefs
from nl2code.errors import DataError, UsageError
from nl2code.validate import weight_problem


class TrainingInterrupted(SystemExit):
    """SIGINT or SIGTERM ended training; exit status 128 + the signal's number."""

    def __init__(self, signum: int, message: str):
        super().__init__(128 + signum)
        self.message = message


class StopFlag:
    """SIGINT and SIGTERM handlers for the training process (rank 0, main thread).

    Before the loop runs there is nothing to save: a signal ends the run at once. Once the
    loop runs (deferred), a signal only sets the flag; the loop polls it after every step,
    between epochs and while building an epoch's batches, then saves `last/` and exits.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, active: bool):
        self.signum: int | None = None
        self.deferred = False
        self._old: dict[int, object] = {}
        if active and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self.signum = signum
        if not self.deferred:
            self.restore()
            raise TrainingInterrupted(signum, f"interrupted by {signal.Signals(signum).name} before training started")

    def __call__(self) -> bool:
        return self.signum is not None

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old = {}


def lock_run_folder(out: Path, rank: int) -> safefs.FolderLock | None:
    """One training run per folder: rank 0 holds an flock on OUT/.lock while it trains."""
    if rank != 0:
        return None
    out.mkdir(parents=True, exist_ok=True)
    return safefs.FolderLock(out, UsageError)


def check_batches(batches: list, world: int, epoch: int, corpus: str) -> None:
    """An epoch without batches would loop forever doing nothing: that is an error."""
    if not batches:
        raise DataError(f"epoch {epoch} has no batches: every source weight in {corpus} is so small that "
                        f"no example was drawn; raise the weights ([train] source_weights or the recipe's)")
    if len(batches) < world:
        raise DataError(f"epoch {epoch} has {len(batches)} batches for {world} processes: "
                        f"use fewer processes or a smaller batch_tokens")


def stats_weights(stats: Path) -> dict[str, float]:
    """The source weights recorded by `data build` in stats.json, each checked."""
    if not os.path.lexists(stats):
        return {}
    try:
        weights = json.loads(safefs.read_text(stats, 64 << 20, DataError, "stats.json")).get("weights", {})
    except (ValueError, RecursionError, AttributeError):
        raise DataError(f"{stats} is not a valid stats file (JSON object expected)") from None
    if not isinstance(weights, dict):
        raise DataError(f"{stats}: weights must be a table of source name = weight")
    for name, w in weights.items():
        problem = weight_problem(w)
        if problem:
            raise DataError(f"{stats}: weights[{name!r}] = {w!r} {problem}")
    return weights
