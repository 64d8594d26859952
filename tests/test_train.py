"""Training: loss falls, memorises, resumes exactly after SIGKILL/SIGTERM, runs under torchrun."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_configs, write_toy_corpus
from nl2code import checkpoint
from nl2code.errors import CheckpointError, DataError, UsageError
from nl2code.train import STATE, train

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
# Small and fast; checkpoints every step in the SIGKILL run; dropout on, so a resume that
# lost the RNG state would show in the losses.
RUN = dict(max_steps=24, eval_every=8, log_every=1, dev_bleu_examples=2, save_every_minutes=60.0)

CHILD = """
import json, sys
sys.path.insert(0, {tests!r}); sys.path.insert(0, {repo!r})
from pathlib import Path
from conftest import tiny_configs
from nl2code.train import train
tcfg, mcfg = tiny_configs(Path({corpus!r}), Path({out!r}), **json.loads({overrides!r}))
mcfg.dropout = 0.1
train(tcfg, mcfg, log=lambda rec: print(json.dumps(rec), flush=True))
"""


def configs(corpus: Path, out: Path, **overrides):
    tcfg, mcfg = tiny_configs(corpus, out, **{**RUN, **overrides})
    mcfg.dropout = 0.1
    return tcfg, mcfg


def steps(records: list[dict]) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in records if r["event"] == "step"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_toy_corpus(tmp_path_factory.mktemp("train") / "corpus", copies=2)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory) -> list[dict]:
    """An uninterrupted run: the losses a resumed run must reproduce."""
    records: list[dict] = []
    out = tmp_path_factory.mktemp("reference") / "run"
    train(*configs(corpus, out), log=records.append)
    return records


def spawn(corpus: Path, out: Path, tmp_path: Path, **overrides) -> subprocess.Popen:
    code = CHILD.format(tests=str(TESTS), repo=str(REPO), corpus=str(corpus), out=str(out),
                        overrides=json.dumps({**RUN, **overrides}))
    stderr = open(tmp_path / "child.stderr", "w")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=stderr, text=True)


def read_until(proc: subprocess.Popen, pred) -> list[dict]:
    seen = []
    for line in proc.stdout:
        rec = json.loads(line)
        seen.append(rec)
        if pred(rec):
            return seen
    raise AssertionError(f"child ended (rc={proc.wait()}) before the expected event: {seen[-3:]}")


def test_dev_loss_falls(reference):
    evals = [r for r in reference if r["event"] == "eval"]
    assert [e["step"] for e in evals] == [8, 16, 24]
    losses = [e["dev_loss"] for e in evals]
    assert losses[0] > losses[1] > losses[2]
    train_losses = steps(reference)
    assert sorted(train_losses) == list(range(1, 25))
    assert sum(train_losses[s] for s in range(20, 25)) < sum(train_losses[s] for s in range(1, 6))


def test_tiny_model_memorised(tiny_model):
    from nl2code.engine import Generator

    _, meta = checkpoint.load_config(tiny_model)
    assert meta["dev_bleu"] == pytest.approx(100.0)
    gen = Generator.from_checkpoint(tiny_model)
    assert gen.generate("sort list `xs` in descending order")[0].code == "xs.sort(reverse=True)"
    assert gen.generate("list all files in the current directory", "bash")[0].code == "ls -la"


def test_sigkill_then_resume_matches_uninterrupted(corpus, reference, tmp_path):
    out = tmp_path / "run"
    proc = spawn(corpus, out, tmp_path, save_every_minutes=1e-9)  # a checkpoint after every step
    try:
        seen = read_until(proc, lambda r: r["event"] == "checkpoint" and r["step"] >= 3)
        proc.send_signal(signal.SIGKILL)  # lands wherever the child is: mid-step or mid-save
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # the child's own steps before the kill match the reference run
    ref = steps(reference)
    for s, loss in steps(seen).items():
        assert loss == ref[s]

    last = out / "last"
    checkpoint.recover_dir(last)  # a kill between the two renames leaves last/ as .last.old
    checkpoint.verify(last)  # never half written
    _, meta = checkpoint.load_config(last)
    s = meta["step"]
    assert 3 <= s < RUN["max_steps"]

    records: list[dict] = []
    best = train(*configs(corpus, out), resume=True, log=records.append)
    got = steps(records)
    assert sorted(got) == list(range(s + 1, RUN["max_steps"] + 1))
    for step, loss in got.items():
        assert loss == ref[step], step  # bit-for-bit what the uninterrupted run computed
    ref_evals = {r["step"]: r["dev_loss"] for r in reference if r["event"] == "eval"}
    for r in records:
        if r["event"] == "eval":
            assert r["dev_loss"] == ref_evals[r["step"]]
    checkpoint.verify(best)

    # resuming a finished run trains nothing more
    again: list[dict] = []
    assert train(*configs(corpus, out), resume=True, log=again.append) == best
    assert steps(again) == {}


def test_sigterm_saves_and_resume_continues(corpus, reference, tmp_path):
    out = tmp_path / "run"
    proc = spawn(corpus, out, tmp_path)
    try:
        read_until(proc, lambda r: r["event"] == "step" and r["step"] >= 2)
        proc.send_signal(signal.SIGTERM)
        rest = [json.loads(line) for line in proc.stdout]
        rc = proc.wait(timeout=120)
    finally:
        proc.kill()
        proc.wait()
    assert rc == 128 + signal.SIGTERM
    interrupted = [r for r in rest if r["event"] == "interrupted"]
    assert len(interrupted) == 1
    s = interrupted[0]["step"]
    assert s < RUN["max_steps"]
    checkpoint.verify(out / "last")
    assert checkpoint.load_config(out / "last")[1]["step"] == s

    records: list[dict] = []
    train(*configs(corpus, out), resume=True, log=records.append)
    got, ref = steps(records), steps(reference)
    assert min(got) == s + 1 and max(got) == RUN["max_steps"]
    assert all(got[k] == ref[k] for k in got)


def test_planted_pickle_train_state_never_unpickled(corpus, tmp_path):
    out = tmp_path / "run"
    train(*configs(corpus, out, max_steps=2, eval_every=2))
    marker = tmp_path / "UNPICKLED"

    class Plant:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (out / "last" / STATE).write_bytes(pickle.dumps({"optimizer": Plant()}))
    manifest = json.loads((out / "last" / checkpoint.MANIFEST).read_text())
    manifest["files"][STATE] = checkpoint.sha256_file(out / "last" / STATE)
    (out / "last" / checkpoint.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not a valid training state"):
        train(*configs(corpus, out, max_steps=4), resume=True)
    assert not marker.exists()


def test_refuses_to_overwrite_or_resume_nothing(corpus, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(UsageError, match="nothing to resume"):
        train(*configs(corpus, out), resume=True)
    train(*configs(corpus, out, max_steps=1, eval_every=1))
    with pytest.raises(UsageError, match="already holds a training run"):
        train(*configs(corpus, out, max_steps=1))


def test_missing_corpus(tmp_path):
    with pytest.raises(DataError, match="train.jsonl"):
        train(*configs(tmp_path / "nothing", tmp_path / "run"))


def test_model_max_len_limits_examples(tmp_path):
    """A model with few positions trains (long targets skipped) and evaluates without crashing."""
    corpus = write_toy_corpus(tmp_path / "corpus")
    with open(corpus / "train.jsonl", "a") as fh:
        code = "x = [" + ", ".join(str(i) for i in range(60)) + "]"
        fh.write(json.dumps({"intent": "a long list", "code": code, "lang": "python", "source": "toy"}) + "\n")
    tcfg, mcfg = configs(corpus, tmp_path / "run", max_steps=3, eval_every=3)
    mcfg.max_len = 40
    best = train(tcfg, mcfg)
    _, meta = checkpoint.load_config(best)
    assert meta["languages"] == ["python", "bash"]
    assert meta["corpus_size"] == 20  # the long example does not fit 40 positions


SCRIPT = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, {tests!r}); sys.path.insert(0, {repo!r})
from conftest import tiny_configs
from nl2code.train import train
tcfg, mcfg = tiny_configs(Path({corpus!r}), Path({out!r}), max_steps=30, eval_every=2, log_every=1,
                          dev_bleu_examples=2, patience=1)
rank = int(os.environ["RANK"])
logfile = open(Path({out!r}).parent / f"rank{{rank}}.jsonl", "w", buffering=1)  # one file per rank
best = train(tcfg, mcfg, log=lambda r: logfile.write(json.dumps({{"rank": rank, **r}}) + "\\n"))
logfile.write(json.dumps({{"rank": rank, "event": "done", "world": int(os.environ["WORLD_SIZE"])}}) + "\\n")
"""


