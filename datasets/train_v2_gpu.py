"""Train model v2 on one CUDA GPU within a fixed wall-clock budget (also runs on CPU, slowly).

    python datasets/train_v2_gpu.py --corpus CORPUS_DIR --tokenizer TOKENIZER --out RUNS \
        --minutes 7 [--export DIR] [--tiny] [--denoise RATIO | --no-denoise]

Jobs run side by side, each in its own process (a small model leaves most of a big GPU
idle, so they share it well):

- `fwd`   the shipped shape: pre-train on the whole corpus mixed with denoising examples
          (corrupted code -> the clean code, nl2code/noise.py; --denoise sets their ratio to
          the pairs, --no-denoise turns them off), then fine-tune on the curated,
          tldr, documentation and free-form sources (no mined pairs, no Django), keeping
          the last checkpoints; their average is kept if its dev BLEU is not lower.
- `rev`   the reverse model (code -> intent) for reranking and `nl2code explain`.
- `s256`, `s512`  the size study: the same pre-training (denoising included) at d256 3+3
          and d512 6+6 (logs only).

Every job reads the same corpus (`nl2code data build` output) and tokenizer; everything
it writes stays under --out. With --export, the chosen models are packaged with float16
weights, tarred and cut into parts of at most 15 MiB (for machines that return few, small
files); join them with `cat fwd.tar.part* > fwd.tar`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FT_SOURCES = ("conala", "conala-free", "nl2bash", "tldr", "tldr-named", "apidocs", "pydoc", "pandasdoc")

SHAPES = {
    # the largest shape that ships: with the reverse model beside it and the 17.7 MB index
    # the folder stays under the 60 MB budget (d384 6+3 would take 71 MB in float16), and its
    # warm p50 estimates at ~1.1x the d256 3+3's (benchmarks/size_study.md)
    "fwd": dict(d_model=320, n_head=5, n_enc_layer=4, n_dec_layer=3, d_ff=1280),
    "rev": dict(d_model=256, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=1024),
    "s256": dict(d_model=256, n_head=4, n_enc_layer=3, n_dec_layer=3, d_ff=1024),
    "s512": dict(d_model=512, n_head=8, n_enc_layer=6, n_dec_layer=6, d_ff=2048),
}
TINY = dict(d_model=32, n_head=2, n_enc_layer=1, n_dec_layer=1, d_ff=64)


def log_to(path: Path):
    fh = open(path, "a", buffering=1)

    def log(rec: dict) -> None:
        fh.write(json.dumps({"t": round(time.time(), 1), **rec}) + "\n")

    return log


def finetune_corpus(corpus: Path, dst: Path) -> Path:
    """The fine-tuning subset: the curated, tldr, documentation and free-form sources."""
    dst.mkdir(parents=True, exist_ok=True)
    stats = json.loads((corpus / "stats.json").read_text())
    keep = 0
    with open(corpus / "train.jsonl", encoding="utf-8") as src, open(dst / "train.jsonl", "w", encoding="utf-8") as out:
        for line in src:
            if json.loads(line).get("source") in FT_SOURCES:
                out.write(line)
                keep += 1
    (dst / "dev.jsonl").write_bytes((corpus / "dev.jsonl").read_bytes())
    weights = {k: v for k, v in stats.get("weights", {}).items() if k in FT_SOURCES}
    (dst / "stats.json").write_text(json.dumps({"weights": weights, "train": keep}))
    return dst


def configs(job: str, args, corpus: Path, out: Path, minutes: float, **over):
    from nl2code.config import ModelConfig, TrainConfig

    shape = TINY if args.tiny else SHAPES["rev" if job == "rev" else job]
    cuda = _cuda()
    tcfg = TrainConfig(
        corpus=str(corpus), out=str(out), tokenizer=args.tokenizer,
        batch_tokens=24000 if cuda else 2000, lr=1e-3 if cuda else 2e-3,
        warmup_steps=1000 if cuda else 50, max_steps=10**7, max_minutes=minutes,
        label_smoothing=0.1, eval_every=1500 if cuda else 100, save_every_minutes=3,
        dev_bleu_examples=400 if cuda else 20, threads=2, seed=1, log_every=100,
        task="explain" if job == "rev" else "code", max_src_len=128, max_tgt_len=160,
    )
    for k, v in over.items():
        setattr(tcfg, k, v)
    mcfg = ModelConfig(**shape, dropout=0.1, max_len=256)
    return tcfg, mcfg


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def dev_score(folder: Path, corpus: Path, task: str) -> float:
    import torch

    from nl2code.checkpoint import load_model
    from nl2code.config import TrainConfig
    from nl2code.data.records import read_jsonl
    from nl2code.train import dev_bleu, encode_examples

    model, cfg, tok, _ = load_model(folder)
    if torch.cuda.is_available():
        model.cuda()
    dev = encode_examples(read_jsonl(corpus / "dev.jsonl"), tok,
                          TrainConfig(task=task, max_src_len=128, max_tgt_len=160))
    return dev_bleu(model, tok, dev, 400, task)


def job_main(job: str, args) -> None:
    from nl2code import checkpoint
    from nl2code.train import train

    out = Path(args.out) / job
    out.mkdir(parents=True, exist_ok=True)
    log = log_to(out / "log.jsonl")
    corpus = Path(args.corpus)
    start = time.time()
    total = args.minutes
    if job == "rev":
        tcfg, mcfg = configs(job, args, corpus, out / "run", total - 0.3)
        best = train(tcfg, mcfg, log=log)
        log({"event": "final", "model": str(best), "dev_bleu": dev_score(best, corpus, "explain")})
        return
    ft_minutes = total * 0.22
    pre_cfg, mcfg = configs(job, args, corpus, out / "pre", total - ft_minutes - 0.4,
                            denoise_ratio=0.0 if args.no_denoise else args.denoise)
    pre = train(pre_cfg, mcfg, log=log)
    if job != "fwd":
        log({"event": "final", "model": str(pre)})
        return
    ft = finetune_corpus(corpus, Path(args.out) / "ft-corpus")
    left = total - (time.time() - start) / 60 - 0.5
    ft_cfg, _ = configs(job, args, ft, out / "ft", max(left, 0.2), init_from=str(pre),
                        lr=3e-4 if _cuda() else 1e-3, warmup_steps=100 if _cuda() else 10,
                        eval_every=400 if _cuda() else 50, keep_checkpoints=5)
    best = train(ft_cfg, mcfg, log=log)
    chosen, score = best, dev_score(best, corpus, "code")
    log({"event": "score", "model": str(best), "dev_bleu": score})
    steps = sorted((out / "ft").glob("step-*"))
    if len(steps) >= 2:
        avg = out / "ft-avg"
        checkpoint.average(steps, avg)
        s_avg = dev_score(avg, corpus, "code")
        log({"event": "score", "model": str(avg), "dev_bleu": s_avg, "averaged": [p.name for p in steps]})
        if s_avg >= score:
            chosen, score = avg, s_avg
    log({"event": "final", "model": str(chosen), "dev_bleu": score})


def export(args) -> None:
    from nl2code import checkpoint

    dst = Path(args.export)
    dst.mkdir(parents=True, exist_ok=True)
    part = 15 * 1024 * 1024
    with tarfile.open(dst / "logs.tar.gz", "w:gz") as tar:
        for log in sorted(Path(args.out).glob("*/log.jsonl")):
            tar.add(log, arcname=f"{log.parent.name}.log.jsonl")
        for out in sorted(Path(args.out).glob("*.out")):
            tar.add(out, arcname=out.name)
    for job in ("fwd", "rev"):
        final = [json.loads(x) for x in (Path(args.out) / job / "log.jsonl").read_text().splitlines()
                 if '"final"' in x] if (Path(args.out) / job / "log.jsonl").exists() else []
        found = [final[-1]["model"]] if final else []
        if not found:  # a job that died late: its newest best model
            found = [str(p) for p in (Path(args.out) / job).glob("*/best") if (p / "manifest.json").exists()]
            found.sort(key=lambda p: Path(p).stat().st_mtime)
        if not found:
            print(f"export: {job} has no model", flush=True)
            continue
        pkg = Path(args.out) / f"{job}-pkg"
        checkpoint.package(found[-1], pkg, {"trained_on": "cuda" if _cuda() else "cpu"}, half=True)
        tar_path = Path(args.out) / f"{job}.tar"
        with tarfile.open(tar_path, "w") as tar:
            tar.add(pkg, arcname=job)
        data = tar_path.read_bytes()
        for i in range(0, len(data), part):
            (dst / f"{job}.tar.part{i // part}").write_bytes(data[i : i + part])
        print(f"export: {job} {len(data) / 1e6:.1f} MB", flush=True)


def _check_denoise(ap, args) -> None:
    """A bad --denoise is one error line here, before any job starts."""
    from nl2code.config import TrainConfig
    from nl2code.errors import UsageError
    from nl2code.validate import check_train_config

    try:
        check_train_config(TrainConfig(denoise_ratio=args.denoise))
    except UsageError as exc:
        ap.error(f"--denoise {args.denoise}: {str(exc).split(': ', 1)[-1]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--tokenizer", default="")
    ap.add_argument("--out", default="")
    ap.add_argument("--minutes", type=float, default=7.0)
    ap.add_argument("--jobs", default="fwd,rev,s256,s512")
    ap.add_argument("--export", default="")
    ap.add_argument("--grace", type=float, default=100, help="seconds past --minutes before jobs are killed")
    ap.add_argument("--tiny", action="store_true", help="a tiny shape, for a quick check of the script")
    ap.add_argument("--denoise", type=float, default=0.5,
                    help="pre-training: denoising examples per (weighted) NL->code pair (default 0.5)")
    ap.add_argument("--no-denoise", action="store_true", help="pre-train on the NL->code pairs alone")
    ap.add_argument("--subset", default="", help="only write the fine-tuning subset of --corpus to this folder")
    ap.add_argument("--job", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    _check_denoise(ap, args)
    if args.subset:
        out = finetune_corpus(Path(args.corpus), Path(args.subset))
        print(f"{out}: {json.loads((out / 'stats.json').read_text())['train']} pairs")
        return
    if not args.tokenizer or not args.out:
        ap.error("--tokenizer and --out are needed (except with --subset)")
    args.tokenizer = str(Path(args.tokenizer).resolve())
    if args.job:
        job_main(args.job, args)
        return
    if not Path(args.tokenizer).exists():  # one tokenizer for every job, trained here once
        from nl2code.data.records import read_jsonl
        from nl2code.tokenizer import Tokenizer
        from nl2code.train import tokenizer_texts

        t0 = time.time()
        texts = tokenizer_texts(read_jsonl(Path(args.corpus) / "train.jsonl"))
        tok = Tokenizer.train(texts, 1000 if args.tiny else 8000, threads=min(os.cpu_count() or 2, 16))
        Path(args.tokenizer).parent.mkdir(parents=True, exist_ok=True)
        tok.save(Path(args.tokenizer))
        print(f"tokenizer: {tok.vocab_size} pieces in {time.time() - t0:.0f} s", flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    procs = {}
    for job in args.jobs.split(","):
        cmd = [sys.executable, __file__, "--job", job, *sys.argv[1:]]
        log = open(Path(args.out) / f"{job}.out", "w")
        procs[job] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      env={**os.environ, "OMP_NUM_THREADS": "2"})
    deadline = time.time() + args.minutes * 60 + args.grace
    for job, p in procs.items():
        try:
            p.wait(timeout=max(deadline - time.time(), 1))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        print(f"{job}: exit {p.returncode}", flush=True)
        print((Path(args.out) / f"{job}.out").read_text()[-1500:], flush=True)
    if args.export:
        export(args)


if __name__ == "__main__":
    main()
