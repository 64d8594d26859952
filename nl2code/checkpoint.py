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


def verify(path: Path) -> dict[str, Any]:
    """Check the folder against its manifest; return the parsed manifest."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a model folder (expected {MANIFEST}, {WEIGHTS}, ...)")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST}: not an nl2code model folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{path / MANIFEST} is corrupted (not JSON)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
        manifest.get("files"), dict
    ):
        raise CheckpointError(f"{path / MANIFEST}: unknown format (expected {FORMAT})")
    for name in (WEIGHTS, CONFIG, TOKENIZER):
        if name not in manifest["files"]:
            raise CheckpointError(f"{path / MANIFEST} does not list {name}")
    for name, digest in manifest["files"].items():
        f = path / name
        if Path(name).name != name:
            raise CheckpointError(f"{path / MANIFEST} names a file outside the folder: {name!r}")
        if not f.is_file():
            raise CheckpointError(f"{f} is missing (listed in the manifest)")
        if sha256_file(f) != digest:
            raise CheckpointError(f"{f} does not match its sha256 in the manifest: file corrupted")
    return manifest


def load_config(path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    try:
        raw = json.loads((Path(path) / CONFIG).read_text(encoding="utf-8"))
        cfg = from_dict(ModelConfig, raw["model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        raise CheckpointError(f"{Path(path) / CONFIG} is not a valid model config") from None
    except UsageError as exc:
        raise CheckpointError(f"{Path(path) / CONFIG}: {exc}") from None
    return cfg, raw.get("meta", {})


def load_model(path: str | Path, verify_hashes: bool = True):
    """-> (model in eval mode, ModelConfig, Tokenizer, meta)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from nl2code.model import build_model
    from nl2code.tokenizer import Tokenizer

    path = Path(path)
    recover_dir(path)
    if verify_hashes:
        verify(path)
    cfg, meta = load_config(path)
    tok = Tokenizer.load(path / TOKENIZER)
    if tok.vocab_size != cfg.vocab_size:
        raise CheckpointError(f"{path}: tokenizer has {tok.vocab_size} pieces, config says {cfg.vocab_size}")
    try:
        state = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path / WEIGHTS} is not valid safetensors: {exc}") from None
    import torch

    if cfg.weights_dtype == "float16":  # stored in half precision: compute in float32
        state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    model = build_model(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{path / WEIGHTS} does not fit its config: {first}") from None
    model.eval()
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

        tmp_tok = Path(tempfile.mkdtemp())
        try:
            tok.save(tmp_tok / TOKENIZER)
            extra.update(explain_mod.attach(tmp_tok, Path(explain)))
        finally:
            shutil.rmtree(tmp_tok, ignore_errors=True)
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
