"""Training that always ends (issue 16, items 1, 6, 7 and 10): weights and config values
checked up front, an epoch without batches is an error, SIGINT and SIGTERM stop a run at
any point, one run per folder, and the log is never written through a link.

Runs that used to loop forever run in a subprocess with a timeout and a memory cap.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cli, code_env, limit_memory, run_limited, write_toy_corpus
from nl2code import checkpoint
from nl2code.errors import UsageError
from nl2code.train import load_train_config, train

TESTS = Path(__file__).resolve().parent

TINY_TOML = """
[train]
vocab_size = 500
batch_tokens = 400
lr = 0.003
warmup_steps = 20
max_steps = {max_steps}
eval_every = {eval_every}
dev_bleu_examples = 2
threads = 1
log_every = 1
seed = 3
save_every_minutes = 60.0
{extra}
[model]
d_model = 64
n_head = 4
n_enc_layer = 2
n_dec_layer = 2
d_ff = 128
dropout = 0.0
max_len = 128
"""


def tiny_toml(tmp_path: Path, max_steps: int = 4, eval_every: int = 1000, extra: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_TOML.format(max_steps=max_steps, eval_every=eval_every, extra=extra))
    return path


def corpus_with_weights(tmp_path: Path, weights: dict) -> Path:
    corpus = write_toy_corpus(tmp_path / "corpus")
    (corpus / "stats.json").write_text(json.dumps({"weights": weights}))
    return corpus


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    return lines[0]


# -- item 1: weights, empty epochs ----------------------------------------------------------

@pytest.mark.parametrize("weight", [0, "nan", 1e308, "heavy"])
def test_bad_weight_in_stats_json_is_one_error_naming_it(tmp_path, weight):
    """0 or below looped over empty epochs at 100% CPU forever; NaN, 1e308, 1e9 and a
    string ended in ValueError/OverflowError/MemoryError."""
    value = float("nan") if weight == "nan" else weight
    corpus = corpus_with_weights(tmp_path, {"toy": value})
    rc, _, err = run_limited(cli("train", str(tiny_toml(tmp_path)), "--corpus", str(corpus),
                                 "--out", str(tmp_path / "run")), timeout=300, mem_mb=4000)
    assert rc == 2
    line = one_line(err)
    assert "stats.json" in line and "'toy'" in line


@pytest.mark.parametrize("weight", ["0.0", "-2", "1e9", "inf", '"x"'])
def test_bad_source_weight_in_the_training_config(tmp_path, weight):
    toml = tiny_toml(tmp_path, extra=f"source_weights = {{ toy = {weight} }}")
    with pytest.raises(UsageError, match="source_weights"):
        load_train_config(toml)


def test_epoch_without_batches_is_an_error_not_an_endless_loop(tmp_path):
    """A tiny positive weight draws no example at all: that used to loop over empty epochs."""
    corpus = corpus_with_weights(tmp_path, {"toy": 1e-9})
    rc, _, err = run_limited(cli("train", str(tiny_toml(tmp_path)), "--corpus", str(corpus),
                                 "--out", str(tmp_path / "run")), timeout=300, mem_mb=4000)
    assert rc == 2
    assert "has no batches" in one_line(err)


@pytest.mark.parametrize("line,key", [
    ('batch_tokens = "4k"', "batch_tokens"), ("eval_every = 0", "eval_every"), ("warmup_steps = 0", "warmup_steps"),
    ("log_every = 0", "log_every"), ("max_steps = 1.5", "max_steps"), ("threads = -1", "threads"),
    ("lr = nan", "lr"), ("max_tgt_len = 0", "max_tgt_len"), ("patience = true", "patience"),
])
def test_bad_training_config_values_name_the_key(tmp_path, line, key):
    """item 10: floats, strings and zeros where counts belong ended in TypeError or
    ZeroDivisionError deep in training."""
    (tmp_path / "bad.toml").write_text(f"[train]\n{line}\n")
    with pytest.raises(UsageError, match=key):
        load_train_config(tmp_path / "bad.toml")


@pytest.mark.parametrize("text,match", [("train = 3", "must be a table"),
                                        ("[model]\nn_enc_layer = 10000", "n_enc_layer")])
def test_bad_tables(tmp_path, text, match):
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(UsageError, match=match):
        load_train_config(tmp_path / "bad.toml")


def test_bad_values_set_in_code_are_refused_by_train(tmp_path):
    from conftest import tiny_configs

    tcfg, mcfg = tiny_configs(write_toy_corpus(tmp_path / "corpus"), tmp_path / "run", eval_every=0)
    with pytest.raises(UsageError, match="eval_every"):
        train(tcfg, mcfg)


# -- item 1: a signal stops the run at any point ---------------------------------------------

CHILD = """
import json, os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from conftest import tiny_configs
import nl2code.train as T
tcfg, mcfg = tiny_configs(Path({corpus!r}), Path({out!r}), max_steps=10_000, eval_every=10_000,
                          log_every=1, dev_bleu_examples=2, save_every_minutes=60.0)
