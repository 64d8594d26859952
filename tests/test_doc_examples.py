"""Every example output in the READMEs comes from the bundled model.

A fenced block right after the marker line `<!-- bundled-model-example: ... -->` is run
through the bundled model (nl2code/assets/default) and compared with what it prints:
- a python/bash/sh block: the first line is the intent comment, the rest the top answer;
- a json block: a `--json` record; the model's first len(candidates) candidates must have
  the same code, parses and danger (score and logprob to 3 decimals: int8 kernels may round
  the last digit differently on another CPU).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", ROOT / "lsp" / "README.md", ROOT / "lsp" / "vscode" / "README.md"]
MARKER = "<!-- bundled-model-example:"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def examples() -> list[tuple[str, str, str]]:
    """(where, fence language, block text) of every marked block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(re.escape(MARKER), text):
            block = _BLOCK.match(text, text.index("\n", m.start()) + 1)
            assert block, f"{doc.name}: a marker not followed by a fenced block"
            line = text.count("\n", 0, m.start()) + 1
            found.append((f"{doc.relative_to(ROOT)}:{line}", block.group(1), block.group(2)))
    return found


EXAMPLES = examples()


def test_every_readme_marks_its_examples():
    assert {where.split(":")[0] for where, _, _ in EXAMPLES} == {str(d.relative_to(ROOT)) for d in DOCS}


@pytest.fixture(scope="module")
def bundled():
    from nl2code.engine import Generator

    return Generator.from_checkpoint(None)  # NL2CODE_MODEL unset: the bundled model


@pytest.mark.parametrize("where,fence,block", EXAMPLES, ids=[e[0] for e in EXAMPLES])
def test_documented_output_is_what_the_bundled_model_gives(bundled, where, fence, block, monkeypatch):
    if fence == "json":
        rec = json.loads(block)
        got = bundled.generate(rec["intent"], rec["lang"], n=len(rec["candidates"]))
        assert [c.code for c in got] == [c["code"] for c in rec["candidates"]], where
        for c, doc in zip(got, rec["candidates"]):
            assert c.parses == doc["parses"] and c.danger == doc["danger"], where
            assert abs(c.score - doc["score"]) < 1e-3 and abs(c.logprob - doc["logprob"]) < 1e-3, where
        return
    lang = {"python": "python", "bash": "bash", "sh": "bash"}[fence]
    first, _, answer = block.partition("\n")
    assert first.startswith("# "), f"{where}: the first line must be the intent comment"
    got = bundled.generate(first[2:], lang, n=1)
    assert got[0].code == answer.rstrip("\n"), where
