"""Shared fixtures: a toy corpus and a tiny model trained on it in seconds.

The toy corpus is written here (never copied from the real corpora). The tiny model is
trained once per test session and reused read-only by every test that needs a model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

TOY = [
    ("read csv file 'data.csv' into a dataframe", "df = pd.read_csv('data.csv')", "python"),
    ("sort list `xs` in descending order", "xs.sort(reverse=True)", "python"),
    ("reverse list `xs`", "xs[::-1]", "python"),
    ("get the length of list `xs`", "len(xs)", "python"),
    ("convert string `s` to lowercase", "s.lower()", "python"),
    ("convert string `s` to uppercase", "s.upper()", "python"),
    ("split string `s` on commas", "s.split(',')", "python"),
    ("join list `words` with spaces", "' '.join(words)", "python"),
    ("print hello world", "print('hello world')", "python"),
    ("sum the numbers in list `nums`", "sum(nums)", "python"),
    ("get the maximum of list `nums`", "max(nums)", "python"),
    ("open file 'out.txt' for writing", "f = open('out.txt', 'w')", "python"),
    ("define a function that returns the square of x", "def square(x):\n    return x * x", "python"),
    ("loop over items of dict `d`", "for k, v in d.items():\n    print(k, v)", "python"),
    ("list all files in the current directory", "ls -la", "bash"),
    ("count lines in file 'log.txt'", "wc -l log.txt", "bash"),
    ("find all python files under the current directory", "find . -name '*.py'", "bash"),
    ("show disk usage of the home directory", "du -sh ~", "bash"),
    ("print the current working directory", "pwd", "bash"),
    ("search for 'error' in file 'app.log'", "grep 'error' app.log", "bash"),
]


def write_toy_corpus(folder: Path, copies: int = 1) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"intent": i, "code": c, "lang": l, "source": "toy"}) for i, c, l in TOY]
    (folder / "train.jsonl").write_text("\n".join(lines * copies) + "\n")
    (folder / "dev.jsonl").write_text("\n".join(lines[:6]) + "\n")
    (folder / "stats.json").write_text(json.dumps({"weights": {"toy": 1.0}}))
    return folder


def tiny_configs(corpus: Path, out: Path, **train_overrides):
    from nl2code.config import ModelConfig, TrainConfig

    tcfg = TrainConfig(corpus=str(corpus), out=str(out), vocab_size=500, batch_tokens=400,
                       lr=3e-3, warmup_steps=20, max_steps=300, eval_every=100,
                       dev_bleu_examples=6, threads=1, log_every=10, seed=3)
    for k, v in train_overrides.items():
        setattr(tcfg, k, v)
    mcfg = ModelConfig(d_model=64, n_head=4, n_enc_layer=2, n_dec_layer=2, d_ff=128, dropout=0.0, max_len=128)
    return tcfg, mcfg


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("NL2CODE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NL2CODE_MODEL", raising=False)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder trained on the toy corpus (memorises it). Read-only for tests."""
    from nl2code.train import train

    base = tmp_path_factory.mktemp("tiny")
    corpus = write_toy_corpus(base / "corpus", copies=4)
    tcfg, mcfg = tiny_configs(corpus, base / "run")
    best = train(tcfg, mcfg)
    return best


# -- hostile-input runs: a subprocess with a wall-clock and a memory limit ------------------

def code_env(**extra) -> dict:
    """The environment for a child that imports the same nl2code (and nl2code_lsp) as we do."""
    import nl2code

    root = Path(nl2code.__file__).resolve().parents[1]
    path = [str(root), str(root / "lsp")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "OMP_NUM_THREADS": "1", **extra}
    env.pop("NL2CODE_MODEL", None)
    env.pop("NL2CODE_DEBUG", None)
    return env


def limit_memory(mb: int):
    """A preexec_fn: the child's address space is capped at mb megabytes (RLIMIT_AS)."""
    def apply() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (mb << 20, mb << 20))
    return apply


def run_limited(args: list[str], *, timeout: float = 120, mem_mb: int = 6000, stdin=None, env=None, cwd=None):
    """Run a command with a timeout and a memory cap; a hang fails the test (and the child is
    killed). stdin defaults to a pipe held open and never written (a child that reads its
    stdin waits, as it would under an editor). -> (returncode, stdout, stderr)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE if stdin is None else stdin, stdout=out, stderr=err,
                                env=env or code_env(), cwd=cwd, preexec_fn=limit_memory(mem_mb))
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"{args[2:]} did not finish within {timeout}s (hung)")
        finally:
            if proc.stdin:
                proc.stdin.close()
        out.seek(0)
        err.seek(0)
        return rc, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace")


def cli(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "nl2code", *args]
