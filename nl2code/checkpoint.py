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
from nl2code.tokenizer import TOKENIZER_VERSION
from nl2code.weights import model_from_weights  # noqa: F401  (callers import it from here)

FORMAT = "nl2code-model/1"
WEIGHTS, CONFIG, TOKENIZER, MANIFEST = "model.safetensors", "config.json", "tokenizer.model", "manifest.json"
FOLDER_MODE, FILE_MODE = 0o750, 0o640  # model and checkpoint folders: owner and group may read


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
        # readable by the owner's group (a shared training box), never by everyone: mkdtemp
        # made the folder 0700 and the files follow the umask
        os.chmod(tmp, FOLDER_MODE)
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            os.chmod(f, FILE_MODE)
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
        (tmp / CONFIG).write_text(json.dumps({"model": to_dict(cfg), "meta": meta or {},
                                             "tokenizer_version": TOKENIZER_VERSION}, indent=2))
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
    # models saved before the version was recorded have none: they use version 1
    version = raw.get("tokenizer_version", 1)
    if version != TOKENIZER_VERSION:
        raise CheckpointError(f"{where}: the model's tokenizer is version {version!r}; this nl2code reads "
                              f"version {TOKENIZER_VERSION}: retrain the model or use the nl2code it was made with")
    return cfg, raw.get("meta", {})


def load_config(path: Path) -> tuple[ModelConfig, dict[str, Any]]:
    path = Path(path)
    return _parse_config(_read_member(path, CONFIG), path / CONFIG)


def trained_languages(path: Path) -> list[str]:
    """The languages a model folder was trained on (its config), without loading weights."""
    from nl2code.languages import LANGUAGES

    path = Path(path)
    manifest = _read_manifest(path)  # the same checks and messages as loading the model
    data = _read_member(path, CONFIG)
    _check_digest(path, CONFIG, hashlib.sha256(data).hexdigest(), manifest)
    langs = _parse_config(data, path / CONFIG)[1].get("languages")
    return [x for x in langs if x in LANGUAGES] if isinstance(langs, list) else ["python", "bash"]


def load_model(path: str | Path):
    """-> (model in eval mode, ModelConfig, Tokenizer, meta).

    Order: manifest, sizes, hashes, config bounds (the model's size estimate before it is
    built), the weights' header against the config; only then are tensors read, so a
    hostile folder fails before any large allocation.
    """
    from nl2code.tokenizer import Tokenizer

    path = Path(path)
    recover_dir(path)
    manifest = verify(path, skip=(WEIGHTS, CONFIG, TOKENIZER))
    blobs = {}
    for name in (CONFIG, TOKENIZER, WEIGHTS):
        blobs[name] = _read_member(path, name)
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
    given = sorted(set(package_notes(meta)) | set(meta_update))  # every packaging's notes, older ones' too
    save_model(Path(dst), model, cfg, tok, {**meta, **meta_update, PACKAGE_META: given}, extra=extra)


PACKAGE_META = "package_meta"  # the meta keys given with `model package --meta/--meta-file`
# what training itself records (nl2code/train.py); everything else in an older model's meta
# was given when it was packaged
_TRAINING_META = {"train_config", "corpus_size", "languages", "task", "step", "epoch", "batch", "best",
                  "bad_evals", "elapsed", "tokens", "dev_loss", "dev_bleu", "averaged_from"}


def package_notes(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata given with `model package --meta KEY=JSON` (notes, version, scores ...)."""
    keys = meta.get(PACKAGE_META)
    if not isinstance(keys, list):
        keys = [k for k in meta if k not in _TRAINING_META]
    return {k: meta[k] for k in keys if isinstance(k, str) and k in meta and k != PACKAGE_META}


def average(srcs: list[str | Path], dst: str | Path) -> None:
    """Average the weights of checkpoints of one run (same config and tokenizer)."""
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