mode = {mode!r}
real = T.epoch_batches
def batches(data, cfg, weights, epoch, **kw):
    if mode == "between-epochs" and epoch >= 1:  # empty epochs from now on, as a weight of 0 gave
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return []  # the stop flag must be checked before (and between) empty epochs
    return real(data, cfg, weights, epoch, **kw)
T.epoch_batches = batches
def log(rec):
    print(json.dumps(rec), flush=True)
    if mode == "sigint-at-step" and rec.get("step") == 3 and rec["event"] == "step":
        os.kill(os.getpid(), signal.SIGINT)
T.train(tcfg, mcfg, log=log)
"""


def run_child(tmp_path: Path, mode: str) -> tuple[int, list[dict]]:
    corpus = write_toy_corpus(tmp_path / "corpus")
    code = CHILD.format(tests=str(TESTS), corpus=str(corpus), out=str(tmp_path / "run"), mode=mode)
    rc, out, err = run_limited([sys.executable, "-c", code], timeout=300, mem_mb=4000)
    return rc, [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_sigint_saves_and_exits_130(tmp_path):
    """SIGINT used to raise KeyboardInterrupt out of the step: nothing saved."""
    rc, records = run_child(tmp_path, "sigint-at-step")
    assert rc == 128 + signal.SIGINT
    stopped = [r for r in records if r["event"] == "interrupted"]
    assert len(stopped) == 1 and stopped[0]["step"] in (3, 4)
    checkpoint.verify(tmp_path / "run" / "last")
    assert checkpoint.load_config(tmp_path / "run" / "last")[1]["step"] == stopped[0]["step"]


def test_sigterm_between_epochs_stops_the_run(tmp_path):
    """The stop flag was checked only inside the batch loop: a signal that arrived while
    an epoch had no batches was never seen."""
    rc, records = run_child(tmp_path, "between-epochs")
    assert rc == 128 + signal.SIGTERM
    steps = [r["step"] for r in records if r["event"] == "step"]
    stopped = [r for r in records if r["event"] == "interrupted"]
    assert len(stopped) == 1 and stopped[0]["step"] == max(steps)
    checkpoint.verify(tmp_path / "run" / "last")


# -- item 7: one run per folder; item 6: the log is not written through a link -------------

def test_second_run_on_the_same_folder_names_the_holder(tmp_path):
    corpus = write_toy_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    toml = tiny_toml(tmp_path, max_steps=100_000)
    proc = subprocess.Popen(cli("train", str(toml), "--corpus", str(corpus), "--out", str(out)),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=code_env(), preexec_fn=limit_memory(4000))
    try:
        deadline = time.monotonic() + 300
        while not (out / "log.jsonl").exists():  # the first step is logged: it is training
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the first run did not start training"
            time.sleep(0.2)
        from conftest import tiny_configs

        for resume in (False, True):
            tcfg, mcfg = tiny_configs(corpus, out, max_steps=2)
            with pytest.raises(UsageError, match=f"in use by another training run \\(pid {proc.pid} "):
                train(tcfg, mcfg, resume=resume)
        before = (out / "log.jsonl").read_text()
        assert all(json.loads(line)["event"] in ("step", "eval", "checkpoint") for line in before.splitlines())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(300) == 128 + signal.SIGTERM
        assert "interrupted by SIGTERM" in proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert not (out / ".lock").exists()  # released with the run
    tcfg, mcfg = tiny_configs(corpus, out, max_steps=1)  # the folder is free again
    records: list[dict] = []
    train(tcfg, mcfg, resume=True, log=records.append)


def test_log_is_not_written_through_a_link(tmp_path):
    corpus = write_toy_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.symlink(victim, out / "log.jsonl")
    rc, _, err = run_limited(cli("train", str(tiny_toml(tmp_path, max_steps=2)), "--corpus", str(corpus),
                                 "--out", str(out)), timeout=300, mem_mb=4000)
    assert rc == 2 and "symbolic link" in one_line(err)
    assert victim.read_text() == "precious\n"


def test_empty_out_is_refused(tmp_path):
    corpus = write_toy_corpus(tmp_path / "corpus")
    rc, _, err = run_limited(cli("train", str(tiny_toml(tmp_path)), "--corpus", str(corpus), "--out", ""),
                             timeout=180, mem_mb=3000, cwd=tmp_path)
    assert rc == 2 and "--out" in one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus", "tiny.toml"]
