"""How fast could decoding be? FLOPs per generated token vs the machine's matmul throughput.

Counts the matmul FLOPs of one decoder step with the KV cache (at a given prefix length and
source length) plus the output projection, times the beam size, and the encoder once per
query. Measures this machine's F.linear throughput at the shapes of a decode step (5 rows:
one per beam) and for a large square matmul, at 1 and 2 threads. Two lower bounds on the
latency of beam-5 decoding follow:

- peak bound: all FLOPs at the large-matmul rate (unreachable: decode matmuls are skinny);
- decode-shape bound: every linear layer at the rate measured for its own shape.

Each measured path (from `--measured decode_speed.json`, else our default path measured
here) is then reported as a multiple of both bounds.

    python -m benchmarks.compute_limit [--quick] [--tokens 30] [--measured PATH]
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks import common
from nl2code.config import ModelConfig

BEAM = 5
BIG = 1024  # the square matmul: (BIG x BIG) @ (BIG x BIG)


def linear_shapes(c: ModelConfig) -> dict[str, tuple[int, int]]:
    """(in, out) of every linear layer kind used in decoding."""
    d = c.d_model
    return {"d→d": (d, d), "d→2d": (d, 2 * d), "d→d_ff": (d, c.d_ff), "d_ff→d": (c.d_ff, d), "d→vocab": (d, c.vocab_size)}


def step_linear_calls(c: ModelConfig) -> dict[str, int]:
    """Linear calls of one decoder step (per row): self q/out + cross q/out, self kv, FFN, output."""
    L = c.n_dec_layer
    return {"d→d": 4 * L, "d→2d": L, "d→d_ff": L, "d_ff→d": L, "d→vocab": 1}


def encoder_linear_calls(c: ModelConfig) -> dict[str, int]:
    """Linear calls of the encoder (per source token), plus each decoder layer's cross K/V."""
    L = c.n_enc_layer
    return {"d→d": 2 * L, "d→2d": L + c.n_dec_layer, "d→d_ff": L, "d_ff→d": L}


def linear_flops(calls: dict[str, int], shapes: dict[str, tuple[int, int]]) -> int:
    return sum(n * 2 * shapes[k][0] * shapes[k][1] for k, n in calls.items())


def step_flops(c: ModelConfig, prefix: int, src_len: int) -> int:
    """Matmul FLOPs to produce one token for one hypothesis with a KV cache.

    Attention: QK^T and AV over `prefix` cached keys and `src_len` source keys, 2*d FLOPs
    per key for each of the two products, summed over heads."""
    attn = c.n_dec_layer * 4 * c.d_model * (prefix + src_len)
    return linear_flops(step_linear_calls(c), linear_shapes(c)) + attn


def query_flops(c: ModelConfig, n_tokens: int, src_len: int, beam: int = BEAM) -> dict[str, float]:
    enc_attn = c.n_enc_layer * 4 * c.d_model * src_len * src_len
    encoder = src_len * linear_flops(encoder_linear_calls(c), linear_shapes(c)) + enc_attn
    decoder = beam * sum(step_flops(c, t + 1, src_len) for t in range(n_tokens))
    return {"encoder": encoder, "decoder": decoder, "total": encoder + decoder}


# --- throughput ---------------------------------------------------------------------------------
def time_linear(rows: int, n_in: int, n_out: int, calls: int, precision: str | None = None) -> float:
    """Seconds per call of (rows, n_in) by an (n_out, n_in) weight: F.linear, or (precision
    given) the inference form's own matmul (nl2code/model/fast.py) at that precision."""
    x, w, b = torch.randn(rows, n_in), torch.randn(n_out, n_in), torch.randn(n_out)
    if precision is None:
        def f(x):
            return F.linear(x, w, b)
    else:
        from nl2code.model.fast import _linear

        f = _linear(w, b, precision)
    with torch.inference_mode():
        f(x)
        t0 = time.perf_counter()
        for _ in range(calls):
            f(x)
        return (time.perf_counter() - t0) / calls


