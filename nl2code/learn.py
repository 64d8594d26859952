"""Learning from accepted answers: `nl2code train --from-history`.

The pairs users accepted (history records marked accepted: an editor completion, POST
/v1/accept) fine-tune a copy of the current model, mixed with the curated corpus so it
does not forget. Base and candidate are then scored on the curated dev sets (one per
source, CoNaLa-style BLEU with the beam the CLI uses); the candidate is kept, under
$NL2CODE_HOME/models/NAME (selectable with -m NAME), only when no dev set's BLEU drops by
more than the tolerance (0 by default). Either way a report says what changed: dev scores
before and after, and which accepted intents the model now answers differently.
"""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from nl2code.data.records import Example
from nl2code.errors import DataError, UsageError
from nl2code.paths import home, resolve_model, user_models_dir

HISTORY_SOURCE = "history"


@dataclass
class LearnConfig:
    corpus: str = ""  # curated corpus folder (train.jsonl, dev.jsonl); "" = the base model's own
    base: str | None = None  # model to start from (None: NL2CODE_MODEL or the bundled one)
    name: str = "mine"  # kept as user_models_dir()/name
    steps: int = 300
    lr: float = 1e-4
    warmup_steps: int = 30
    batch_tokens: int = 2000
    history_weight: float = 8.0  # each accepted pair is seen this many times per epoch
    curated_max: int = 20_000  # curated training examples mixed in (a seeded sample; 0 = all)
    dev_max: int = 200  # dev examples per dev set
    tolerance: float = 0.0  # BLEU points a dev set may lose before the candidate is rejected
    beam: int = 5
    seed: int = 1
    threads: int = 0

    def validate(self) -> "LearnConfig":
        if not self.name or "/" in self.name or "\\" in self.name or self.name.startswith("."):
            raise UsageError(f"--name {self.name!r}: use a plain name such as mine")
        if self.steps < 1 or self.lr <= 0 or self.history_weight <= 0 or self.dev_max < 1 or self.tolerance < 0:
            raise UsageError("steps, lr, history weight and dev size must be positive; tolerance >= 0")
        return self


def accepted_examples(records) -> list[Example]:
    """One example per (intent, language), the latest acceptance winning; code that does not
    parse in its language is left out (the model must never learn to emit it)."""
    from nl2code import syntax

    latest: dict[tuple[str, str], Example] = {}
    for r in records:
        code = r.chosen_code
        if code and r.intent.strip() and syntax.parses(code, r.lang):
            latest[(r.intent, r.lang)] = Example(r.intent, code, r.lang, HISTORY_SOURCE)
    return list(latest.values())


def _default_corpus(base: Path) -> Path:
    from nl2code.checkpoint import load_config

    _, meta = load_config(base)
    train_cfg = meta.get("train_config")
    corpus = train_cfg.get("corpus") if isinstance(train_cfg, dict) else None
    if corpus and (Path(corpus) / "train.jsonl").is_file():
        return Path(corpus)
    raise UsageError(f"the curated corpus of {base} is not here ({corpus or 'not recorded'}): "
                     f"pass --corpus DIR (built with `nl2code data build`)")


