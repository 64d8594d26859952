"""The training loop: teacher forcing, label smoothing, AdamW with warm-up, token budgets.

A training folder holds `last/` (model + train_state.pt, for --resume) and `best/` (the
model with the best dev BLEU), plus `log.jsonl`. Both are written atomically. The data
order is a pure function of (seed, epoch), and the RNG state is saved with the optimizer,
so a resumed run continues exactly as an uninterrupted one would.

Under `torchrun --nproc_per_node N` the same code runs DDP (gloo on CPU, NCCL on GPU):
each rank takes every N-th batch; only rank 0 evaluates and writes.
"""

from __future__ import annotations

import io
import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from nl2code import checkpoint, safefs, slots
from nl2code.config import DecodeConfig, ModelConfig, TrainConfig, from_dict, to_dict
from nl2code.data.records import Example, read_jsonl
from nl2code.errors import CheckpointError, DataError, UsageError
from nl2code.tokenizer import EOS, LANGUAGES, PAD, Tokenizer
from nl2code.runguard import StopFlag, TrainingInterrupted, check_batches, lock_run_folder, stats_weights
from nl2code.validate import check_model_config, check_train_config

STATE = "train_state.pt"


@dataclass
class Encoded:
    src: list[int]
    tgt: list[int]  # code ids + EOS
    source: str
    example: Example


_POOL_STATE: tuple | None = None  # (tokenizer, config) inherited by forked encode workers


def _encode_chunk(chunk: list[Example]) -> list[Encoded]:
    tok, cfg, model_cfg = _POOL_STATE
    return _encode_serial(chunk, tok, cfg, model_cfg)


