"""Decoding speed: our beam search vs Hugging Face generate() vs CTranslate2, and our options.

Beam 5, 5-best, batch 1, exactly N output tokens for every system (min = max length), so
each does the same amount of work whatever the weights. The Hugging Face model is a
MarianMT config of our default shape (d_model, heads, layers, d_ff, vocabulary) with random
weights; CTranslate2 runs that model converted (float32 and int8, intra_threads=1).
Marian is post-LN where we are pre-LN: the matmul work is identical.

"ours" is what the engine runs: the inference form (nl2code/model/fast.py) at the default
precision (int8 where PyTorch has fbgemm). Our options, each timed against it: float32
weights, the training module's own step (KV cache by concatenation), no KV cache, no_grad,
the other thread count, torch's quantize_dynamic on the training module, torch.compile of
the training module (compile time reported apart), and jemalloc (child processes,
alternating, since LD_PRELOAD cannot change inside a process).

    python -m benchmarks.decode_speed [--quick] [--model DIR] [--lengths 30 60]
"""

from __future__ import annotations

import argparse
import atexit
import copy
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks import common
from nl2code.config import DecodeConfig
from nl2code.decode import decode
from nl2code.model import for_inference
from nl2code.model.fast import FastTransformer

BEAM = 5


class NoCacheModel:
    """The decoding protocol without a KV cache: every step re-runs the whole decoder
    over the prefix. The cache is just the prefix ids, so reorder_cache reorders those."""

    def __init__(self, model):
        if not hasattr(model, "dec"):
            raise TypeError("NoCacheModel wraps the transformer only")
        self.inner = model

    def encode(self, src, src_mask):
        return self.inner.encode(src, src_mask)

    def expand_memory(self, memory, idx):
        return self.inner.expand_memory(memory, idx)

    def step(self, tgt_ids, memory, cache):
        prefix = tgt_ids if cache is None else torch.cat([cache, tgt_ids], dim=1)  # (B, t)
        m = self.inner
        x = m._embed(prefix)
        for layer, kv in zip(m.dec, memory["kv"]):
            x, _ = layer(x, kv, memory["mask"])  # causal self-attention over the prefix
        return m.logits(x[:, -1:])[:, -1], prefix

    @staticmethod
    def reorder_cache(cache, beam_idx):
        return cache.index_select(0, beam_idx)


class CompiledModel:
    """encode and step through torch.compile (dynamic shapes: the cache grows each step)."""

    def __init__(self, model):
        self.inner = model
        self.encode = torch.compile(model.encode, dynamic=True)
        self.step = torch.compile(model.step, dynamic=True)
        self.reorder_cache = model.reorder_cache
        self.expand_memory = model.expand_memory


def beam_config(n_tokens: int) -> DecodeConfig:
    return DecodeConfig(strategy="beam", beam_size=BEAM, n_best=BEAM, max_len=n_tokens, min_len=n_tokens)


def ours(model, src, mask, n_tokens: int, grad: str = "inference", threads: int | None = None) -> Callable:
    """A zero-argument call of our decoder; grad 'no_grad' bypasses decode's inference_mode."""
    cfg = beam_config(n_tokens)
    run = decode if grad == "inference" else decode.__wrapped__

    def call():
        old = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        try:
            if grad == "inference":
                return run(model, src, mask, cfg)
            with torch.no_grad():
                return run(model, src, mask, cfg)
        finally:
            torch.set_num_threads(old)

    return call


