"""The latency side of the model-size study (issue 18, item 3): what each model shape costs
a warm answer on this CPU, measured with untrained weights at fixed lengths.

    python -m benchmarks.size_latency [--reps 30] [--p50 MS] [--json FILE]

Only the model-dependent part of an answer is timed; it does not depend on what the weights
learned, only on the shape and the lengths, so no training is needed to know whether a
bigger shape can stay fast enough for an editor (warm p50 <= 80 ms, issue 18). The lengths
are the bundled model's medians (benchmarks/latency_breakdown.md):

- encoder over a 14-token intent, then beam 5 for 16 steps (min_len = max_len = 16) in the
  int8 inference form the CLI uses (nl2code.model.fast);
- the forward model scoring 3 retrieved snippets by teacher forcing (one shared 14-token
  source, 24 target tokens);
- a reverse model (of the same shape unless the row names another) scoring 6 candidates
  (26 source tokens, 14 target tokens), as the reranker does (nl2code.engine.RECON_ROWS).

--p50 MS (the bundled model's measured warm p50, `python -m benchmarks.latency`) adds an
estimate per shape: that p50 minus the d256 3+3 model part plus the shape's model part
(the rest of an answer, retrieval, parsing and reranking, does not depend on the shape).
Sizes are float16 bytes of the forward model, and of it with its reverse model (the shipped
folder carries both, beside a 17.7 MB retrieval index; the wheel's budget is 60 MB).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

# name, d_model, heads, encoder layers, decoder layers, d_ff[, the reverse model's shape
# (d_model, heads, enc, dec, d_ff) when it is not the same]
SHAPES = [
    ("d256 3+3 (shipped)", 256, 4, 3, 3, 1024),
    ("d256 4+4", 256, 4, 4, 4, 1024),
    ("d320 3+3", 320, 5, 3, 3, 1280),
    ("d320 3+3, reverse d256 3+3", 320, 5, 3, 3, 1280, (256, 4, 3, 3, 1024)),
    ("d384 4+4", 384, 6, 4, 4, 1536),
    ("d384 6+3, reverse d256 2+2 (train_v2_gpu.py's first plan)", 384, 6, 6, 3, 1536, (256, 4, 2, 2, 1024)),
    ("d320 4+3, reverse d256 2+2 (train_v2_gpu.py fwd, rev)", 320, 5, 4, 3, 1280, (256, 4, 2, 2, 1024)),
    ("d512 6+6", 512, 8, 6, 6, 2048),
]
INTENT, STEPS, BEAM = 14, 16, 5
FWD_ROWS, FWD_TGT = 3, 24
REV_ROWS, REV_SRC, REV_TGT = 6, 26, 14


def build(shape: tuple, vocab: int = 8000) -> dict:
    """The three timed parts of one shape, as zero-argument callables, and its size."""
    import torch

    from nl2code.augment import _int8
    from nl2code.config import DecodeConfig, ModelConfig
    from nl2code.decode import decode
    from nl2code.explain import teacher_forced_logprobs
    from nl2code.model.fast import FastTransformer
    from nl2code.model.transformer import Transformer

    name, d, h, ne, nd, ff = shape[:6]
    rev_shape = shape[6] if len(shape) > 6 else (d, h, ne, nd, ff)

    def transformer(d, h, ne, nd, ff):
        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=vocab, d_model=d, n_head=h, n_enc_layer=ne, n_dec_layer=nd, d_ff=ff)
        return Transformer(cfg).eval()

    model, rev = transformer(d, h, ne, nd, ff), transformer(*rev_shape)
    params = sum(p.numel() for p in model.parameters())
    rev_params = sum(p.numel() for p in rev.parameters())
    fast, tf, rev_tf = FastTransformer(model, "int8"), _int8(model), _int8(rev)
    g = torch.Generator().manual_seed(1)
    src = torch.randint(4, vocab, (1, INTENT), generator=g)
    dcfg = DecodeConfig(strategy="beam", beam_size=BEAM, n_best=BEAM, max_len=STEPS, min_len=STEPS)

    def ids(n: int) -> list[int]:
        return torch.randint(4, vocab, (n,), generator=g).tolist()

    fwd_src, fwd_tgts = [src[0].tolist()] * FWD_ROWS, [ids(FWD_TGT) for _ in range(FWD_ROWS)]
    rev_srcs, rev_tgt = [ids(REV_SRC) for _ in range(REV_ROWS)], ids(REV_TGT)
    parts = {"beam_ms": lambda: decode(fast, src, src != 0, dcfg),
             "forward_scoring_ms": lambda: teacher_forced_logprobs(tf, fwd_src, fwd_tgts),
             "reverse_ms": lambda: teacher_forced_logprobs(rev_tf, rev_srcs, [rev_tgt] * REV_ROWS)}
    return {"shape": name, "params_m": round(params / 1e6, 2), "fp16_mb": round(params * 2 / 1e6, 1),
            "both_fp16_mb": round((params + rev_params) * 2 / 1e6, 1), "parts": parts}


def measure_all(shapes: list[tuple], reps: int, vocab: int = 8000) -> list[dict]:
    """Median ms of each part of each shape. The shapes take turns within every repetition,
    so the slow drifts of a shared VM hit them all alike (the ratios are the robust figure)."""
    import torch

    built = [build(s, vocab) for s in shapes]
    times: list[dict[str, list[float]]] = [{k: [] for k in b["parts"]} for b in built]
    with torch.inference_mode():
        for b in built:  # warm-up: first-call allocations
            for fn in b["parts"].values():
                fn()
        for _ in range(reps):
            for b, t in zip(built, times):
                for k, fn in b["parts"].items():
                    t0 = time.perf_counter()
                    fn()
                    t[k].append((time.perf_counter() - t0) * 1000)
    rows = []
    for b, t in zip(built, times):
        row = {k: v for k, v in b.items() if k != "parts"}
        row.update({k: round(statistics.median(v), 1) for k, v in t.items()})
        row["model_ms"] = round(sum(statistics.median(v) for v in t.values()), 1)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--p50", type=float, default=0.0, help="the bundled model's measured warm p50 (ms)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = measure_all(SHAPES, args.reps)
    base = rows[0]["model_ms"]
    for r in rows:
        r["x_shipped"] = round(r["model_ms"] / base, 2)
        if args.p50:
            r["est_p50_ms"] = round(args.p50 - base + r["model_ms"], 1)
    head = ["shape", "params (M)", "one model, fp16 (MB)", "with the reverse model (MB)", "beam 5 × 16 steps (ms)", "forward scoring (ms)",
            "reverse model (ms)", "model part (ms)", "× shipped"] + (["est. warm p50 (ms)"] if args.p50 else [])
    keys = ["shape", "params_m", "fp16_mb", "both_fp16_mb", "beam_ms", "forward_scoring_ms", "reverse_ms", "model_ms",
            "x_shipped"] + (["est_p50_ms"] if args.p50 else [])
    print("| " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * (len(head) - 1))
    for r in rows:
        print("| " + " | ".join(str(r[k]) for k in keys) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