def encode_examples(examples: list[Example], tok: Tokenizer, cfg: TrainConfig,
                    model_cfg: ModelConfig | None = None) -> list[Encoded]:
    """Encode a corpus; large ones in forked worker processes (same result, in order).
    model_cfg.context_k > 0: each example's retrieved context joins its source."""
    global _POOL_STATE
    workers = min(os.cpu_count() or 1, 16)
    if len(examples) < 50_000 or workers < 4 or "fork" not in __import__("multiprocessing").get_all_start_methods():
        return _encode_serial(examples, tok, cfg, model_cfg)
    import multiprocessing

    size = -(-len(examples) // (workers * 4))
    chunks = [examples[i : i + size] for i in range(0, len(examples), size)]
    _POOL_STATE = (tok, cfg, model_cfg)
    try:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            parts = pool.map(_encode_chunk, chunks)
    finally:
        _POOL_STATE = None
    return [e for part in parts for e in part]


def _encode_serial(examples: list[Example], tok: Tokenizer, cfg: TrainConfig,
                   model_cfg: ModelConfig | None = None) -> list[Encoded]:
    """task "code": intent -> code; task "explain" (the reverse model): code -> intent.

    Both sides are slot-canonical, so the reverse model scores (intent, code) pairs in the
    same form the forward model produced them."""
    from nl2code.context import source_ids

    out = []
    explain = cfg.task == "explain"
    k = model_cfg.context_k if model_cfg is not None and not explain else 0
    for ex in examples:
        intent, code, _ = slots.canonicalize_pair(ex.intent, ex.code)
        if explain:
            intent, code = code, intent
        src = tok.encode_source(intent, ex.lang)[: cfg.max_src_len]
        if k:
            src = source_ids(tok, src, list(ex.context), ex.lang, k, model_cfg.context_tokens, model_cfg.max_len)
        tgt = tok.encode(code) + [EOS]
        if len(tgt) > cfg.max_tgt_len or len(tgt) < 2:
            continue  # cut code would teach the model to stop mid-statement
        out.append(Encoded(src, tgt, ex.source, ex))
    return out


def tokenizer_texts(examples: list[Example]) -> list[str]:
    texts = []
    for ex in examples:
        intent, code, _ = slots.canonicalize_pair(ex.intent, ex.code)
        texts.append(intent)
        texts.append(code)
    return texts


def source_weight(weights: dict[str, float], source: str) -> float:
    if source in weights:
        return weights[source]
    return weights.get(source.split("-")[0], 1.0)


def epoch_batches(data: list[Encoded], cfg: TrainConfig, weights: dict[str, float], epoch: int,
                  should_stop: Callable[[], bool] | None = None) -> list[list[int]]:
    """Deterministic batches for an epoch: weighted upsampling, length buckets, shuffle.

    Source and target tokens are budgeted separately (long API-doc intents would otherwise
    make target batches tiny). should_stop is polled between chunks (a signal arrived): the
    batches built so far are returned and the caller stops.
    """
    rng = random.Random(cfg.seed * 1_000_003 + epoch)
    idx: list[int] = []
    for i, e in enumerate(data):
        w = source_weight(weights, e.source)
        copies = int(w) + (1 if rng.random() < w - int(w) else 0)
        idx.extend([i] * copies)
    rng.shuffle(idx)
    # sort within large chunks by target length so batches have little padding
    chunk = 100 * 64
    batches = []
    for c in range(0, len(idx), chunk):
        if should_stop is not None and should_stop():
            return batches
        part = sorted(idx[c : c + chunk], key=lambda i: (len(data[i].tgt), len(data[i].src)))
        cur: list[int] = []
        ms = mt = 0
        for i in part:
            s, t = len(data[i].src), len(data[i].tgt)
            if cur and (max(ms, s) * (len(cur) + 1) > cfg.batch_tokens or max(mt, t) * (len(cur) + 1) > cfg.batch_tokens):
                batches.append(cur)
                cur, ms, mt = [], 0, 0
            cur.append(i)
            ms, mt = max(ms, s), max(mt, t)
        if cur:
            batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(items: list[Encoded]) -> tuple[torch.Tensor, ...]:
    S = max(len(e.src) for e in items)
    T = max(len(e.tgt) for e in items)
    src = torch.full((len(items), S), PAD, dtype=torch.long)
    tgt = torch.full((len(items), T + 1), PAD, dtype=torch.long)
    for r, e in enumerate(items):
        src[r, : len(e.src)] = torch.tensor(e.src)
        tgt[r, 0] = 2  # BOS
        tgt[r, 1 : len(e.tgt) + 1] = torch.tensor(e.tgt)
    return src, src != PAD, tgt[:, :-1], tgt[:, 1:]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then inverse-square-root decay (Vaswani et al. 2017)."""
    step = max(step, 1)
    return cfg.lr * min(step / cfg.warmup_steps, math.sqrt(cfg.warmup_steps / step))


def _dist():
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


def _autocast(device: torch.device):
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
            with _autocast(device):
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
        with _autocast(device):
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


def train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool = False,
          log: Callable[[dict], None] | None = None) -> Path:
    """Train; returns the folder of the best model. log receives one dict per event."""
    if not cfg.out:
        raise UsageError("training needs an output folder (--out)")
    check_train_config(cfg)
    check_model_config(model_cfg)
    rank, world = _dist()
    out = Path(cfg.out)
    stop = StopFlag(rank == 0)
    lock = None
    try:
        lock = lock_run_folder(out, rank)
        return _train(cfg, model_cfg, resume, run_log(out, rank, log), rank, world, out, stop)
    finally:
        stop.restore()
        if lock is not None:
            lock.release()


def run_log(out: Path, rank: int, log: Callable[[dict], None] | None = None) -> Callable[[dict], None]:
    """Each event as one line of out/log.jsonl (rank 0 only: one writer under torchrun), then
    to log (the CLI prints it)."""

    def emit(rec: dict) -> None:
        if rank == 0:  # never through a link planted at log.jsonl
            out.mkdir(parents=True, exist_ok=True)
            safefs.append_line(out / "log.jsonl", json.dumps(rec), UsageError)
        if log is not None:
            log(rec)

    return emit


def _train(cfg: TrainConfig, model_cfg: ModelConfig, resume: bool, log: Callable[[dict], None],
           rank: int, world: int, out: Path, stop: StopFlag) -> Path:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    checkpoint.recover_dir(out / "last")
    if resume and not (out / "last" / STATE).is_file():
        raise UsageError(f"nothing to resume: {out / 'last' / STATE} not found")
    if not resume and (out / "last").exists():
        raise UsageError(f"{out} already holds a training run: use --resume or another --out")

    train_ex, dev_ex, weights = load_corpus(Path(cfg.corpus))
    weights = {**weights, **cfg.source_weights}
    if resume:
        model, model_cfg, tok, _ = checkpoint.load_model(out / "last")
    elif cfg.init_from:
        model, base_cfg, tok, _ = checkpoint.load_model(cfg.init_from)
        model_cfg = base_cfg
    else:
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

        model = build_model(model_cfg)
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
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    state = {"step": 0, "epoch": 0, "batch": 0, "best": -1.0, "bad_evals": 0, "elapsed": 0.0, "tokens": 0}
    if resume:
        try:  # weights_only: never unpickle arbitrary objects; never through a link
            blob = safefs.read_bounded(out / "last" / STATE, checkpoint.MAX_EXTRA_BYTES, CheckpointError, STATE)
            saved = torch.load(io.BytesIO(blob), weights_only=True, map_location="cpu")
        except CheckpointError:
            raise
        except Exception as exc:
            first = " ".join(str(exc).split())[:200]
            raise CheckpointError(f"{out / 'last' / STATE} is not a valid training state: {first}") from None
        opt.load_state_dict(saved["optimizer"])
        state.update(saved["progress"])
        if rank == 0:
            log({"event": "resumed", "step": state["step"]})  # the training report marks it
        torch.set_rng_state(saved["rng_torch"])
        random.setstate((saved["rng_py"][0], tuple(saved["rng_py"][1]), saved["rng_py"][2]))
    else:
        torch.manual_seed(cfg.seed + 1)
        random.seed(cfg.seed)
    ddp = model
    if world > 1:
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    # the engine reads "languages" to refuse a language the model never saw
    languages = [lang for lang in LANGUAGES if any(e.example.lang == lang for e in train_data)]
    meta = {"train_config": to_dict(cfg), "corpus_size": len(train_data), "languages": languages,
            "task": cfg.task}

    def save_last() -> None:
        if rank != 0:
            return
        py = random.getstate()
        blob = {
            "optimizer": opt.state_dict(),
            "progress": dict(state),
            "rng_torch": torch.get_rng_state(),
            "rng_py": [py[0], list(py[1]), py[2]],
        }
        buf = io.BytesIO()
        torch.save(blob, buf)
        checkpoint.save_model(out / "last", model, model_cfg, tok, {**meta, **state}, extra={STATE: buf.getvalue()})

    t0 = time.monotonic() - state["elapsed"]
    last_save = time.monotonic()
    tok_window, t_window = 0, time.monotonic()
    def interrupted() -> None:  # finish the step, save, then exit
        save_last()
        log({"event": "interrupted", "step": state["step"]})
        name = signal.Signals(stop.signum).name
        raise TrainingInterrupted(stop.signum, f"interrupted by {name} at step {state['step']}; "
                                               f"{out / 'last'} saved: continue with --resume")

    finished = state["step"] >= cfg.max_steps  # resuming a run that already ended
    stop.deferred = True
    while not finished:
        batches = epoch_batches(train_data, cfg, weights, state["epoch"], should_stop=stop)
        if stop():
            interrupted()
        check_batches(batches, world, state["epoch"], cfg.corpus)
        batches = batches[rank::world]
        while state["batch"] < len(batches):
            items = [train_data[i] for i in batches[state["batch"]]]
            batch = collate(items)
            n_tok = int((batch[3] != PAD).sum())  # counted on the host: no device sync
            src, mask, tin, tout = (t.to(device, non_blocking=True) for t in batch)
            for g in opt.param_groups:
                g["lr"] = lr_at(state["step"] + 1, cfg)
            with _autocast(device):
                logits = ddp(src, mask, tin)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tout.reshape(-1),
                                   ignore_index=PAD, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            state["step"] += 1
            state["batch"] += 1
            state["tokens"] += n_tok
            tok_window += n_tok
            state["elapsed"] = time.monotonic() - t0
            if state["step"] % cfg.log_every == 0 or state["step"] == 1:
                now = time.monotonic()
                log({"event": "step", "step": state["step"], "epoch": state["epoch"], "loss": loss.item(),
                     "lr": lr_at(state["step"], cfg), "tok_per_s": tok_window / max(now - t_window, 1e-9),
                     "elapsed": state["elapsed"]})
                tok_window, t_window = 0, now
            out_of_time = cfg.max_minutes and state["elapsed"] >= cfg.max_minutes * 60
            last_step = state["step"] >= cfg.max_steps or out_of_time
            if rank == 0 and (state["step"] % cfg.eval_every == 0 or last_step):
                dl = dev_loss(model, dev_data, cfg) if dev_data else float("nan")
                bleu = dev_bleu(model, tok, dev_data, cfg.dev_bleu_examples, cfg.task)
                improved = bleu > state["best"]
                log({"event": "eval", "step": state["step"], "dev_loss": dl, "dev_bleu": bleu,
                     "best": max(bleu, state["best"])})
                if improved:
                    state["best"], state["bad_evals"] = bleu, 0
                    checkpoint.save_model(out / "best", model, model_cfg, tok,
                                          {**meta, **state, "dev_loss": dl, "dev_bleu": bleu})
                else:
                    state["bad_evals"] += 1
                save_last()
                if cfg.keep_checkpoints > 0:
                    _keep_checkpoint(out, model, model_cfg, tok, {**meta, **state, "dev_bleu": bleu},
                                     state["step"], cfg.keep_checkpoints)
                last_save = time.monotonic()
                if cfg.patience and state["bad_evals"] >= cfg.patience:
                    log({"event": "early_stop", "step": state["step"]})
                    last_step = True
            elif time.monotonic() - last_save >= cfg.save_every_minutes * 60:
                save_last()
                last_save = time.monotonic()
                log({"event": "checkpoint", "step": state["step"]})
            if stop():
                interrupted()
            if world > 1:  # stop together: a rank that stopped alone would leave the others
                flag = torch.tensor([float(bool(last_step))])  # waiting in all-reduce forever
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
                last_step = bool(flag.item())
            if last_step:
                finished = True
                break
        if not finished:
            state["epoch"] += 1
            state["batch"] = 0
    if world > 1:
        torch.distributed.barrier()
    if rank == 0 and not (out / "best").exists():
        checkpoint.save_model(out / "best", model, model_cfg, tok, {**meta, **state})
    return out / "best"


def _keep_checkpoint(out: Path, model, model_cfg, tok, meta: dict, step: int, keep: int) -> None:
    """Save the model as out/step-NNNNNNN and delete all but the newest `keep` of them."""
    import shutil

    checkpoint.save_model(out / f"step-{step:07d}", model, model_cfg, tok, meta)
    kept = sorted(p for p in out.iterdir() if p.name.startswith("step-") and p.is_dir())
    for old in kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def load_train_config(path: str | Path) -> tuple[TrainConfig, ModelConfig]:
    """A TOML file with [train] and [model] tables; every value checked (UsageError naming it)."""
    import tomllib

    if not os.path.lexists(path):
        raise UsageError(f"training config not found: {path}")
    text = safefs.read_text(path, 16 << 20, UsageError, "training config")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path} is not valid TOML: {exc}") from None
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
