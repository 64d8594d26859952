"""A model is a folder: weights (safetensors), config.json, tokenizer.model, manifest.json.

Loading verifies every file against the manifest's sha256 before reading it and never
unpickles: weights are safetensors, config is JSON. Folders are written to a temporary
sibling and renamed into place, so a reader never sees a half-written model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from nl2code import safefs
from nl2code.config import ModelConfig, from_dict, to_dict
from nl2code.errors import CheckpointError, UsageError

FORMAT = "nl2code-model/1"
WEIGHTS, CONFIG, TOKENIZER, MANIFEST = "model.safetensors", "config.json", "tokenizer.model", "manifest.json"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_atomic_dir(final: Path, fill) -> None:
    """Create a folder by calling fill(tmp_dir), then swap it into place at `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        fill(tmp)
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old = None
        if final.exists():
            old = final.parent / f".{final.name}.old"
            if old.exists():
                shutil.rmtree(old)
            final.rename(old)
        tmp.rename(final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(final: Path) -> None:
    """After a crash between the two renames, put the previous folder back."""
    old = final.parent / f".{final.name}.old"
    if not final.exists() and old.exists():
        old.rename(final)


def _save_weights(state: dict, path: Path) -> None:
    """safetensors' writer, with its I/O failures (disk full, ...) raised as OSError: they
    are the system's errors, and callers report OSError in the system's words."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        save_file(state, str(path), metadata={"format": FORMAT})
    except SafetensorError as exc:
        code = re.search(r"\bcode: (\d+)", str(exc))
        if code:
            raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from None
        raise OSError(f"cannot write {path}: {exc}") from None


def save_model(path: Path, model, cfg: ModelConfig, tokenizer, meta: dict[str, Any] | None = None,
               extra: dict[str, bytes] | None = None) -> None:
    def fill(tmp: Path) -> None:
        import torch

        half = getattr(cfg, "weights_dtype", "float32") == "float16"
        state = {k: (v.detach().to("cpu", torch.float16) if half and v.is_floating_point() else v.detach().to("cpu")).contiguous()
                 for k, v in model.state_dict().items()}
        _save_weights(state, tmp / WEIGHTS)
        (tmp / CONFIG).write_text(json.dumps({"model": to_dict(cfg), "meta": meta or {}}, indent=2))
        tokenizer.save(tmp / TOKENIZER)
        for name, data in (extra or {}).items():
            (tmp / name).write_bytes(data)
        files = {f.name: sha256_file(f) for f in sorted(tmp.iterdir())}
        (tmp / MANIFEST).write_text(json.dumps({"format": FORMAT, "files": files}, indent=2))

    write_atomic_dir(Path(path), fill)


# Size bounds per file: reads are bounded before they start (a manifest linked to /dev/zero
# or a 4 GB config must not exhaust memory). Other listed files (train_state.pt) get EXTRA.
MAX_BYTES = {MANIFEST: 1 << 20, CONFIG: 16 << 20, TOKENIZER: 64 << 20, WEIGHTS: 4 << 30}
MAX_EXTRA_BYTES = 8 << 30
MAX_HEADER_BYTES = 64 << 20  # safetensors' JSON header


def _member(path: Path, name: str) -> Path:
    """path/name for a name the manifest lists: a plain file name inside the folder."""
    if not isinstance(name, str) or Path(name).name != name or name in (".", "..") or "\0" in name:
        raise CheckpointError(f"{path / MANIFEST} names a file outside the folder: {name!r}")
    return path / name


def _read_member(path: Path, name: str) -> bytes:
    """The bytes of one file of the folder: a regular file, not a link, FIFO or device;
    bounded in size before reading."""
    return safefs.read_bounded(_member(path, name), MAX_BYTES.get(name, MAX_EXTRA_BYTES), CheckpointError, name)


def _hash_member(path: Path, name: str) -> str:
    f = _member(path, name)
    fd = safefs.open_regular(f, CheckpointError)
    limit = MAX_BYTES.get(name, MAX_EXTRA_BYTES)
    h, total = hashlib.sha256(), 0
    with os.fdopen(fd, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            total += len(chunk)
            if total > limit:
                raise CheckpointError(f"{f}: {name} too large (over {limit:,} bytes)")
            h.update(chunk)
    return h.hexdigest()


def _read_manifest(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model folder (expected {MANIFEST}, {WEIGHTS}, ...)")
    if not os.path.lexists(path / MANIFEST):
        raise CheckpointError(f"{path} has no {MANIFEST}: not an nl2code model folder")
    try:
        manifest = json.loads(_read_member(path, MANIFEST).decode("utf-8"))
    except (ValueError, RecursionError):  # ValueError: JSON, UTF-8, a 5000-digit integer
        raise CheckpointError(f"{path / MANIFEST} is corrupted (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
        manifest.get("files"), dict
    ):
        raise CheckpointError(f"{path / MANIFEST}: unknown format (expected {FORMAT})")
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if name not in manifest["files"]:
            raise CheckpointError(f"{path / MANIFEST} does not list {name}")
    for name in manifest["files"]:
        _member(path, name)
    return manifest


def _check_digest(path: Path, name: str, actual: str, manifest: dict[str, Any]) -> None:
    if actual != manifest["files"][name]:
        raise CheckpointError(f"{path / name} does not match its sha256 in the manifest: file corrupted")


def verify(path: Path, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Check the folder against its manifest; return the parsed manifest.

    Only regular files inside the folder are opened: a listed file that is a symbolic link
    (even one into the folder), a FIFO or a device is refused, never followed or read.
    skip: names the caller hashes itself from the bytes it loads.
    """
    path = Path(path)
    manifest = _read_manifest(path)
    for name in manifest["files"]:
        if name in skip:
            continue
        if not os.path.lexists(path / name):
            raise CheckpointError(f"{path / name} is missing (listed in the manifest)")
        _check_digest(path, name, _hash_member(path, name), manifest)
    return manifest


def _parse_config(data: bytes, where: Path) -> tuple[ModelConfig, dict[str, Any]]:
    from nl2code.validate import check_model_config

    try:
        raw = json.loads(data.decode("utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("meta", {}), dict):
            raise TypeError
        cfg = from_dict(ModelConfig, raw["model"])
    except (ValueError, RecursionError, KeyError, TypeError, AttributeError):
        raise CheckpointError(f"{where} is not a valid model config") from None
    except UsageError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    try:
        check_model_config(cfg)
    except UsageError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    return cfg, raw.get("meta", {})


def load_config(path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(path)
    return _parse_config(_read_member(path, CONFIG), path / CONFIG)


# -- weights: checked against the config before anything is allocated ---------------------

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


def load_model(path: str | Path, verify_hashes: bool = True):
    """-> (model in eval mode, ModelConfig, Tokenizer, meta).

    Order: manifest, sizes, hashes, config bounds (the model's size estimate before it is
    built), the weights' header against the config; only then are tensors read, so a
    hostile folder fails before any large allocation.
    """
    from nl2code.tokenizer import Tokenizer

    path = Path(path)
    recover_dir(path)
    manifest = verify(path, skip=(WEIGHTS, CONFIG, TOKENIZER)) if verify_hashes else None
    blobs = {}
    for name in (CONFIG, TOKENIZER, WEIGHTS):
        blobs[name] = _read_member(path, name)
        if manifest is not None:
            _check_digest(path, name, hashlib.sha256(blobs[name]).hexdigest(), manifest)
    cfg, meta = _parse_config(blobs.pop(CONFIG), path / CONFIG)
    tok = Tokenizer(blobs.pop(TOKENIZER))
    if tok.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tok.vocab_size} pieces, config says {cfg.vocab_size}")
    model = model_from_weights(cfg, blobs.pop(WEIGHTS), path / WEIGHTS)
    return model, cfg, tok, meta


# files a model folder may carry beside the model itself (all covered by the manifest)
AUX_FILES = ("explain.safetensors", "explain.json", "index.sqlite", "api.json")


def package(src: str | Path, dst: str | Path, meta_update: dict[str, Any], half: bool = False,
            explain: str | Path | None = None, corpus: str | Path | None = None) -> None:
    """Copy a verified model folder to dst with extra metadata (for shipping a model).

    Only the inference files travel (weights, config, tokenizer, and the auxiliary files
    it already carries); training state stays.
    half: store the weights as float16 (half the size; loaded back as float32).
    explain: a reverse model folder (task "explain", same tokenizer) to carry along.
    corpus: a `data build` output whose retrieval index and API table to carry along.
    """
    import dataclasses

    model, cfg, tok, meta = load_model(src)
    if half:
        cfg = dataclasses.replace(cfg, weights_dtype="float16")
    extra = {name: (Path(src) / name).read_bytes() for name in AUX_FILES if (Path(src) / name).is_file()}
    if explain is not None:
        from nl2code import explain as explain_mod

        extra.update(explain_mod.attach(tok.proto, Path(explain)))
    if corpus is not None:
        for name in ("index.sqlite", "api.json"):
            f = Path(corpus) / name
            if not f.is_file():
                raise UsageError(f"{corpus} has no {name}: rebuild it with `nl2code data build`")
            extra[name] = f.read_bytes()
    save_model(Path(dst), model, cfg, tok, {**meta, **meta_update}, extra=extra)


def average(srcs: list[str | Path], dst: str | Path) -> None:
    """Average the weights of checkpoints of one run (same config and tokenizer)."""
    import torch

    if len(srcs) < 2:
        raise UsageError("averaging needs at least two model folders")
    model, cfg, tok, meta = load_model(srcs[0])
    total = {k: v.detach().double().clone() for k, v in model.state_dict().items()}
    for other in srcs[1:]:
        m2, cfg2, tok2, _ = load_model(other)
        if dataclasses_key(cfg2) != dataclasses_key(cfg) or tok2.vocab_size != tok.vocab_size:
            raise UsageError(f"{other} has another shape or tokenizer than {srcs[0]}: cannot average")
        for k, v in m2.state_dict().items():
            total[k] += v.detach().double()
    state = {k: (v / len(srcs)).to(model.state_dict()[k].dtype) for k, v in total.items()}
    model.load_state_dict(state)
    save_model(Path(dst), model, cfg, tok, {**meta, "averaged_from": [str(s) for s in srcs]})


def dataclasses_key(cfg: ModelConfig) -> dict[str, Any]:
    d = to_dict(cfg)
    d.pop("weights_dtype", None)
    d.pop("dropout", None)
    return d
