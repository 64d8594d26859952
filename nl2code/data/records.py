"""The Example record (the only thing that crosses from data/ into training) and Report.

A Report collects what a reader or miner dropped, with reasons and file:line locations, so
a build can say exactly what it skipped instead of crashing or skipping silently.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Example:
    intent: str
    code: str
    lang: str
    source: str
    # slot-canonical code of the nearest other training pairs (retrieval-augmented input,
    # nl2code.context); empty in corpora written by `nl2code data build`
    context: tuple[str, ...] = ()

    def to_json(self) -> str:
        d = asdict(self)
        if not self.context:
            del d["context"]
        else:
            d["context"] = list(self.context)
        return json.dumps(d, ensure_ascii=False)


@dataclass
class Report:
    """Drops by reason, plus the first few locations of malformed input for the user."""

    drops: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    max_problems: int = 50

    def drop(self, reason: str, where: str | None = None) -> None:
        self.drops[reason] += 1
        if where is not None and len(self.problems) < self.max_problems:
            self.problems.append(f"{where}: {reason}")

    def merge(self, other: "Report") -> None:
        self.drops.update(other.drops)
        room = self.max_problems - len(self.problems)
        self.problems.extend(other.problems[: max(room, 0)])


def read_jsonl(path: str | Path) -> list[Example]:
    """Read a corpus file written by `nl2code data build` (JSONL of Example)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                d = json.loads(line)
                ctx = d.get("context") or ()
                if not isinstance(ctx, list) or not all(isinstance(c, str) for c in ctx):
                    ctx = ()
                out.append(Example(d["intent"], d["code"], d["lang"], d.get("source", ""), tuple(ctx)))
    return out


def read_page(path: Path, max_bytes: int, report: Report, what: str) -> str | None:
    """A small text file (a tldr or documentation page), or None with the drop reported:
    too large, undecodable or unreadable."""
    import os

    try:
        if os.path.getsize(path) > max_bytes:
            report.drop(f"{what} too large", str(path))
            return None
        return Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        report.drop("undecodable bytes", str(path))
    except OSError as exc:
        report.drop(f"unreadable {what} ({exc.strerror})", str(path))
    return None
