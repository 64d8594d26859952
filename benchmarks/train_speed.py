"""Training throughput: target tokens/s and source+target tokens/s per training step.

The default transformer and the GRU baseline (ModelConfig(arch="rnn")), at 1 and 2 torch
threads, on synthetic batches shaped like real ones: ~4,000 target tokens per batch
(source ~30 tokens, target ~20, lengths varying and padded as train.collate does). A step
is what train.py does: forward, label-smoothed cross-entropy, backward, gradient
clipping, AdamW. The configurations take turns step by step after a warm-up; we report
the median step time. jemalloc is compared in child processes (LD_PRELOAD), alternating.

    python -m benchmarks.train_speed [--quick] [--steps 15] [--configs transformer:2 rnn:1]
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import common
from nl2code.config import ModelConfig
from nl2code.model import build_model
from nl2code.tokenizer import BOS, PAD

ALL_CONFIGS = ["transformer:1", "transformer:2", "rnn:1", "rnn:2"]


def synthetic_batch(seed: int, batch_tokens: int, src_len: int, tgt_len: int, vocab: int):
    """(src, src_mask, tgt_in, tgt_out) like train.collate, lengths ±20% around the means."""
    g = torch.Generator().manual_seed(seed)
    n = batch_tokens // tgt_len
    s_lens = torch.randint(int(src_len * 0.8), int(src_len * 1.2) + 1, (n,), generator=g)
    t_lens = torch.randint(int(tgt_len * 0.8), int(tgt_len * 1.2) + 1, (n,), generator=g)
    src = torch.full((n, int(s_lens.max())), PAD)
    tgt = torch.full((n, int(t_lens.max()) + 1), PAD)
    tgt[:, 0] = BOS
    for i in range(n):
        src[i, : s_lens[i]] = torch.randint(4, vocab, (int(s_lens[i]),), generator=g)
        tgt[i, 1 : t_lens[i] + 1] = torch.randint(4, vocab, (int(t_lens[i]),), generator=g)
    return src, src != PAD, tgt[:, :-1], tgt[:, 1:]


class Trainer:
    """One model + optimizer; step() is train.py's inner loop body at a fixed thread count."""

    def __init__(self, arch: str, threads: int, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = ModelConfig(arch=arch)
        self.threads = threads
        self.model = build_model(self.cfg).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=5e-4, betas=(0.9, 0.98), weight_decay=0.01)

    def step(self, batch) -> None:
        src, mask, tin, tout = batch
        old = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            logits = self.model(src, mask, tin)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tout.reshape(-1),
                                   ignore_index=PAD, label_smoothing=0.1)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
        finally:
            torch.set_num_threads(old)


def measure(configs: list[str], batches: list, warmup: int, steps: int) -> dict[str, list[float]]:
    trainers = {}
    for c in configs:
        arch, threads = c.split(":")
        trainers[c] = Trainer(arch, int(threads))
    for i in range(warmup):
        for t in trainers.values():
            t.step(batches[i % len(batches)])
    times: dict[str, list[float]] = {c: [] for c in configs}
    for i in range(steps):
        batch = batches[i % len(batches)]
        shift = i % len(configs)
        for c in configs[shift:] + configs[:shift]:
            times[c].append(common.timed(lambda: trainers[c].step(batch)))
    return times


def throughput(times: list[float], batches: list, steps: int) -> dict[str, float]:
    used = [batches[i % len(batches)] for i in range(steps)]
    tgt = statistics.fmean(int((b[3] != PAD).sum()) for b in used)
    src = statistics.fmean(int(b[1].sum()) for b in used)
    s = statistics.median(times)
    return {"step_s": s, "tgt_tok_s": tgt / s, "src_tgt_tok_s": (src + tgt) / s,
            "tgt_tokens": tgt, "src_tokens": src}