# --- Hugging Face and CTranslate2 ------------------------------------------------------------
def build_hf(cfg, folder: Path):
    """A MarianMT model of our shape with random weights, saved with a word-level tokenizer.

    CTranslate2's converter needs a tokenizer beside the model and drops the last id as
    Marian's <pad> (CTranslate2's converter does so), so the vocabulary is ours plus <pad> at the end.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    V = cfg.vocab_size
    vocab = {"</s>": 0, "<unk>": 1, **{f"t{i}": i for i in range(2, V)}, "<pad>": V}
    word = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    word.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=word, eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
    hf_cfg = MarianConfig(
        vocab_size=V + 1, d_model=cfg.d_model, encoder_layers=cfg.n_enc_layer, decoder_layers=cfg.n_dec_layer,
        encoder_attention_heads=cfg.n_head, decoder_attention_heads=cfg.n_head, encoder_ffn_dim=cfg.d_ff,
        decoder_ffn_dim=cfg.d_ff, max_position_embeddings=cfg.max_len, activation_function="gelu",
        pad_token_id=V, decoder_start_token_id=V, eos_token_id=0, forced_eos_token_id=None,
        scale_embedding=True, dropout=0.0,
    )
    torch.manual_seed(0)
    model = MarianMTModel(hf_cfg).eval()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return model


def hf_call(model, src_ids: list[int], n_tokens: int) -> Callable:
    ids = torch.tensor([src_ids])
    attn = torch.ones_like(ids)

    def call():
        with torch.inference_mode():
            return model.generate(ids, attention_mask=attn, num_beams=BEAM, num_return_sequences=BEAM,
                                  min_new_tokens=n_tokens, max_new_tokens=n_tokens, do_sample=False)

    return call


def build_ct2(hf_folder: Path, quantization: str, out: Path):
    import ctranslate2

    ctranslate2.converters.TransformersConverter(str(hf_folder)).convert(str(out), quantization=quantization, force=True)
    return ctranslate2.Translator(str(out), device="cpu", compute_type=quantization, intra_threads=1, inter_threads=1)


def ct2_call(translator, src_ids: list[int], n_tokens: int) -> Callable:
    tokens = [[f"t{i}" for i in src_ids]]

    def call():
        return translator.translate_batch(tokens, beam_size=BEAM, num_hypotheses=BEAM,
                                          min_decoding_length=n_tokens, max_decoding_length=n_tokens)

    return call


def external_systems(cfg, src: torch.Tensor, tmp: Path, n_tokens: int, cache: dict) -> tuple[dict, dict]:
    """-> ({name: call}, {name: reason it is missing}). Built once, reused across lengths."""
    # Same source length for all: our ids, the last one replaced by Marian's </s>.
    src_ids = src[0, :-1].tolist() + [0]
    calls, missing = {}, {}
    if "hf" not in cache:
        try:
            cache["hf"] = build_hf(cfg, tmp / "hf")
        except Exception as exc:  # not installed, or an API change: report, do not crash
            cache["hf"] = exc
    if isinstance(cache["hf"], Exception):
        missing["hf generate"] = f"{type(cache['hf']).__name__}: {cache['hf']}"
        return calls, missing
    calls["hf generate"] = hf_call(cache["hf"], src_ids, n_tokens)
    for q in ("float32", "int8"):
        key = f"ct2 {q}"
        if key not in cache:
            try:
                cache[key] = build_ct2(tmp / "hf", q, tmp / f"ct2_{q}")
            except Exception as exc:
                cache[key] = exc
        if isinstance(cache[key], Exception):
            missing[key] = f"{type(cache[key]).__name__}: {cache[key]}"
        else:
            calls[key] = ct2_call(cache[key], src_ids, n_tokens)
    return calls, missing


# --- our options ---------------------------------------------------------------------------------
def quantized(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model), {torch.nn.Linear}, dtype=torch.qint8)


def try_compile(model, src, mask, n_tokens: int) -> tuple[Any, dict[str, Any]]:
    """-> (compiled model or None, report). The first two calls are timed apart: they compile."""
    # An empty inductor cache: a warm one from an earlier run hides most of the compile time.
    cache = tempfile.mkdtemp(prefix="nl2code-inductor-")
    atexit.register(shutil.rmtree, cache, ignore_errors=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
    try:
        compiled = CompiledModel(model)
        first = common.timed(ours(compiled, src, mask, n_tokens))
        second = common.timed(ours(compiled, src, mask, n_tokens))
        return compiled, {"ok": True, "first_call_s": first, "second_call_s": second}
    except Exception as exc:
        msg = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        return None, {"ok": False, "error": f"{type(exc).__name__}: {msg}"}


def option_calls(model, fast, qmodel, compiled, src, mask, n_tokens: int, threads: int) -> dict[str, Callable]:
    other = 2 if threads == 1 else 1
    precision = getattr(fast, "precision", "float32")
    calls = {f"default (inference form, {precision})": ours(fast, src, mask, n_tokens, threads=threads)}
    if precision != "float32":
        calls["inference form, float32 weights"] = ours(FastTransformer(model, "float32"), src, mask, n_tokens,
                                                        threads=threads)
    calls.update({
        f"{other} threads": ours(fast, src, mask, n_tokens, threads=other),
        "no_grad instead of inference_mode": ours(fast, src, mask, n_tokens, grad="no_grad", threads=threads),
        "training module (KV cache by cat, float32)": ours(model, src, mask, n_tokens, threads=threads),
        "training module, no KV cache": ours(NoCacheModel(model), src, mask, n_tokens, threads=threads),
        "training module, quantize_dynamic int8": ours(qmodel, src, mask, n_tokens, threads=threads),
    })
    if compiled is not None:
        calls["training module, torch.compile"] = ours(compiled, src, mask, n_tokens, threads=threads)
    return calls


# --- jemalloc: alternate child processes ---------------------------------------------------------
def jemalloc_compare(args, rounds: int) -> dict[str, Any]:
    env, skipped = common.jemalloc_or_skip(rounds)
    if skipped:
        return skipped
    child = ["--only-ours", "--reps", str(args.reps), "--threads", str(args.threads),
             "--src-len", str(args.src_len), "--lengths", *map(str, args.lengths)]
    if args.model:
        child += ["--model", str(args.model)]
    runs: dict[str, list[dict]] = {"glibc malloc": [], "jemalloc": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for name, extra in (("glibc malloc", None), ("jemalloc", env)):
                runs[name].append(common.run_child_json("benchmarks.decode_speed", child, extra, Path(tmp) / "r.json"))
    out: dict[str, Any] = {"rounds": rounds, "MALLOC_CONF": env["MALLOC_CONF"]}
    for n in map(str, args.lengths):
        out[n] = {name: sorted(r["ours_ms"][n] for r in rs)[len(rs) // 2] for name, rs in runs.items()}
    return out


# --- driver ----------------------------------------------------------------------------------------
def measure_systems(fast, cfg, src, mask, args) -> tuple[dict, dict]:
    """ours vs HF vs CTranslate2 at each length -> ({length: {system: ms}}, {system: why missing})."""
    systems, missing = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        built: dict[str, Any] = {}
        for n in args.lengths:
            calls, why = external_systems(cfg, src, Path(tmp), n, built)
            times = common.alternate({"ours": ours(fast, src, mask, n), **calls}, args.reps)
            systems[str(n)] = {k: common.median_ms(v) for k, v in times.items()}
            missing.update(why)
    return systems, missing


def measure_options(model, fast, src, mask, args) -> tuple[dict, dict]:
    """Our options at each length -> ({length: {option: ms}}, torch.compile report)."""
    qmodel = quantized(model)
    if args.skip_compile or args.quick:
        why = "skipped (--quick: compiling costs minutes)" if args.quick else "skipped (--skip-compile)"
        compiled, compile_report = None, {"ok": False, "error": why}
    else:
        compiled, compile_report = try_compile(model, src, mask, max(args.lengths))
    options = {}
    for n in args.lengths:
        times = common.alternate(option_calls(model, fast, qmodel, compiled, src, mask, n, args.threads), args.reps)
        options[str(n)] = {k: common.median_ms(v) for k, v in times.items()}
    return options, compile_report


def measure(args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    model, cfg, desc = common.load_or_random(args.model)
    fast, precision = for_inference(model)  # what the engine decodes with
    src, mask = common.random_src(1, args.src_len, cfg.vocab_size)
    res: dict[str, Any] = {"model": desc, "threads": args.threads, "src_len": args.src_len, "beam": BEAM,
                           "reps": args.reps, "lengths": args.lengths, "precision": precision}
    if args.only_ours:  # child mode for the jemalloc comparison
        res["ours_ms"] = {str(n): common.median_ms(common.alternate({"ours": ours(fast, src, mask, n)}, args.reps)["ours"])
                          for n in args.lengths}
        return res
    res["systems"], res["missing"] = measure_systems(fast, cfg, src, mask, args)
    res["options"], res["compile"] = measure_options(model, fast, src, mask, args)
    res["jemalloc"] = jemalloc_compare(args, args.jemalloc_rounds)
    return res


def ratio_rows(ms: dict[str, float], base: str) -> list[list[Any]]:
    return [[name, v, v / ms[base]] for name, v in ms.items()]


def report(res: dict[str, Any]) -> str:
    out = ["## Decoding speed (beam 5, 5-best, batch 1)", "", common.polluted_note(),
           f"Model: {res['model']}. Source length {res['src_len']}; torch threads {res['threads']} for ours and "
           f"Hugging Face, intra_threads=1 for CTranslate2; {res['reps']} alternating repetitions, medians.", ""]
    out += [f"\"ours\" is the engine's decoder: the inference form at {res.get('precision', 'float32')} precision.", ""]
    for n, ms in res["systems"].items():
        out += [f"### {n} output tokens", "", common.table(["system", "ms / query", "× ours"], ratio_rows(ms, "ours")), ""]
        goals = [(name, limit) for name, limit in (("hf generate", 0.5), ("ct2 int8", 1.5)) if name in ms]
        if goals:
            out += ["Goals: " + "; ".join(f"ours / {name} = {ms['ours'] / ms[name]:.2f} (goal ≤ {limit})"
                                         for name, limit in goals) + ".", ""]
    for name, why in res["missing"].items():
        out.append(f"- {name}: not measured ({why})")
    out += ["", "### Our options", ""]
    for n, ms in res["options"].items():
        base = next(iter(ms))
        out += [f"{n} output tokens:", "", common.table(["option", "ms / query", "× default"], ratio_rows(ms, base)), ""]
    c = res["compile"]
    out.append(f"torch.compile: first call {c['first_call_s']:.1f} s, second call {c['second_call_s']:.2f} s "
               f"(compilation included, empty inductor cache)." if c["ok"] else f"torch.compile: not measured — {c['error']}.")
    out += ["", "### jemalloc (child processes, alternating)", ""]
    j = res["jemalloc"]
    if "skipped" in j:
        out.append(f"Skipped: {j['skipped']}.")
    else:
        rows = [[n, j[n]["glibc malloc"], j[n]["jemalloc"], j[n]["jemalloc"] / j[n]["glibc malloc"]]
                for n in map(str, res["lengths"])]
        out += [f"MALLOC_CONF={j['MALLOC_CONF']}; median of {j['rounds']} child runs.", "",
                common.table(["tokens", "glibc ms", "jemalloc ms", "× glibc"], rows)]
    return "\n".join(out) + "\n"


def main() -> dict[str, Any]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: NL2CODE_MODEL or the bundled model, else random weights)")
    p.add_argument("--lengths", type=int, nargs="+", default=[30, 60], help="output tokens per query")
    p.add_argument("--src-len", type=int, default=16, help="source tokens per query")
    p.add_argument("--reps", type=int, default=20, help="timed calls per system")
    p.add_argument("--threads", type=int, default=1, help="torch threads for the main comparison")
    p.add_argument("--jemalloc-rounds", type=int, default=3, help="child processes per allocator (0: skip)")
    p.add_argument("--skip-compile", action="store_true", help="do not try torch.compile (it costs minutes)")
    p.add_argument("--only-ours", action="store_true", help=argparse.SUPPRESS)  # jemalloc child mode
    args = p.parse_args()
    common.apply_quick(args, p, reps=2, lengths=[30], jemalloc_rounds=1)
    res = measure(args)
    if args.only_ours:
        return common.finish(args, res, f"ours: {res['ours_ms']}")
    return common.finish(args, res, report(res))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
