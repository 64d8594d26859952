"""Value checks for configs and recipes, done before anything is built or read.

A dataclass accepts whatever it is given: `n_enc_layer = 10000`, `batch_tokens = "4k"`,
`eval_every = 0`, `weight = nan` all used to get through and fail later (out of memory, a
loop with no batches, ZeroDivisionError). Each field here has a type and a range; a value
outside them is one error naming the key and the range.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from nl2code.errors import UsageError

MAX_SOURCE_WEIGHT = 100.0  # upsampling beyond this is a typo, and it multiplies memory


def _int(lo: int, hi: int):
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be a whole number between {lo:,} and {hi:,}"
        if not lo <= value <= hi:
            return f"must be between {lo:,} and {hi:,}"
        return None
    return check


def _float(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    span = f"{left}{lo:g}, {hi:g}{right}"

    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number in {span}"
        if not math.isfinite(value):
            return f"must be a finite number in {span}"
        if value < lo or value > hi or (lo_open and value == lo) or (hi_open and value == hi):
            return f"must be in {span}"
        return None
    return check


def _str(value: Any) -> str | None:
    return None if isinstance(value, str) else "must be text"


def _choice(*options: str):
    def check(value: Any) -> str | None:
        return None if value in options else f"must be one of {', '.join(options)}"
    return check


def weight_problem(value: Any) -> str | None:
    """Why value is not a usable source weight, or None."""
    return _float(0.0, MAX_SOURCE_WEIGHT, lo_open=True)(value)


def _weights(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a table of source name = weight"
    for name, w in value.items():
        problem = weight_problem(w)
        if problem:
            return f"[{name!r}] {problem}"
    return None


MODEL_RULES = {
    "arch": _choice("transformer", "rnn"),
    "vocab_size": _int(8, 1_000_000),
    "d_model": _int(2, 16_384),
    "n_head": _int(1, 256),
    "n_enc_layer": _int(1, 64),
    "n_dec_layer": _int(1, 64),
    "d_ff": _int(1, 65_536),
    "dropout": _float(0.0, 1.0, hi_open=True),
    "max_len": _int(2, 65_536),
    "rnn_hidden": _int(1, 16_384),
    "rnn_layers": _int(1, 16),
    "context_k": _int(0, 8),
    "context_tokens": _int(1, 1024),
}

TRAIN_RULES = {
    "corpus": _str,
    "out": _str,
    "vocab_size": _int(8, 1_000_000),
    "batch_tokens": _int(1, 10_000_000),
    "lr": _float(0.0, 10.0, lo_open=True),
    "warmup_steps": _int(1, 100_000_000),
    "max_steps": _int(1, 1_000_000_000),
    "max_minutes": _float(0.0, 10_000_000.0),
    "weight_decay": _float(0.0, 10.0),
    "label_smoothing": _float(0.0, 1.0, hi_open=True),
    "clip_norm": _float(0.0, 1e6, lo_open=True),
    "eval_every": _int(1, 1_000_000_000),
    "save_every_minutes": _float(0.0, 10_000_000.0, lo_open=True),
    "dev_bleu_examples": _int(0, 10_000_000),
    "patience": _int(0, 1_000_000),
    "seed": _int(0, 2**31 - 1),
    "threads": _int(0, 4096),
    "max_src_len": _int(1, 65_536),
    "max_tgt_len": _int(2, 65_536),
    "source_weights": _weights,
    "init_from": _str,
    "context_k": _int(-1, 8),
    "log_every": _int(1, 1_000_000_000),
    "denoise_ratio": _float(0.0, 10.0),
    "denoise_mask": _float(0.0, 0.9, lo_open=True),
    "denoise_span": _float(1.0, 20.0),
    "denoise_drop": _float(0.0, 0.5),
}


def _check(cfg, rules: dict, table: str) -> None:
    for f in fields(cfg):
        rule = rules.get(f.name)  # a field without a rule (a newer key) is not checked here
        problem = rule(getattr(cfg, f.name)) if rule else None
        if problem:
            raise UsageError(f"[{table}] {f.name} = {getattr(cfg, f.name)!r}: {problem}")


def check_model_config(cfg) -> None:
    """Types and sane bounds of a ModelConfig (UsageError naming the key)."""
    _check(cfg, MODEL_RULES, "model")
    if cfg.arch == "transformer" and (cfg.d_model % cfg.n_head or cfg.d_model % 2):
        raise UsageError(f"[model] d_model = {cfg.d_model} must be even and a multiple of n_head = {cfg.n_head}")


def check_train_config(cfg) -> None:
    """Types and bounds of a TrainConfig (UsageError naming the key)."""
    _check(cfg, TRAIN_RULES, "train")
    if cfg.denoise_ratio > 0 and cfg.task != "code":
        raise UsageError(f"[train] denoise_ratio = {cfg.denoise_ratio!r}: denoising trains code -> code, "
                         f"so it needs task = \"code\" (not {cfg.task!r}); set denoise_ratio = 0")
    if isinstance(cfg.source_weights, dict) and "denoise" in cfg.source_weights:
        raise UsageError("[train] source_weights: \"denoise\" names the denoising examples, whose share "
                         "denoise_ratio sets; remove it from source_weights")


def _int_list(max_len: int):
    def check(value: Any) -> str | None:
        if not isinstance(value, list) or len(value) > max_len or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value):
            return f"must be a list of at most {max_len} whole numbers >= 0"
        return None
    return check


def _str_list(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return "must be a list of text values, e.g. [\"a\", \"b\"] (not one text value)"
    return None


def _name(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a non-empty name"


CONALA_INTENTS = ("rewritten", "title")  # a conala source's `intent`: which field a record gives


SOURCE_RULES = {
    "name": _name,
    "kind": _str,
    "path": _str,
    "lang": _str,
    "weight": weight_problem,
    "dev_first": _int(0, 1_000_000_000),
    "dev_path": _str,
    "range": _int_list(2),
    "dev_range": _int_list(2),
    "roots": _str_list,
    "miners": _str_list,
    "cap": _int(1, 100_000_000),
    "max_examples": _int(0, 1_000_000_000),
    "include": _str_list,
    "exclude": _str_list,
    "resample": lambda v: None if isinstance(v, bool) else "must be true or false",
    "intent": lambda v: None if v in CONALA_INTENTS else f"must be one of {list(CONALA_INTENTS)}",
}

GUARD_RULES = {"kind": _str, "path": _str, "optional": lambda v: None if isinstance(v, bool) else "must be true or false"}


def _entry_problem(entry: dict[str, Any], rules: dict) -> str | None:
    """Why a recipe table has a bad value ("key = value: why"), or None."""
    for key, value in entry.items():
        rule = rules.get(key)
        problem = rule(value) if rule else None
        if problem:
            return f"{key} = {value!r}: {problem}"
    return None


def source_problem(entry: dict[str, Any]) -> str | None:
    """Why a recipe's [[source]] table has a bad value, or None."""
    return _entry_problem(entry, SOURCE_RULES)


def guard_problem(entry: dict[str, Any]) -> str | None:
    """Why a recipe's [[leak_guard]] table has a bad value, or None."""
    return _entry_problem(entry, GUARD_RULES)
