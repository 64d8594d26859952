"""Hostile model folders (issue 16, items 2, 3 and 6): links out of the folder, FIFOs and
devices, absurd configs, weights of the wrong dtype or with NaN.

Each CLI check runs in a subprocess with a timeout and a memory cap (conftest.run_limited),
so a regression fails a test instead of hanging the suite or exhausting the machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import cli, run_limited
from nl2code import weights
from nl2code.checkpoint import CONFIG, MANIFEST, TOKENIZER, WEIGHTS, load_model, sha256_file, verify
from nl2code.errors import CheckpointError

torch.set_num_threads(1)


@pytest.fixture
def folder(tiny_model, tmp_path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model, dst)
    return dst


def rehash(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


def one_line_error(rc: int, err: str) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: "), err
    assert "Traceback" not in err and "MemoryError" not in err
    return lines[0]


# -- item 2: only regular files inside the folder are opened --------------------------------

@pytest.mark.parametrize("target", ["/dev/stdin", "/dev/zero"])
def test_manifest_linked_to_a_device_is_refused(folder, target):
    """A link to /dev/stdin read the process's own input (the language server's protocol
    stream), one to /dev/zero read until MemoryError; now neither is opened."""
    (folder / MANIFEST).unlink()
    os.symlink(target, folder / MANIFEST)
    rc, _, err = run_limited(cli("model", "info", "-m", str(folder)), timeout=180, mem_mb=3000)
    assert "symbolic link" in one_line_error(rc, err)
    if target == "/dev/stdin":  # generation reads the folder the same way
        rc, _, err = run_limited(cli("print hello world", "-m", str(folder)), timeout=300)
        assert "symbolic link" in one_line_error(rc, err)


def test_fifo_manifest_does_not_block(folder):
    (folder / MANIFEST).unlink()
    os.mkfifo(folder / MANIFEST)
    rc, _, err = run_limited(cli("model", "info", "-m", str(folder)), timeout=180, mem_mb=3000)
    assert "FIFO" in one_line_error(rc, err)
    with pytest.raises(CheckpointError, match="FIFO"):
        load_model(folder)


def test_fifo_or_device_as_a_listed_file(folder):
    (folder / TOKENIZER).unlink()
    os.mkfifo(folder / TOKENIZER)
    rc, _, err = run_limited(cli("model", "info", "-m", str(folder)), timeout=180, mem_mb=3000)
    assert "FIFO" in one_line_error(rc, err)


def test_link_out_of_the_folder_is_not_followed(folder, tmp_path):
    """item 6: a listed file that is a link to a file outside the folder (here with the
    right hash, so the manifest check alone would pass) gets around the rule that a
    manifest names only files inside the folder: refused."""
    outside = tmp_path / "elsewhere.model"
    shutil.move(folder / TOKENIZER, outside)
    os.symlink(outside, folder / TOKENIZER)
    rehash(folder)
    with pytest.raises(CheckpointError, match="symbolic link"):
        verify(folder)
    with pytest.raises(CheckpointError, match="symbolic link"):
        load_model(folder)


def test_oversized_manifest_is_refused_before_reading(folder):
    with open(folder / MANIFEST, "r+b") as fh:  # sparse: 2 MB that take no disk
        fh.truncate(2 << 20)
    with pytest.raises(CheckpointError, match="too large"):
        verify(folder)


# -- item 3: config bounds and the weights' shapes before anything is built -----------------

def _edit_config(folder: Path, **model) -> None:
    raw = json.loads((folder / CONFIG).read_text())
    raw["model"].update(model)
    (folder / CONFIG).write_text(json.dumps(raw))
    rehash(folder)


@pytest.mark.parametrize("key,value", [("n_enc_layer", 10_000), ("d_model", 1 << 20)])
def test_absurd_config_is_refused_without_allocating(folder, key, value):
    """n_enc_layer = 10000 with a matching manifest allocated 5.6 GB in 26 s before failing
    (it needed ~32 GB); under a 6 GB cap it must fail at once, naming the key."""
    _edit_config(folder, **{key: value})
    rc, _, err = run_limited(cli("print hello world", "-m", str(folder)), timeout=300, mem_mb=6000)
    assert key in one_line_error(rc, err)


@pytest.mark.parametrize("key,value", [("vocab_size", 0), ("n_dec_layer", "3"), ("dropout", float("nan")),
                                       ("max_len", 2.5), ("n_head", 3)])
def test_config_values_of_the_wrong_type_or_range(folder, key, value):
    _edit_config(folder, **{key: value})
    with pytest.raises(CheckpointError, match=key):
        load_model(folder)


def test_config_that_does_not_match_the_weights(folder):
    _edit_config(folder, n_enc_layer=3)  # within bounds, but the weights have 2 layers
    with pytest.raises(CheckpointError, match="does not fit its config"):
        load_model(folder)


def _rewrite_weights(folder: Path, change) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / WEIGHTS))
    save_file({k: change(k, v) for k, v in state.items()}, str(folder / WEIGHTS))
    rehash(folder)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.float64])
def test_weights_of_another_dtype_are_refused(folder, dtype):
    """int8, bool and float16 weights used to load silently (converted by load_state_dict)."""
    _rewrite_weights(folder, lambda k, v: v.to(dtype))
    with pytest.raises(CheckpointError, match="expected float32"):
        load_model(folder)


def test_nan_weights_are_refused(folder):
    """NaN weights failed deep inside int8 quantisation; now at load, naming the tensor."""
    first = {}

    def poison(k, v):
        if not first:
            first[k] = True
            v = v.clone()
            v.view(-1)[0] = float("nan")
        return v

    _rewrite_weights(folder, poison)
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_model(folder)


def test_check_tensor_is_the_one_dtype_gate():
    """The single function a later float16-on-disk format extends."""
    weights._check_tensor("w", torch.zeros(2, 3), (2, 3), {"float32"})
    with pytest.raises(CheckpointError, match="float16"):
        weights._check_tensor("w", torch.zeros(2, 3, dtype=torch.float16), (2, 3), {"float32"})
    weights._check_tensor("w", torch.zeros(2, 3, dtype=torch.float16), (2, 3), {"float32", "float16"})
    with pytest.raises(CheckpointError, match="shape"):
        weights._check_tensor("w", torch.zeros(3, 2), (2, 3), {"float32"})


def test_the_bundled_model_still_loads():
    from nl2code.paths import DEFAULT_MODEL_DIR

    model, cfg, tok, meta = load_model(DEFAULT_MODEL_DIR)
    assert cfg.vocab_size == tok.vocab_size
