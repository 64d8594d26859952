"""Training's helpers around the loop: its progress, the corpus, the device, dev evaluation,
and the saved training state that --resume reads back.
"""

from __future__ import annotations

import dataclasses
import io
import os
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from nl2code import checkpoint, safefs, slots
from nl2code.batches import Encoded, collate
from nl2code.config import DecodeConfig, TrainConfig
from nl2code.data.records import Example, read_jsonl
from nl2code.errors import CheckpointError, DataError, UsageError
from nl2code.languages import PAD
from nl2code.runguard import stats_weights
from nl2code.tokenizer import Tokenizer

STATE = "train_state.pt"


@dataclass
class Progress:
    """Where a run stands; saved with every checkpoint (train_state.pt "progress", config meta)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # batches of this epoch done (this rank's share)
    best: float = -1.0  # best dev BLEU so far
    bad_evals: int = 0  # evaluations since the best one
    elapsed: float = 0.0  # seconds of training over every invocation of the run
    tokens: int = 0  # target tokens trained on

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> "Progress":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


def dist_setup() -> tuple[int, int]:
    """(rank, world size): joins the torchrun process group when there is one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def load_corpus(corpus: Path) -> tuple[list[Example], list[Example], dict[str, float]]:
    corpus = Path(corpus)
    for name in ("train.jsonl", "dev.jsonl"):
        if not (corpus / name).is_file():
            raise DataError(f"{corpus / name} not found: build a corpus with `nl2code data build`")
    weights = stats_weights(corpus / "stats.json")
    return read_jsonl(corpus / "train.jsonl"), read_jsonl(corpus / "dev.jsonl"), weights


def resolve_device(name: str) -> torch.device:
    if name in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown training device {name!r}: use auto, cpu or cuda") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda asked for, but PyTorch sees no CUDA GPU")
    return dev


def autocast(device: torch.device):
    """bf16 autocast on CUDA (weights and optimizer stay float32); nothing on CPU."""
    import contextlib

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def dev_loss(model, dev: list[Encoded], cfg: TrainConfig) -> float:
    model.eval()
    total = count = 0.0
    device = _model_device(model)
    with torch.inference_mode():
        for c in range(0, len(dev), 64):
            src, mask, tin, tout = (t.to(device) for t in collate(dev[c : c + 64]))
            with autocast(device):
                logits = model(src, mask, tin).float()
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1),
                                   ignore_index=PAD, reduction="sum")
            total += float(loss)
            count += int((tout != PAD).sum())
    model.train()
    return total / max(count, 1)


def dev_bleu(model, tok: Tokenizer, dev: list[Encoded], n: int, task: str = "code") -> float:
    """Greedy decoding of the first n dev examples of the first dev source, CoNaLa BLEU.

    For the reverse model (task "explain") the slot-canonical intent is the reference."""
    from nl2code.decode import decode
    from nl2code.metrics import conala_bleu

    if not dev or n <= 0:
        return 0.0
    first = dev[0].source
    items = [e for e in dev if e.source == first][:n]
    model.eval()
    hyps, refs = [], []
    cfg = DecodeConfig(strategy="greedy", n_best=1, max_len=min(100, model.cfg.max_len - 1))
    device = _model_device(model)
    for c in range(0, len(items), 32):
        chunk = items[c : c + 32]
        src, mask, _, _ = collate(chunk)
        with autocast(device):
            decoded = decode(model, src.to(device), mask.to(device), cfg)
        for e, h in zip(chunk, decoded):
            if task == "explain":
                hyps.append(tok.decode(h[0].ids))
                refs.append(tok.decode(e.tgt[:-1]))
                continue
            _, s = slots.canonicalize(e.example.intent)
            hyps.append(slots.restore(tok.decode(h[0].ids), s, e.example.lang))
            refs.append(e.example.code)
    model.train()
    return conala_bleu(refs, hyps)


def state_blob(opt, progress: Progress) -> bytes:
    """The optimizer, the progress and both RNG states, as torch.save bytes (train_state.pt)."""
    py = random.getstate()
    blob = {"optimizer": opt.state_dict(), "progress": progress.as_dict(),
            "rng_torch": torch.get_rng_state(), "rng_py": [py[0], list(py[1]), py[2]]}
    buf = io.BytesIO()
    torch.save(blob, buf)
    return buf.getvalue()


def restore_state(folder: Path, opt) -> Progress:
    """Read folder/train_state.pt back into the optimizer and the RNGs; the saved progress."""
    path = folder / STATE
    try:  # weights_only: never unpickle arbitrary objects; never through a link
        blob = safefs.read_bounded(path, checkpoint.MAX_EXTRA_BYTES, CheckpointError, STATE)
        saved = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
    except CheckpointError:
        raise
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise CheckpointError(f"{path} is not a valid training state: {first}") from None
    opt.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng_torch"])
    random.setstate((saved["rng_py"][0], tuple(saved["rng_py"][1]), saved["rng_py"][2]))
    return Progress.from_dict(saved["progress"])


def keep_checkpoint(out: Path, model, model_cfg, tok, meta: dict, step: int, keep: int) -> None:
    """Save the model as out/step-NNNNNNN and delete all but the newest `keep` of them."""
    import shutil

    checkpoint.save_model(out / f"step-{step:07d}", model, model_cfg, tok, meta)
    kept = sorted(p for p in out.iterdir() if p.name.startswith("step-") and p.is_dir())
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
