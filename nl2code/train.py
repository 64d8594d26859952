"""The training loop: teacher forcing, label smoothing, AdamW with warm-up, token budgets.

A training folder holds `last/` (model + train_state.pt, for --resume) and `best/` (the
model with the best dev BLEU), plus `log.jsonl`. Both are written atomically. The data
order is a pure function of (seed, epoch), and the RNG state is saved with the optimizer,
so a resumed run continues exactly as an uninterrupted one would.

`max_minutes` limits each invocation: a run resumed with the same config trains up to
max_minutes more (the log's "elapsed" keeps counting the whole run's time).

Under `torchrun --nproc_per_node N` the same code runs DDP (gloo on CPU, NCCL on GPU):
each rank takes every N-th batch; only rank 0 evaluates and writes.

The pieces: nl2code/batches.py (encoding, batches, lr schedule), nl2code/trainrun.py
(progress, corpus, device, dev evaluation, saved state); here setup, the loop, keep-best.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nl2code import checkpoint, noise, safefs
from nl2code.batches import Encoded, collate, encode_examples, epoch_batches, lr_at, tokenizer_texts
from nl2code.config import ModelConfig, TrainConfig, from_dict, to_dict
from nl2code.errors import DataError, UsageError
from nl2code.languages import LANGUAGES, PAD
from nl2code.runguard import StopFlag, TrainingInterrupted, check_batches, lock_run_folder  # noqa: F401
from nl2code.tokenizer import Tokenizer
from nl2code.trainrun import (STATE, Progress, autocast, dev_bleu, dev_loss, dist_setup,  # noqa: F401
                              keep_checkpoint, load_corpus, resolve_device, restore_state, state_blob)
from nl2code.validate import check_model_config, check_train_config


@dataclass
class Run:
    """One invocation of a training run: what the loop reads and updates."""

    cfg: TrainConfig
    model_cfg: ModelConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    model: Any
    tok: Tokenizer
    opt: Any
    train_data: list[Encoded]
    dev_data: list[Encoded]
    weights: dict[str, float]
    log: Callable[[dict], None]
    stop: StopFlag
    meta: dict = field(default_factory=dict)
    progress: Progress = field(default_factory=Progress)
    started: float = field(default_factory=time.monotonic)  # this invocation's start
    elapsed_before: float = 0.0  # training time of earlier invocations (resume)
    last_save: float = field(default_factory=time.monotonic)
    ddp: Any = None
    denoiser: noise.Denoiser | None = None  # denoising examples, refreshed each epoch

    def tick(self) -> None:
        self.progress.elapsed = self.elapsed_before + self.session_seconds()

    def session_seconds(self) -> float:
        return time.monotonic() - self.started

    def out_of_time(self) -> bool:
        return bool(self.cfg.max_minutes) and self.session_seconds() >= self.cfg.max_minutes * 60


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False,
          log: Callable[[dict], None] | None = None) -> Path:
    """Train; returns the folder of the best model. log receives one dict per event."""
    if not cfg.out:
        raise UsageError("training needs an output folder (--out)")
    check_train_config(cfg)
    check_model_config(model_cfg)
    rank, world = dist_setup()
    out = Path(cfg.out)
    stop = StopFlag(rank == 0)
    lock = None
    try:
        lock = lock_run_folder(out, rank)
        run = _setup(cfg, model_cfg, resume, run_log(out, rank, log), rank, world, out, stop)
        return _loop(run)
    finally:
        stop.restore()
        if lock is not None:
            lock.release()


def run_log(out: Path, rank: int, log: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
    """Each event as one line of out/log.jsonl (rank 0 only: one writer under torchrun), then
    to log (the CLI prints it)."""
    import json

    def emit(rec: dict) -> None:
        if rank == 0:  # never through a link planted at log.jsonl
            out.mkdir(parents=True, exist_ok=True)
            safefs.append_line(out / "log.jsonl", json.dumps(rec), UsageError)
        if log is not None:
            log(rec)

    return emit


def _check_folder(out: Path, resume: bool) -> None:
    checkpoint.recover_dir(out / "last")
    if resume and not (out / "last" / STATE).is_file():
        raise UsageError(f"nothing to resume: {out / 'last' / STATE} not found")
    if not resume and (out / "last").exists():
        raise UsageError(f"{out} already holds a training run: use --resume or another --out")


def _model_and_tokenizer(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool, train_ex, rank: int,
                         world: int, out: Path):
    """The run's model and tokenizer: the last checkpoint, a model to fine-tune, or new ones."""
    if resume:
        model, model_cfg, tok, _ = checkpoint.load_model(out / "last")
        return model, model_cfg, tok
    if cfg.init_from:
        model, model_cfg, tok, _ = checkpoint.load_model(cfg.init_from)
        return model, model_cfg, tok
    if cfg.tokenizer:
        tok = Tokenizer.load(Path(cfg.tokenizer))
    elif rank == 0:
        tok = Tokenizer.train(tokenizer_texts(train_ex), cfg.vocab_size)
        if world > 1:
            out.mkdir(parents=True, exist_ok=True)
            safefs.write_atomic(out / "tokenizer.model", tok.proto)  # never through a link
    if world > 1 and not cfg.tokenizer:
        torch.distributed.barrier()
        if rank != 0:
            tok = Tokenizer.load(out / "tokenizer.model")
    model_cfg.vocab_size = tok.vocab_size
    torch.manual_seed(cfg.seed)
    from nl2code.model import build_model

    return build_model(model_cfg), model_cfg, tok


