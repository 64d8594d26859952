"""Server settings (section "nl2code"): parsed from initializationOptions and
workspace/didChangeConfiguration, validated key by key.

A bad value keeps the previous one and produces a one-line warning for the client's log,
so a typo in an editor's settings never takes the server down.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from nl2code.errors import UsageError
from nl2code.languages import canonical_lang

SECTION = "nl2code"


@dataclass(frozen=True)
class Settings:
    model_path: str | None = None  # None: --model, else NL2CODE_MODEL, else the bundled model
    n: int = 5  # candidates offered per request
    beam: int = 5  # beam size (raised to n when smaller)
    max_latency_ms: int = 3000  # longest a completion waits for generation; 0 = no limit
    enabled_languages: tuple[str, ...] = ("python", "bash")
    # generation's own budget (anytime decoding): the best parseable candidate found
    # within it; 0 = search to the end
    decode_budget_ms: int = 1000

    def cache_key(self) -> tuple:
        return (self.model_path, self.n, self.beam, self.decode_budget_ms)


def _model_path(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("must be a path (text)")
    return value


def _int_in(lo: int, hi: int):
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("must be a whole number")
        if isinstance(value, float) and (not math.isfinite(value) or not value.is_integer()):
            raise ValueError("must be a whole number")  # 1e400 arrives as inf: int() would overflow
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}")
        return int(value)
    return parse


def _languages(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError("must be a list of language names, e.g. [\"python\", \"shellscript\"]")
    try:
        return tuple(dict.fromkeys(canonical_lang(str(v)) for v in value))
    except UsageError as exc:
        raise ValueError(str(exc)) from None


# camelCase key (as editors send it) -> (dataclass field, parser)
_KEYS = {
    "modelPath": ("model_path", _model_path),
    "n": ("n", _int_in(1, 20)),
    "beam": ("beam", _int_in(1, 32)),
    "maxLatencyMs": ("max_latency_ms", _int_in(0, 600_000)),
    "decodeBudgetMs": ("decode_budget_ms", _int_in(0, 600_000)),
    "enabledLanguages": ("enabled_languages", _languages),
}

# keys of the "nl2code" section that belong to an editor client, not to the server
CLIENT_ONLY = {"serverPath", "serverArgs", "trace"}


def section_of(raw: Any) -> dict[str, Any] | None:
    """The "nl2code" settings inside what a client sent: {"nl2code": {...}} or {...} itself."""
    if not isinstance(raw, dict):
        return None
    inner = raw.get(SECTION)
    if isinstance(inner, dict):
        return inner
    return raw if any(k in _KEYS for k in raw) else None


def merge(current: Settings, raw: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Apply the known keys of raw onto current; unknown keys and bad values become warnings.

    A key set to null goes back to its default.
    """
    changes: dict[str, Any] = {}
    warnings: list[str] = []
    defaults = Settings()
    for key, value in raw.items():
        if key in CLIENT_ONLY:
            continue
        if key not in _KEYS:
            warnings.append(f"nl2code: unknown setting {SECTION}.{key} ignored")
            continue
        name, parse = _KEYS[key]
        if value is None:
            changes[name] = getattr(defaults, name)
            continue
        try:
            changes[name] = parse(value)
        except (ValueError, TypeError, OverflowError) as exc:
            warnings.append(f"nl2code: setting {SECTION}.{key} {exc}; keeping {getattr(current, name)!r}")
    return dataclasses.replace(current, **changes), warnings