def jemalloc_compare(args, rounds: int) -> dict[str, Any]:
    env, skipped = common.jemalloc_or_skip(rounds)
    if skipped:
        return skipped
    child = ["--configs", args.jemalloc_config, "--steps", str(args.steps), "--warmup", str(args.warmup),
             "--jemalloc-rounds", "0", "--batch-tokens", str(args.batch_tokens)]
    runs: dict[str, list[float]] = {"glibc malloc": [], "jemalloc": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, extra in (("glibc malloc", None), ("jemalloc", env)):
                r = common.run_child_json("benchmarks.train_speed", child, extra, Path(tmp) / "r.json")
                runs[name].append(r["results"][args.jemalloc_config]["tgt_tok_s"])
    return {"config": args.jemalloc_config, "rounds": rounds, "MALLOC_CONF": env["MALLOC_CONF"],
            "tgt_tok_s": {k: statistics.median(v) for k, v in runs.items()}}


def run(args) -> dict[str, Any]:
    vocab = ModelConfig().vocab_size
    batches = [synthetic_batch(s, args.batch_tokens, args.src_len, args.tgt_len, vocab) for s in range(4)]
    times = measure(args.configs, batches, args.warmup, args.steps)
    results = {c: throughput(t, batches, args.steps) for c, t in times.items()}
    params = {a: sum(p.numel() for p in build_model(ModelConfig(arch=a)).parameters()) for a in ("transformer", "rnn")}
    return {"batch_shape": [list(b[0].shape) + list(b[2].shape[1:]) for b in batches], "steps": args.steps,
            "warmup": args.warmup, "params": params, "results": results,
            "jemalloc": jemalloc_compare(args, args.jemalloc_rounds)}


def report(r: dict[str, Any]) -> str:
    first = next(iter(r["results"].values()))
    out = ["## Training throughput", "", common.polluted_note(),
           f"Synthetic batches of ~{first['tgt_tokens']:.0f} target and ~{first['src_tokens']:.0f} source tokens "
           f"(shapes [sentences, src len, tgt len]: {r['batch_shape']}); median of {r['steps']} steps per "
           f"configuration after {r['warmup']} warm-up, configurations alternating. Parameters: "
           f"transformer {r['params']['transformer'] / 1e6:.1f} M, GRU {r['params']['rnn'] / 1e6:.1f} M.", ""]
    base = r["results"].get("transformer:2") or first
    rows = [[c.replace(":", ", ") + " thr", 1000 * v["step_s"], v["tgt_tok_s"], v["src_tgt_tok_s"],
             v["tgt_tok_s"] / base["tgt_tok_s"]] for c, v in r["results"].items()]
    out.append(common.table(["model, threads", "ms / step", "target tok/s", "src+tgt tok/s", "× transformer, 2 thr"], rows))
    j = r["jemalloc"]
    out += ["", "jemalloc: " + (f"skipped ({j['skipped']})." if "skipped" in j else
            f"{j['config']}, median of {j['rounds']} child runs each: glibc {j['tgt_tok_s']['glibc malloc']:,.0f} "
            f"→ jemalloc {j['tgt_tok_s']['jemalloc']:,.0f} target tok/s "
            f"(× {j['tgt_tok_s']['jemalloc'] / j['tgt_tok_s']['glibc malloc']:.2f}; MALLOC_CONF={j['MALLOC_CONF']}).")]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=ALL_CONFIGS, choices=ALL_CONFIGS, help="arch:threads to measure")
    p.add_argument("--steps", type=int, default=15, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per configuration first")
    p.add_argument("--batch-tokens", type=int, default=4000, help="target tokens per batch")
    p.add_argument("--src-len", type=int, default=30, help="mean source length")
    p.add_argument("--tgt-len", type=int, default=20, help="mean target length")
    p.add_argument("--jemalloc-rounds", type=int, default=2, help="child runs per allocator (0: skip)")
    p.add_argument("--jemalloc-config", default="transformer:2", choices=ALL_CONFIGS, help="config for the jemalloc runs")
    args = p.parse_args()
    common.apply_quick(args, p, steps=1, warmup=1, jemalloc_rounds=1, batch_tokens=400)
    r = run(args)
    return common.finish(args, r, report(r))


if __name__ == "__main__":
    main()