def _setup(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool, log: Callable[[dict], None],
           rank: int, world: int, out: Path, stop: StopFlag) -> Run:
    import random

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    _check_folder(out, resume)
    train_ex, dev_ex, weights = load_corpus(Path(cfg.corpus))
    weights = {**weights, **cfg.source_weights}
    model, model_cfg, tok = _model_and_tokenizer(cfg, model_cfg, resume, train_ex, rank, world, out)
    model.to(device)
    model.train()
    # checkpoints of a run are float32 (resume must be exact); `model package --half` halves
    model_cfg = replace(model_cfg, weights_dtype="float32")
    if cfg.context_k >= 0 and cfg.task != "explain" and not resume:
        model_cfg = replace(model_cfg, context_k=cfg.context_k)
    if model_cfg.context_k and cfg.task != "explain" and not any(e.context for e in train_ex):
        raise DataError(f"{cfg.corpus}: the model takes retrieved context (context_k = {model_cfg.context_k}) "
                        "but the corpus has none: python -m nl2code.context --corpus ... --out ...")
    # the model has positions for max_len tokens: longer sources are cut, longer targets skipped
    lengths = replace(cfg, max_src_len=min(cfg.max_src_len, model_cfg.max_len),
                      max_tgt_len=min(cfg.max_tgt_len, model_cfg.max_len))
    train_data = encode_examples(train_ex, tok, lengths, model_cfg)
    dev_data = encode_examples(dev_ex, tok, lengths, model_cfg)
    if not train_data:
        raise DataError(f"{cfg.corpus}: no usable training examples")
    pairs = len(train_data)
    denoiser = noise.build(train_data, tok.lang_ids, lengths, weights)
    if denoiser is not None:  # the ratio alone sets their share: weight 1
        train_data, weights = train_data + denoiser.items, {**weights, noise.SOURCE: 1.0}
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    run = Run(cfg, model_cfg, out, rank, world, device, model, tok, opt, train_data, dev_data, weights, log, stop,
              denoiser=denoiser)
    if resume:
        run.progress = restore_state(out / "last", opt)
        run.elapsed_before = run.progress.elapsed
        if rank == 0:
            log({"event": "resumed", "step": run.progress.step})
    else:
        torch.manual_seed(cfg.seed + 1)
        random.seed(cfg.seed)
    run.ddp = model
    if world > 1:
        run.ddp = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    # the engine reads "languages" to refuse a language the model never saw
    languages = [lang for lang in LANGUAGES if any(e.example.lang == lang for e in train_data)]
    run.meta = {"train_config": to_dict(cfg), "corpus_size": pairs, "languages": languages, "task": cfg.task}
    if denoiser is not None:
        run.meta["denoise"] = {"examples_per_epoch": len(denoiser.items), "codes": len(denoiser.codes)}
        if rank == 0:
            log({"event": "denoise", **run.meta["denoise"]})
    return run


def _save_last(run: Run) -> None:
    if run.rank != 0:
        return
    checkpoint.save_model(run.out / "last", run.model, run.model_cfg, run.tok,
                          {**run.meta, **run.progress.as_dict()},
                          extra={STATE: state_blob(run.opt, run.progress)})
    run.last_save = time.monotonic()


def _interrupted(run: Run) -> None:
    """A signal arrived: the step is finished; save, then leave with TrainingInterrupted."""
    _save_last(run)
    step = run.progress.step
    run.log({"event": "interrupted", "step": step})
    name = signal.Signals(run.stop.signum).name
    raise TrainingInterrupted(run.stop.signum, f"interrupted by {name} at step {step}; "
                                               f"{run.out / 'last'} saved: continue with --resume")


def _step(run: Run, items: list[Encoded]) -> tuple[float, int]:
    """One optimizer step on a batch: (loss, target tokens)."""
    batch = collate(items)
    n_tok = int((batch[3] != PAD).sum())  # counted on the host: no device sync
    src, mask, tin, tout = (t.to(run.device, non_blocking=True) for t in batch)
    for g in run.opt.param_groups:
        g["lr"] = lr_at(run.progress.step + 1, run.cfg)
    with autocast(run.device):
        logits = run.ddp(src, mask, tin)
    loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tout.reshape(-1),
                           ignore_index=PAD, label_smoothing=run.cfg.label_smoothing)
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), run.cfg.clip_norm)
    run.opt.step()
    p = run.progress
    p.step, p.batch, p.tokens = p.step + 1, p.batch + 1, p.tokens + n_tok
    run.tick()
    return loss, n_tok


