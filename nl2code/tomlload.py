"""One TOML loader for every file the house reads as TOML (recipes, training configs, suites).

The file is read through safefs (bounded size, regular file, no link followed into a
surprise) and parsed with tomllib; every failure is raised as the caller's error class with
a one-line message that names the file, so the CLI prints `nl2code: error: ...`.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from nl2code import safefs

MAX_TOML_BYTES = 16 << 20


def load_toml(path: str | Path, error: type[Exception], what: str = "file",
              max_bytes: int = MAX_TOML_BYTES) -> dict[str, Any]:
    """The parsed top-level table of the TOML file at path.

    Raises `error` (e.g. DataError, UsageError) when the file is missing, too large,
    unreadable, not UTF-8 or not valid TOML; `what` names the file in the message
    ("recipe", "training config").
    """
    if not os.path.lexists(path):
        raise error(f"{what} not found: {path}")
    text = safefs.read_text(path, max_bytes, error, what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
