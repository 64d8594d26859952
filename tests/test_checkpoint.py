"""Checkpoints are data, not pickles: verified by sha256, never unpickled, written atomically."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from nl2code import checkpoint
from nl2code.checkpoint import (CONFIG, MANIFEST, TOKENIZER, WEIGHTS, load_model, recover_dir, save_model,
                                sha256_file, verify, write_atomic_dir)
from nl2code.errors import CheckpointError

torch.set_num_threads(1)


@pytest.fixture
def folder(tiny_model, tmp_path) -> Path:
    """A private copy of the tiny model to tamper with."""
    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst)
    return dst


def rehash(folder: Path) -> None:
    """Rewrite the manifest so every file matches it again (a forger's move)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def load_error(folder: Path, **kw) -> str:
    with pytest.raises(CheckpointError) as exc:
        load_model(folder, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


class PlantMarker:
    """Unpickling this creates a file: proof that untrusted bytes were unpickled."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_save_load_round_trip(tiny_model, tmp_path):
    model, cfg, tok, meta = load_model(tiny_model)
    out = tmp_path / "copy"
    save_model(out, model, cfg, tok, {"note": "hello", "languages": ["python"]}, extra={"README": b"hi"})
    model2, cfg2, tok2, meta2 = load_model(out)
    assert cfg2 == cfg
    assert meta2 == {"note": "hello", "languages": ["python"]}
    assert tok2.proto == tok.proto
    s1, s2 = model.state_dict(), model2.state_dict()
    assert s1.keys() == s2.keys()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert not model2.training
    manifest = verify(out)
    assert set(manifest["files"]) == {WEIGHTS, CONFIG, TOKENIZER, "README"}
    assert sorted(p.name for p in out.iterdir()) == sorted([WEIGHTS, CONFIG, TOKENIZER, MANIFEST, "README"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp leftovers


def test_truncated_weights(folder):
    data = (folder / WEIGHTS).read_bytes()
    (folder / WEIGHTS).write_bytes(data[: len(data) // 2])
    assert "does not match its sha256" in load_error(folder)
    rehash(folder)  # even with a matching manifest, a cut file is no safetensors
    assert "not valid safetensors" in load_error(folder)


@pytest.mark.parametrize("name", [WEIGHTS, CONFIG, TOKENIZER])
def test_flipped_byte(folder, name):
    data = bytearray((folder / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / name).write_bytes(bytes(data))
    msg = load_error(folder)
    assert name in msg and "corrupted" in msg


def test_wrong_manifest_hash(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][CONFIG] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert "sha256" in load_error(folder)


def test_missing_manifest(folder):
    (folder / MANIFEST).unlink()
    assert MANIFEST in load_error(folder)


@pytest.mark.parametrize("content,match", [
    ("{not json", "not JSON"),
    (json.dumps({"format": "someone-else/9", "files": {}}), "unknown format"),
    (json.dumps([1, 2]), "unknown format"),
    (json.dumps({"format": checkpoint.FORMAT, "files": {CONFIG: "x"}}), "does not list"),
])
def test_bad_manifest(folder, content, match):
    (folder / MANIFEST).write_text(content)
    assert match in load_error(folder)


def test_manifest_naming_file_outside_folder(folder, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("x")
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"]["../secret.txt"] = sha256_file(outside)
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert "outside the folder" in load_error(folder)


def test_missing_listed_file(folder):
    (folder / TOKENIZER).unlink()
    assert "missing" in load_error(folder)


@pytest.mark.parametrize("via", ["plain pickle", "torch.save"])
def test_pickle_planted_as_weights_is_never_unpickled(folder, tmp_path, via):
    marker = tmp_path / "UNPICKLED"
    if via == "plain pickle":
        (folder / WEIGHTS).write_bytes(pickle.dumps(PlantMarker(marker)))
    else:
        torch.save({"embed.weight": PlantMarker(marker)}, folder / WEIGHTS)
    rehash(folder)  # the manifest now vouches for the planted file
    verify(folder)
    msg = load_error(folder)
    assert WEIGHTS in msg
    assert not marker.exists()
    # sanity: the planted bytes really would run code if unpickled
    if via == "plain pickle":
        pickle.loads((folder / WEIGHTS).read_bytes())
        assert marker.exists()


def test_config_with_unknown_keys(folder):
    raw = json.loads((folder / CONFIG).read_text())
    raw["model"]["n_layerz"] = 4
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)
    msg = load_error(folder)
    assert "n_layerz" in msg and CONFIG in msg


@pytest.mark.parametrize("content", ["{not json", json.dumps({"meta": {}}), json.dumps({"model": [1]})])
def test_config_not_a_model_config(folder, content):
    (folder / CONFIG).write_text(content)
    rehash(folder)
    assert "not a valid model config" in load_error(folder)


def test_tokenizer_config_vocab_mismatch(folder):
    raw = json.loads((folder / CONFIG).read_text())
    raw["model"]["vocab_size"] += 7
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)
    msg = load_error(folder)
    assert "tokenizer has" in msg and "config says" in msg


def test_weights_do_not_fit_config(folder):
    raw = json.loads((folder / CONFIG).read_text())
    raw["model"]["d_ff"] *= 2
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)
    assert "does not fit its config" in load_error(folder)


def test_not_a_folder(tmp_path):
    assert "not found" in load_error(tmp_path / "nothing")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    assert "not a model folder" in load_error(f)


def test_corrupted_tokenizer_with_matching_hash(folder):
    (folder / TOKENIZER).write_bytes(b"\x00garbage" * 10)
    rehash(folder)
    assert "tokenizer" in load_error(folder)


# --- atomic writes -----------------------------------------------------------------------------

def test_failure_inside_fill_leaves_previous_folder(tmp_path):
    final = tmp_path / "run" / "last"

    def good(d: Path) -> None:
        (d / "a.txt").write_text("old")

    write_atomic_dir(final, good)

    def bad(d: Path) -> None:
        (d / "a.txt").write_text("new, half written")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic_dir(final, bad)
    assert (final / "a.txt").read_text() == "old"
    assert sorted(p.name for p in final.parent.iterdir()) == ["last"]  # no temp folders left


def test_failed_save_model_keeps_previous_model(folder, monkeypatch):
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model, cfg, tok, meta = load_model(folder)

    def boom(path):
        raise OSError("no space left on device")

    monkeypatch.setattr(tok, "save", boom)
    with pytest.raises(OSError):
        save_model(folder, model, cfg, tok, {"new": True})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    load_model(folder)


@pytest.mark.parametrize("message, errno_", [
    ('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })', 28),
    ("Error while serializing: something else", None),
])
def test_safetensors_write_failure_is_an_oserror(folder, monkeypatch, message, errno_):
    """safetensors reports a full disk as its own SafetensorError; save_model raises it
    as OSError (the CLI prints those in the system's words) and keeps the old model."""
    import safetensors.torch
    from safetensors import SafetensorError

    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model, cfg, tok, meta = load_model(folder)

    def full(*args, **kwargs):
        raise SafetensorError(message)

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as info:
        save_model(folder, model, cfg, tok, {"new": True})
    assert info.value.errno == errno_
    if errno_:
        assert info.value.strerror == os.strerror(errno_) and info.value.filename.endswith("model.safetensors")
    else:
        assert "cannot write" in str(info.value)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_overwrite_replaces_folder(tmp_path):
    final = tmp_path / "m"
    write_atomic_dir(final, lambda d: (d / "one").write_text("1"))
    write_atomic_dir(final, lambda d: (d / "two").write_text("2"))
    assert [p.name for p in final.iterdir()] == ["two"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_recover_after_crash_between_renames(folder):
    old = folder.parent / f".{folder.name}.old"
    folder.rename(old)  # the state a crash after the first rename leaves
    recover_dir(folder)
    assert folder.is_dir() and not old.exists()
    folder.rename(old)
    load_model(folder)  # load_model recovers by itself
    assert folder.is_dir()


def test_tokenizer_version_saved_and_checked(folder):
    from nl2code.tokenizer import TOKENIZER_VERSION

    raw = json.loads((folder / CONFIG).read_text())
    assert raw["tokenizer_version"] == TOKENIZER_VERSION
    raw["tokenizer_version"] = TOKENIZER_VERSION + 1
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)
    msg = load_error(folder)
    assert f"tokenizer is version {TOKENIZER_VERSION + 1}" in msg and "retrain" in msg


def test_model_saved_before_tokenizer_version_still_loads(folder):
    raw = json.loads((folder / CONFIG).read_text())
    del raw["tokenizer_version"]
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)
    model, cfg, tok, meta = load_model(folder)
    assert tok.vocab_size == cfg.vocab_size


def test_saved_folders_are_group_readable_not_world(tiny_model, tmp_path):
    model, cfg, tok, meta = load_model(tiny_model)
    old = os.umask(0o077)  # even under a strict umask the group may read
    try:
        save_model(tmp_path / "m", model, cfg, tok, meta)
    finally:
        os.umask(old)
    assert (tmp_path / "m").stat().st_mode & 0o777 == checkpoint.FOLDER_MODE == 0o750
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "m").iterdir()}
    assert set(modes.values()) == {checkpoint.FILE_MODE} == {0o640}, modes


def test_trained_languages_read_without_weights(folder):
    (folder / WEIGHTS).write_bytes(b"not read")
    assert checkpoint.trained_languages(folder) == json.loads((folder / CONFIG).read_text())["meta"]["languages"]
