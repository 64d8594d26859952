"""Model weights from safetensors bytes, checked against the config before anything is allocated.

Names, dtypes and shapes in the file's header are compared with what the config's model
needs before a tensor is read; then each tensor is checked (dtype, shape, finite values).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nl2code.config import ModelConfig
from nl2code.errors import CheckpointError

MAX_HEADER_BYTES = 64 << 20  # safetensors' JSON header

_SAFETENSORS_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                       "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                       "BOOL": "bool"}


def allowed_weight_dtypes(cfg: ModelConfig) -> set[str]:
    """float32 always; float16 or bfloat16 only when the config declares it (weights_dtype)."""
    allowed = {"float32"}
    declared = getattr(cfg, "weights_dtype", None)
    if declared in ("float16", "bfloat16"):
        allowed.add(declared)
    return allowed


MAX_PARAMETERS = 400_000_000  # 1.6 GB of float32: far above any model nl2code trains


def estimated_parameters(cfg: ModelConfig) -> int:
    """An upper-bound estimate of a config's parameter count, from the sizes alone."""
    d, ff, v = cfg.d_model, cfg.d_ff, cfg.vocab_size
    if cfg.arch == "rnn":
        h = max(cfg.rnn_hidden, d)
        return 2 * v * d + cfg.rnn_layers * 24 * h * h + 4 * h * h
    return v * d + cfg.max_len * d + cfg.n_enc_layer * (4 * d * d + 2 * d * ff + 9 * d) + \
        cfg.n_dec_layer * (8 * d * d + 2 * d * ff + 14 * d)


def _build_checked(cfg: ModelConfig):
    """The model for a config, refused before anything is allocated when it is too large.
    (Not on PyTorch's meta device: that costs ~1.3 s of lazy imports at first use.)"""
    from nl2code.model import build_model

    n = estimated_parameters(cfg)
    if n > MAX_PARAMETERS:
        raise CheckpointError(f"the config describes a model of about {n:,} parameters "
                              f"(the limit is {MAX_PARAMETERS:,}): refused before building it")
    return build_model(cfg)


def expected_shapes(cfg: ModelConfig, model=None) -> dict[str, tuple[int, ...]]:
    """Every weight's shape for this config (read off `model`, else a checked build)."""
    model = model if model is not None else _build_checked(cfg)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def model_from_weights(cfg: ModelConfig, data: bytes, where: Path):
    """Build the config's model and load safetensors bytes into it, in eval mode.

    The header's names, dtypes and shapes are checked against the config before a tensor
    is read, then every tensor (dtype, shape, finite); float16 weights are upcast."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    model = _build_checked(cfg)
    expected, allowed = expected_shapes(cfg, model), allowed_weight_dtypes(cfg)
    _check_header(_safetensors_header(data, where), expected, allowed, where)
    try:
        state = load_safetensors(data)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{where} is not valid safetensors: {exc}") from None
    try:
        for name, tensor in state.items():
            _check_tensor(name, tensor, expected[name], allowed)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if cfg.weights_dtype == "float16":  # stored in half precision: compute in float32
        state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{where} does not fit its config: {str(exc).splitlines()[0]}") from None
    return model.eval()


def _safetensors_header(data: bytes, where: Path) -> dict[str, Any]:
    if len(data) < 8:
        raise CheckpointError(f"{where} is not valid safetensors: too short")
    n = int.from_bytes(data[:8], "little")
    if n > min(len(data) - 8, MAX_HEADER_BYTES):
        raise CheckpointError(f"{where} is not valid safetensors: bad header length")
    try:
        header = json.loads(data[8 : 8 + n].decode("utf-8"))
    except (ValueError, RecursionError):
        raise CheckpointError(f"{where} is not valid safetensors: header is not JSON") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where} is not valid safetensors: header is not an object")
    header.pop("__metadata__", None)
    return header


def _check_header(header: dict[str, Any], expected: dict[str, tuple[int, ...]], allowed: set[str],
                  where: Path) -> None:
    """Names, dtypes and shapes in the file's header against the config, before loading."""
    missing, extra = sorted(set(expected) - set(header)), sorted(set(header) - set(expected))
    if missing or extra:
        what = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise CheckpointError(f"{where} does not fit its config: {what}")
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise CheckpointError(f"{where} is not valid safetensors: bad entry {name!r}")
        dtype = _SAFETENSORS_DTYPES.get(entry.get("dtype"), str(entry.get("dtype")))
        shape = entry.get("shape")
        if dtype not in allowed:
            raise CheckpointError(f"{where}: weight {name!r} is {dtype}; expected {' or '.join(sorted(allowed))}")
        if not isinstance(shape, list) or tuple(shape) != expected[name]:
            raise CheckpointError(f"{where} does not fit its config: {name!r} has shape {shape}, "
                                  f"the config needs {list(expected[name])}")


def _check_tensor(name: str, tensor, expected_shape: tuple[int, ...], allowed_dtypes: set[str]) -> None:
    """One loaded weight: dtype allowed, shape as the config says, every value finite."""
    import torch

    dtype = str(tensor.dtype).removeprefix("torch.")
    if dtype not in allowed_dtypes:
        raise CheckpointError(f"weight {name!r} is {dtype}; expected {' or '.join(sorted(allowed_dtypes))}")
    if tuple(tensor.shape) != tuple(expected_shape):
        raise CheckpointError(f"weight {name!r} has shape {list(tensor.shape)}, the config needs "
                              f"{list(expected_shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise CheckpointError(f"weight {name!r} holds NaN or infinite values")