def inference_step_calls(c: ModelConfig) -> dict[str, int]:
    """Matmuls of one step of the inference form: fused q/k/v, self out, FFN, output.
    (Its cross-attention is folded into the memory: two tiny batched matmuls, not counted.)"""
    L = c.n_dec_layer
    return {"d→3d": L, "d→d": L, "d→d_ff": L, "d_ff→d": L, "d→vocab": 1}


def measure_inference_matmuls(c: ModelConfig, rounds: int, calls: int) -> dict[str, dict[str, float]]:
    """µs per call of the inference form's step matmuls (BEAM rows, 1 thread), by precision."""
    from nl2code.model.fast import available_precisions

    shapes = {**linear_shapes(c), "d→3d": (c.d_model, 3 * c.d_model)}
    shapes = {k: shapes[k] for k in inference_step_calls(c)}
    precisions = available_precisions()
    samples = {p: {k: [] for k in shapes} for p in precisions}
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(rounds):
            for p in precisions:
                for k, (i, o) in shapes.items():
                    samples[p][k].append(time_linear(BEAM, i, o, calls, p))
    finally:
        torch.set_num_threads(old)
    return {p: {k: 1e6 * statistics.median(v) for k, v in by.items()} for p, by in samples.items()}


def measure_throughput(c: ModelConfig, src_len: int, rounds: int, calls: int) -> dict[str, Any]:
    """Alternate thread counts and shapes each round; median seconds per call."""
    shapes = linear_shapes(c)
    cases = {f"{BEAM}×{k}": (BEAM, *v) for k, v in shapes.items()}
    cases.update({f"{src_len}×{k}": (src_len, *v) for k, v in shapes.items() if k != "d→vocab"})
    cases[f"{BIG}×{BIG}×{BIG}"] = (BIG, BIG, BIG)
    samples: dict[int, dict[str, list[float]]] = {t: {k: [] for k in cases} for t in (1, 2)}
    old = torch.get_num_threads()
    try:
        for _ in range(rounds):
            for threads in (1, 2):
                torch.set_num_threads(threads)
                for name, (r, i, o) in cases.items():
                    n = max(2, calls // 50) if r == BIG else calls
                    samples[threads][name].append(time_linear(r, i, o, n))
    finally:
        torch.set_num_threads(old)
    out: dict[str, Any] = {}
    for threads, by_case in samples.items():
        out[str(threads)] = {}
        for name, xs in by_case.items():
            r, i, o = cases[name]
            s = statistics.median(xs)
            out[str(threads)][name] = {"us_per_call": 1e6 * s, "gflops": 2 * r * i * o / s / 1e9}
    return out


# --- overheads that are not arithmetic ----------------------------------------------------------
class _FixedLogits:
    """A protocol model whose step costs nothing: times beam search's own bookkeeping."""

    def __init__(self, vocab: int):
        self.logits = torch.randn(BEAM, vocab, generator=torch.Generator().manual_seed(0)) * 3

    def encode(self, src, mask):
        return {}

    def expand_memory(self, memory, idx):
        return memory

    def step(self, ids, memory, cache):
        return self.logits, cache

    def reorder_cache(self, cache, idx):
        return cache


def measure_overheads(c: ModelConfig, n_tokens: int, src_len: int, reps: int) -> dict[str, float]:
    """ms per query (1 thread) that no matmul accounts for:

    - dispatch floor: our inference form with the default model's layers, heads and op
      sequence but d_model 8 (near-zero arithmetic), per precision: the cost of issuing ops;
    - beam bookkeeping: beam search over a model whose step returns fixed logits of the
      default vocabulary size (log-softmax, top-k, finished/alive merges, back-pointers).
    """
    from benchmarks.decode_speed import ours
    from nl2code.model import build_model
    from nl2code.model.fast import FastTransformer, available_precisions

    tiny = dataclasses.replace(c, d_model=2 * c.n_head, d_ff=16, vocab_size=16)
    model = build_model(tiny).eval()
    calls = {f"dispatch floor, {p}": ours(FastTransformer(model, p), *common.random_src(1, src_len, 16), n_tokens,
                                          threads=1)
             for p in available_precisions()}
    calls["beam bookkeeping"] = ours(_FixedLogits(c.vocab_size), *common.random_src(1, src_len, 16), n_tokens,
                                     threads=1)
    times = common.alternate(calls, reps)
    return {k: common.median_ms(v) for k, v in times.items()}


def decode_shape_bound_ms(c: ModelConfig, tp: dict[str, Any], n_tokens: int, src_len: int) -> float:
    """Every linear at its own measured rate; attention at the rate of the step's linears."""
    shapes = linear_shapes(c)
    step_s = sum(n * tp[f"{BEAM}×{k}"]["us_per_call"] for k, n in step_linear_calls(c).items()) / 1e6
    enc_s = sum(n * tp[f"{src_len}×{k}"]["us_per_call"] for k, n in encoder_linear_calls(c).items()) / 1e6
    step_lin_flops = BEAM * linear_flops(step_linear_calls(c), shapes)
    rate = step_lin_flops / step_s  # FLOP/s of a whole step's linears
    attn = sum(BEAM * (step_flops(c, t + 1, src_len) - linear_flops(step_linear_calls(c), shapes))
               for t in range(n_tokens))
    return 1000 * (n_tokens * step_s + enc_s + attn / rate)


# --- measured paths -----------------------------------------------------------------------------
def measured_paths(path: Path | None, n_tokens: int, src_len: int, reps: int) -> tuple[dict[str, float], str]:
    """{path name: ms per query} from a decode_speed result, else our default path measured here."""
    if path is not None:
        res = json.loads(Path(path).read_text())
        key = str(n_tokens)
        if key not in res.get("systems", {}):
            raise SystemExit(f"{path} has no measurement at {n_tokens} tokens")
        paths = dict(res["systems"][key])
        paths.update({f"ours, {k}": v for k, v in res.get("options", {}).get(key, {}).items()
                      if not k.startswith("default")})
        return paths, f"from {path}"
    from benchmarks.decode_speed import ours
    from nl2code.model import for_inference

    model, cfg, _ = common.load_or_random(None)
    model, _ = for_inference(model)
    src, mask = common.random_src(1, src_len, cfg.vocab_size)
    calls = {}
    for threads in (1, 2):
        calls[f"ours, {threads} thread(s)"] = ours(model, src, mask, n_tokens, threads=threads)
    times = common.alternate(calls, reps)
    return {k: common.median_ms(v) for k, v in times.items()}, "measured here (no --measured file)"


def run(args) -> dict[str, Any]:
    c = ModelConfig()
    flops = query_flops(c, args.tokens, args.src_len)
    tp = measure_throughput(c, args.src_len, args.rounds, args.calls)
    peak = max(tp[t][f"{BIG}×{BIG}×{BIG}"]["gflops"] for t in tp)
    bounds = {"peak_ms": flops["total"] / (peak * 1e9) * 1000,
              "decode_shape_ms": {t: decode_shape_bound_ms(c, tp[t], args.tokens, args.src_len) for t in tp}}
    best_shape = min(bounds["decode_shape_ms"].values())
    inf = measure_inference_matmuls(c, args.rounds, args.calls)
    bounds["inference_matmul_ms"] = {p: args.tokens * sum(n * us[k] for k, n in inference_step_calls(c).items()) / 1000
                                     for p, us in inf.items()}
    overheads = measure_overheads(c, args.tokens, args.src_len, args.reps)
    paths, source = measured_paths(args.measured, args.tokens, args.src_len, args.reps)
    return {"config": dataclasses.asdict(c), "tokens": args.tokens, "src_len": args.src_len, "beam": BEAM,
            "flops": flops, "flops_per_token": {"per_hypothesis_mid": step_flops(c, args.tokens // 2, args.src_len),
                                                "per_query_mid": BEAM * step_flops(c, args.tokens // 2, args.src_len)},
            "throughput": tp, "inference_matmul_us": inf, "overheads_ms": overheads, "peak_gflops": peak, "bounds": bounds, "paths": paths, "paths_source": source,
            "path_ratios": {k: {"x_peak": v / bounds["peak_ms"], "x_decode_shape": v / best_shape}
                            for k, v in paths.items()}}


def report(r: dict[str, Any]) -> str:
    c, f = r["config"], r["flops"]
    out = ["## Compute limit", "", common.polluted_note(),
           f"Model d_model {c['d_model']}, {c['n_head']} heads, {c['n_enc_layer']}+{c['n_dec_layer']} layers, "
           f"d_ff {c['d_ff']}, vocab {c['vocab_size']}; beam {r['beam']}, {r['tokens']} tokens, "
           f"source {r['src_len']} tokens.", "",
           f"- FLOPs per generated token (prefix {r['tokens'] // 2}): "
           f"{r['flops_per_token']['per_hypothesis_mid'] / 1e6:.2f} M per hypothesis, "
           f"{r['flops_per_token']['per_query_mid'] / 1e6:.1f} M for the {r['beam']} beams "
           f"(the output projection alone is {2 * c['d_model'] * c['vocab_size'] / 1e6:.1f} M per hypothesis).",
           f"- Per query: encoder {f['encoder'] / 1e6:.0f} MFLOP, decoder {f['decoder'] / 1e9:.2f} GFLOP, "
           f"total {f['total'] / 1e9:.2f} GFLOP.", "", "### Matmul throughput (F.linear, GFLOP/s)", ""]
    names = list(r["throughput"]["1"])
    rows = [[n, r["throughput"]["1"][n]["gflops"], r["throughput"]["2"][n]["gflops"],
             r["throughput"]["1"][n]["us_per_call"]] for n in names]
    out += [common.table(["rows × shape", "1 thread", "2 threads", "µs / call (1 thread)"], rows), "",
            "### Lower bounds and measured paths", "",
            f"- Peak bound ({r['peak_gflops']:.0f} GFLOP/s): **{r['bounds']['peak_ms']:.1f} ms** per query.",
            *[f"- Decode-shape bound, {t} thread(s): **{ms:.1f} ms** per query."
              for t, ms in r["bounds"]["decode_shape_ms"].items()],
            *[f"- Matmul floor of our inference form at {p} (its step matmuls only, 1 thread, "
              f"{r['tokens']} steps): **{ms:.1f} ms** per query."
              for p, ms in r["bounds"].get("inference_matmul_ms", {}).items()],
            ""]
    inf = r.get("inference_matmul_us", {})
    if inf:
        names = list(next(iter(inf.values())))
        out += ["Inference-form step matmuls (5 rows, 1 thread), µs per call:", "",
                common.table(["shape", *inf], [[k, *(inf[p][k] for p in inf)] for k in names]), ""]
    ov = r.get("overheads_ms", {})
    if ov:
        out += [f"Costs that are not arithmetic ({r['tokens']} tokens, 1 thread): the dispatch floor runs our "
                "inference form with the default model's layers, heads and op sequence but d_model "
                f"{2 * c['n_head']} (next to no arithmetic); beam bookkeeping is beam search over a model "
                f"whose step returns fixed logits of {c['vocab_size']} entries.", "",
                common.table(["cost", "ms / query"], [[k, v] for k, v in ov.items()]), ""]
    out += [f"Measured paths ({r['paths_source']}):", ""]
    rows = [[k, v, r["path_ratios"][k]["x_decode_shape"], r["path_ratios"][k]["x_peak"]] for k, v in r["paths"].items()]
    out += [common.table(["path", "ms / query", "× decode-shape bound", "× peak bound"], rows), "",
            "The peak and decode-shape bounds count fp32 F.linear for every linear of the model; "
            "int8 paths and other GEMM libraries (CTranslate2) can go below them. The inference-form "
            "floors count only the matmuls our decoder runs per step, at each precision. Time above "
            "a floor is overhead: Python, op dispatch, attention, layer norms, softmax/top-k, beam "
            "bookkeeping and cache copies."]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=30, help="output tokens per query")
    p.add_argument("--src-len", type=int, default=16, help="source tokens per query")
    p.add_argument("--measured", type=Path, help="decode_speed --json output to compare against")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds of the matmul timings")
    p.add_argument("--calls", type=int, default=500, help="calls per skinny-matmul timing")
    p.add_argument("--reps", type=int, default=20, help="decodes per path when measuring here")
    args = p.parse_args()
    common.apply_quick(args, p, rounds=1, calls=20, reps=2)
    r = run(args)
    return common.finish(args, r, report(r))


if __name__ == "__main__":
    main()
