"""datasets/train_v2_gpu.py end to end, tiny: the script a lent GPU gets one short call for.

The device machine has torch, sentencepiece, safetensors, numpy, typer and rich, and no
tree-sitter or LSP packages (datasets/README.md), so the training path runs here with
those imports made to fail. What comes back (the parts under --export) must join into
model folders the engine loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from conftest import TOY

ROOT = Path(__file__).resolve().parent.parent
ABSENT_ON_DEVICE = ("tree_sitter", "tree_sitter_python", "tree_sitter_bash", "pygls", "lsprotocol")


def _corpus(folder: Path) -> Path:
    """The toy pairs under source names the fine-tuning subset keeps (conala, nl2bash)."""
    folder.mkdir(parents=True)
    lines = [json.dumps({"intent": i, "code": c, "lang": lang, "source": "conala" if lang == "python" else "nl2bash"})
             for i, c, lang in TOY]
    (folder / "train.jsonl").write_text("\n".join(lines * 5) + "\n")
    (folder / "dev.jsonl").write_text("\n".join(lines[:6]) + "\n")
    (folder / "stats.json").write_text(json.dumps({"weights": {"conala": 1.0, "nl2bash": 1.0}}))
    return folder


def _no_device_extras(folder: Path) -> Path:
    folder.mkdir()
    for name in ABSENT_ON_DEVICE:
        (folder / f"{name}.py").write_text(f"raise ImportError('{name} is not on the device machine')\n")
    return folder


def test_gpu_recipe_trains_exports_and_the_parts_load(tmp_path):
    corpus = _corpus(tmp_path / "corpus")
    block = _no_device_extras(tmp_path / "block")
    out, export = tmp_path / "run", tmp_path / "OUT"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), str(ROOT)]), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "datasets/train_v2_gpu.py"), "--corpus", str(corpus),
         "--tokenizer", str(ROOT / "nl2code/assets/default/tokenizer.model"), "--out", str(out),
         "--minutes", "0.9", "--grace", "60", "--jobs", "fwd,rev", "--tiny", "--export", str(export)],
        capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "fwd: exit 0" in proc.stdout and "rev: exit 0" in proc.stdout, proc.stdout[-3000:]
    for job in ("fwd", "rev"):  # the job's own log: a final model, with no import of what is absent
        log = (out / f"{job}.out").read_text()
        assert "ImportError" not in log, log[-2000:]
        finals = [json.loads(x) for x in (out / job / "log.jsonl").read_text().splitlines() if '"final"' in x]
        assert finals and Path(finals[-1]["model"]).is_dir()

    names = sorted(p.name for p in export.iterdir())
    assert "logs.tar.gz" in names and len(names) <= 8  # what a device call can bring back
    assert all((export / n).stat().st_size <= 16 * 1024 * 1024 for n in names)
    with tarfile.open(export / "logs.tar.gz") as tar:
        assert {"fwd.log.jsonl", "rev.log.jsonl"} <= set(tar.getnames())

    from nl2code.checkpoint import load_model

    for job, task in (("fwd", "code"), ("rev", "explain")):
        parts = sorted(export.glob(f"{job}.tar.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
        assert parts, names
        joined = tmp_path / f"{job}.tar"
        joined.write_bytes(b"".join(p.read_bytes() for p in parts))
        with tarfile.open(joined) as tar:
            tar.extractall(tmp_path / "back", filter="data")
        model, cfg, tok, meta = load_model(tmp_path / "back" / job)
        assert meta.get("task", "code") == task
        assert meta["trained_on"] == "cpu" and "trained_on" in meta["package_meta"]
        assert next(model.parameters()).dtype.is_floating_point