@pytest.mark.timeout(240)
def test_torchrun_two_processes(corpus, tmp_path):
    """DDP over gloo on CPU; early stopping decided on rank 0 must stop rank 1 too (no hang)."""
    script = tmp_path / "ddp_train.py"
    out = tmp_path / "run"
    script.write_text(SCRIPT.format(tests=str(TESTS), repo=str(REPO), corpus=str(corpus), out=str(out)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, env=env, timeout=220,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = [json.loads(line) for rank in (0, 1)
            for line in (tmp_path / f"rank{rank}.jsonl").read_text().splitlines()]
    done = [r for r in recs if r["event"] == "done"]
    assert sorted(r["rank"] for r in done) == [0, 1] and all(r["world"] == 2 for r in done)
    assert {r["rank"] for r in recs if r["event"] == "step"} == {0, 1}
    assert all(r["rank"] == 0 for r in recs if r["event"] in ("eval", "early_stop"))
    last_step = {rank: max(r["step"] for r in recs if r["event"] == "step" and r["rank"] == rank) for rank in (0, 1)}
    assert last_step[0] == last_step[1]  # both ranks stopped at the same step
    checkpoint.verify(out / "best")
    checkpoint.verify(out / "last")
    model, cfg, tok, meta = checkpoint.load_model(out / "best")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_max_minutes_counts_this_invocation(monkeypatch):
    """A resumed run gets max_minutes of its own (before, a resumed run with the same config
    stopped after one step); progress.elapsed keeps counting the whole run."""
    from nl2code import train as train_mod
    from nl2code.config import TrainConfig

    clock = [1000.0]
    monkeypatch.setattr(train_mod.time, "monotonic", lambda: clock[0])
    run = train_mod.Run.__new__(train_mod.Run)
    run.cfg, run.started, run.elapsed_before = TrainConfig(max_minutes=2), clock[0], 120.0
    run.progress = train_mod.Progress(elapsed=120.0)
    assert not run.out_of_time()  # 2 minutes were used by the first invocation
    clock[0] += 119
    run.tick()
    assert not run.out_of_time() and run.progress.elapsed == 239.0
    clock[0] += 1
    assert run.out_of_time()
    run.cfg = TrainConfig(max_minutes=0)
    assert not run.out_of_time()  # 0: no limit


def test_progress_round_trips_and_ignores_unknown_keys():
    from nl2code.trainrun import Progress

    p = Progress(step=5, epoch=1, batch=2, best=3.5, bad_evals=1, elapsed=9.0, tokens=100)
    assert Progress.from_dict({**p.as_dict(), "future": 1}) == p
