"""Configuration dataclasses: one object per concern, neutral defaults, TOML overrides.

Unknown keys are rejected (a typo must not silently become a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from nl2code.errors import UsageError


@dataclass
class ModelConfig:
    arch: Literal["transformer", "rnn"] = "transformer"
    vocab_size: int = 8000
    d_model: int = 256
    n_head: int = 4
    n_enc_layer: int = 3
    n_dec_layer: int = 3
    d_ff: int = 1024
    dropout: float = 0.2
    max_len: int = 256
    # how the weights are stored on disk: float32, or float16 (half the size; upcast to
    # float32 when loaded, so inference runs as before)
    weights_dtype: Literal["float32", "float16"] = "float32"
    # retrieval-augmented input: the slot-adapted code of the context_k nearest training
    # pairs follows the intent in the encoder input, each cut to context_tokens pieces
    context_k: int = 0
    context_tokens: int = 48
    # rnn baseline only
    rnn_hidden: int = 256
    rnn_layers: int = 2


@dataclass
class TrainConfig:
    corpus: str = ""  # folder with train.jsonl / dev.jsonl from `nl2code data build`
    out: str = ""  # training folder: checkpoints and logs
    vocab_size: int = 8000
    batch_tokens: int = 4000
    lr: float = 5e-4
    warmup_steps: int = 400
    max_steps: int = 20000
    max_minutes: float = 0.0  # 0 = no time limit
    weight_decay: float = 0.01
    label_smoothing: float = 0.1
    clip_norm: float = 1.0
    eval_every: int = 500
    save_every_minutes: float = 5.0
    dev_bleu_examples: int = 200
    patience: int = 0  # evaluations without dev improvement before stopping; 0 = off
    seed: int = 1
    threads: int = 0  # 0 = torch default
    max_src_len: int = 96
    max_tgt_len: int = 160
    source_weights: dict[str, float] = field(default_factory=dict)
    init_from: str = ""  # model folder to fine-tune from (weights + tokenizer reused)
    # retrieved snippets in the encoder input (sets the model's context_k; -1: keep the
    # model's own). The corpus needs them: python -m nl2code.context --corpus ... --out ...
    context_k: int = -1
    log_every: int = 50
    tokenizer: str = ""  # an existing tokenizer.model to use instead of training one
    task: Literal["code", "explain"] = "code"  # explain: the reverse model, code -> intent
    keep_checkpoints: int = 0  # > 0: also keep the model of each of the last N evaluations (for averaging)
    device: str = "auto"  # auto: cuda when available, else cpu (bf16 autocast on cuda)
    # denoising pre-training (nl2code/noise.py; task "code" only): each epoch also trains on
    # denoise_ratio x (weighted pairs) examples corrupted code -> the clean code; 0 = off.
    # Noise: spans (mean denoise_span pieces) covering denoise_mask of the code become one
    # sentinel each; other pieces are dropped with probability denoise_drop
    denoise_ratio: float = 0.0
    denoise_mask: float = 0.35
    denoise_span: float = 3.0
    denoise_drop: float = 0.1


@dataclass
class DecodeConfig:
    strategy: Literal["greedy", "beam", "sample"] = "beam"
    beam_size: int = 5
    n_best: int = 5
    max_len: int = 128
    min_len: int = 1
    length_penalty: float = 1.0
    temperature: float = 1.0
    top_k: int = 0
    seed: int = 0
    # beam: drop hypotheses whose prefix can no longer parse, accept only finished ones that
    # parse, and widen the beam once when none does (nl2code/guided.py). Off by default: with
    # the bundled model's rerank weights (fitted on the unpruned candidate pool) it gained
    # +0.1 BLEU but lost 1.5 points of exec pass@1 (benchmarks/beam_prune.md)
    prune: bool = False
    # > 0: anytime decoding within this wall-clock budget per generate call (not
    # deterministic when the budget cuts the search: it depends on machine speed and load)
    max_latency_ms: float = 0.0

    def validate(self) -> "DecodeConfig":
        if self.strategy not in ("greedy", "beam", "sample"):
            raise UsageError(f"unknown decoding strategy {self.strategy!r}: use greedy, beam or sample")
        if self.max_len < 1 or self.min_len < 0 or self.min_len > self.max_len:
            raise UsageError("max_len must be >= 1 and min_len between 0 and max_len")
        if self.n_best < 1:
            raise UsageError("n_best must be at least 1")
        default = DecodeConfig()
        if self.strategy == "beam":
            if self.beam_size < 1:
                raise UsageError("beam_size must be at least 1")
            if self.n_best > self.beam_size:
                raise UsageError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
            if self.temperature != default.temperature or self.top_k != default.top_k:
                raise UsageError("temperature/top_k only apply to strategy 'sample'")
        else:
            if self.beam_size != default.beam_size and self.beam_size != 1:
                raise UsageError("beam_size only applies to strategy 'beam'")
            if self.length_penalty != default.length_penalty:
                raise UsageError("length_penalty only applies to strategy 'beam'")
        if self.strategy == "greedy":
            if self.n_best != 1 and self.n_best != default.n_best:
                raise UsageError("greedy decoding returns one hypothesis: n_best must be 1")
            if self.temperature != default.temperature or self.top_k != default.top_k:
                raise UsageError("temperature/top_k only apply to strategy 'sample'")
        if self.strategy == "sample" and self.temperature <= 0:
            raise UsageError("temperature must be > 0")
        if self.top_k < 0:
            raise UsageError("top_k must be >= 0 (0 = no limit)")
        if not isinstance(self.max_latency_ms, (int, float)) or isinstance(self.max_latency_ms, bool) \
                or not 0 <= self.max_latency_ms <= 3_600_000:
            raise UsageError("max_latency_ms must be a number of milliseconds between 0 (no budget) and 3600000")
        if self.strategy != "beam" and self.prune:
            raise UsageError("prune only applies to strategy 'beam'")
        if self.strategy != "sample" and self.seed != default.seed:
            raise UsageError("seed only applies to strategy 'sample'")
        return self


def from_dict(cls, data: dict[str, Any]):
    """Build a config dataclass from a dict, rejecting unknown keys with a clear message."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UsageError(f"unknown {cls.__name__} key(s): {', '.join(unknown)}")
    return cls(**data)


def to_dict(cfg) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


DEFAULT_THREADS = 1  # benchmarks/threads.md: 2 threads gained little alone and lost badly beside a busy process
MAX_THREADS = 256


def inference_threads(threads: int | None = None) -> int:
    """Torch (OpenMP) threads for generation: the explicit value, else NL2CODE_THREADS, else 1."""
    import os

    if threads:
        return threads
    raw = os.environ.get("NL2CODE_THREADS", "").strip()
    if not raw:
        return DEFAULT_THREADS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_THREADS:
        raise UsageError(f"NL2CODE_THREADS={raw!r}: give a whole number of threads from 1 to {MAX_THREADS}")
    return int(raw)