def _evaluate(run: Run) -> bool:
    """Dev loss and BLEU; keep the best model; save last. True when patience ran out."""
    p, cfg = run.progress, run.cfg
    dl = dev_loss(run.model, run.dev_data, cfg) if run.dev_data else float("nan")
    bleu = dev_bleu(run.model, run.tok, run.dev_data, cfg.dev_bleu_examples, cfg.task)
    run.log({"event": "eval", "step": p.step, "dev_loss": dl, "dev_bleu": bleu, "best": max(bleu, p.best)})
    if bleu > p.best:
        p.best, p.bad_evals = bleu, 0
        checkpoint.save_model(run.out / "best", run.model, run.model_cfg, run.tok,
                              {**run.meta, **p.as_dict(), "dev_loss": dl, "dev_bleu": bleu})
    else:
        p.bad_evals += 1
    _save_last(run)
    if cfg.keep_checkpoints > 0:
        keep_checkpoint(run.out, run.model, run.model_cfg, run.tok, {**run.meta, **p.as_dict(), "dev_bleu": bleu},
                        p.step, cfg.keep_checkpoints)
    if cfg.patience and p.bad_evals >= cfg.patience:
        run.log({"event": "early_stop", "step": p.step})
        return True
    return False


def _all_stop(run: Run, last_step: bool) -> bool:
    """Under DDP the ranks stop together: one that stopped alone would leave the others
    waiting in all-reduce forever."""
    if run.world <= 1:
        return last_step
    flag = torch.tensor([float(bool(last_step))])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _epoch(run: Run) -> bool:
    """Train the rest of the current epoch; True when the run is finished."""
    cfg, p = run.cfg, run.progress
    if run.denoiser is not None:
        run.denoiser.refresh(p.epoch)
    batches = epoch_batches(run.train_data, cfg, run.weights, p.epoch, should_stop=run.stop)
    if run.stop():
        _interrupted(run)
    check_batches(batches, run.world, p.epoch, cfg.corpus)
    batches = batches[run.rank::run.world]
    tok_window, t_window = 0, time.monotonic()
    while p.batch < len(batches):
        loss, n_tok = _step(run, [run.train_data[i] for i in batches[p.batch]])
        tok_window += n_tok
        if p.step % cfg.log_every == 0 or p.step == 1:
            now = time.monotonic()
            run.log({"event": "step", "step": p.step, "epoch": p.epoch, "loss": loss.item(),
                     "lr": lr_at(p.step, cfg), "tok_per_s": tok_window / max(now - t_window, 1e-9),
                     "elapsed": p.elapsed, "session": run.session_seconds()})
            tok_window, t_window = 0, now
        last_step = p.step >= cfg.max_steps or run.out_of_time()
        if run.rank == 0 and (p.step % cfg.eval_every == 0 or last_step):
            last_step = _evaluate(run) or last_step
        elif time.monotonic() - run.last_save >= cfg.save_every_minutes * 60:
            _save_last(run)
            run.log({"event": "checkpoint", "step": p.step})
        if run.stop():
            _interrupted(run)
        if _all_stop(run, last_step):
            return True
    p.epoch, p.batch = p.epoch + 1, 0
    return False


def _loop(run: Run) -> Path:
    finished = run.progress.step >= run.cfg.max_steps  # resuming a run that already ended
    run.stop.deferred = True
    while not finished:
        finished = _epoch(run)
    if run.world > 1:
        torch.distributed.barrier()
    if run.rank == 0 and not (run.out / "best").exists():
        checkpoint.save_model(run.out / "best", run.model, run.model_cfg, run.tok,
                              {**run.meta, **run.progress.as_dict()})
    return run.out / "best"


def load_train_config(path: str | Path) -> tuple[TrainConfig, ModelConfig]:
    """A TOML file with [train] and [model] tables; every value checked (UsageError naming it)."""
    from nl2code.tomlload import load_toml

    raw = load_toml(path, UsageError, "training config")
    unknown = set(raw) - {"train", "model"}
    if unknown:
        raise UsageError(f"{path}: unknown table(s) {sorted(unknown)}; use [train] and [model]")
    for table in ("train", "model"):
        if not isinstance(raw.get(table, {}), dict):
            raise UsageError(f"{path}: {table} must be a table ([{table}])")
    try:
        tcfg, mcfg = from_dict(TrainConfig, raw.get("train", {})), from_dict(ModelConfig, raw.get("model", {}))
        check_train_config(tcfg)
        check_model_config(mcfg)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return tcfg, mcfg