def _write_jsonl(path: Path, examples: list[Example]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for e in examples:
            fh.write(json.dumps(asdict(e), ensure_ascii=False) + "\n")


def _dev_sets(dev: list[Example], n: int) -> dict[str, list[Example]]:
    sets: dict[str, list[Example]] = {}
    for e in dev:
        group = sets.setdefault(e.source, [])
        if len(group) < n:
            group.append(e)
    return sets


def _score(gen, sets: dict[str, list[Example]], beam: int) -> dict[str, dict[str, float]]:
    from nl2code import evaluate

    out = {}
    for source, examples in sets.items():
        lang = examples[0].lang
        rows = evaluate.run_model(gen, [e for e in examples if e.lang == lang], lang, beam=beam)
        s = evaluate.summarise(rows, lang)
        out[source] = {"examples": s["examples"], "bleu": s["bleu"], "exact_match": s["exact_match"],
                       "answered_rate": s["answered_rate"]}
    return out


def _answers(gen, pairs: list[Example], beam: int) -> list[str | None]:
    from nl2code.errors import NoParseableCandidate

    out: list[str | None] = []
    for e in pairs:
        try:
            out.append(gen.generate(e.intent, e.lang, n=1, beam=beam)[0].code)
        except (NoParseableCandidate, UsageError):
            out.append(None)
    return out


def learn(cfg: LearnConfig, records, log: Callable[[str], None] = lambda msg: None,
          train_log: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Fine-tune, evaluate, keep or reject. records: history records (accepted ones are used).
    Returns the report (also written to $NL2CODE_HOME/learn/last_report.json)."""
    from nl2code import checkpoint
    from nl2code.config import ModelConfig, TrainConfig
    from nl2code.engine import Generator
    from nl2code.train import load_corpus, train

    cfg.validate()
    pairs = accepted_examples(records)
    if not pairs:
        raise UsageError("no accepted answers in the history yet: accept completions in the editor "
                         "(or POST /v1/accept) first")
    base = resolve_model(cfg.base)
    checkpoint.verify(base)
    corpus = Path(cfg.corpus) if cfg.corpus else _default_corpus(base)
    curated, dev, weights = load_corpus(corpus)
    if not dev:
        raise DataError(f"{corpus / 'dev.jsonl'} is empty: the candidate cannot be judged without dev sets")
    rng = random.Random(cfg.seed)
    if cfg.curated_max and len(curated) > cfg.curated_max:
        curated = rng.sample(curated, cfg.curated_max)
    sets = _dev_sets(dev, cfg.dev_max)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="learn-", dir=_learn_dir()))
    try:
        mix = work / "corpus"
        mix.mkdir()
        _write_jsonl(mix / "train.jsonl", curated + pairs)
        _write_jsonl(mix / "dev.jsonl", [e for group in sets.values() for e in group])
        (mix / "stats.json").write_text(json.dumps({"weights": {**weights, HISTORY_SOURCE: cfg.history_weight}}))
        log(f"fine-tuning {base} on {len(pairs)} accepted pair(s) (x{cfg.history_weight:g}) "
            f"+ {len(curated):,} curated examples, {cfg.steps} steps")
        tcfg = TrainConfig(corpus=str(mix), out=str(work / "run"), init_from=str(base), lr=cfg.lr,
                           warmup_steps=cfg.warmup_steps, max_steps=cfg.steps, eval_every=cfg.steps,
                           batch_tokens=cfg.batch_tokens, dev_bleu_examples=0, seed=cfg.seed,
                           threads=cfg.threads, log_every=max(1, cfg.steps // 10), save_every_minutes=1e6)
        candidate_dir = train(tcfg, ModelConfig(), log=train_log)
        log("scoring the current and the fine-tuned model on the dev sets")
        before_gen = Generator.from_checkpoint(base)
        after_gen = Generator.from_checkpoint(candidate_dir, precision=before_gen.precision)
        before, after = _score(before_gen, sets, cfg.beam), _score(after_gen, sets, cfg.beam)
        answers_before, answers_after = _answers(before_gen, pairs, cfg.beam), _answers(after_gen, pairs, cfg.beam)
        drops = {s: round(before[s]["bleu"] - after[s]["bleu"], 2) for s in sets
                 if after[s]["bleu"] < before[s]["bleu"] - cfg.tolerance}
        kept = not drops
        target = user_models_dir() / cfg.name
        changed = [{"intent": e.intent, "lang": e.lang, "accepted": e.code, "before": b, "after": a}
                   for e, b, a in zip(pairs, answers_before, answers_after) if a != b]
        report = {
            "kept": kept,
            "name": cfg.name,
            "path": str(target) if kept else None,
            "base": str(base),
            "corpus": str(corpus),
            "accepted_pairs": len(pairs),
            "curated_examples": len(curated),
            "steps": cfg.steps,
            "dev": {s: {"before": before[s], "after": after[s]} for s in sets},
            "dev_drops": drops,
            "tolerance": cfg.tolerance,
            "accepted_answered_exactly": {
                "before": sum(b == e.code for e, b in zip(pairs, answers_before)),
                "after": sum(a == e.code for e, a in zip(pairs, answers_after)), "of": len(pairs)},
            "changed_answers": changed[:50],
            "minutes": round((time.time() - started) / 60, 2),
            "reason": ("no dev set dropped" if kept else
                       "rejected: dev BLEU dropped on " + ", ".join(f"{s} (-{d})" for s, d in drops.items())),
        }
        if kept:
            checkpoint.package(candidate_dir, target, {
                "fine_tuned_from": str(base), "base_sha256": checkpoint.verify(base)["files"]["model.safetensors"],
                "history_pairs": len(pairs), "learn_dev": report["dev"], "corpus": f"{corpus} + {len(pairs)} accepted"})
            log(f"kept as {target} (use it with -m {cfg.name})")
        else:
            log(report["reason"] + "; the current model stays")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (_learn_dir() / "last_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return report


def _learn_dir() -> Path:
    path = home() / "learn"
    path.mkdir(parents=True, exist_ok=True)
    return path
