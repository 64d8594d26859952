"""Resampling mined/doc pairs toward the curated distribution (recipe [resample])."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from nl2code.data.build import build
from nl2code.data.records import Example, Report
from nl2code.data.resample import BigramLM, ResampleConfig, Scorer, resample, resample_config, weighted_sample
from nl2code.errors import DataError

REFERENCE = [Example(f"sort list `{v}` in reverse order", f"{v}.sort(reverse=True)", "python", "conala")
             for v in ("xs", "ys", "names", "items")] + [
    Example(f"get the length of list `{v}`", f"len({v})", "python", "conala") for v in ("xs", "words", "rows")]

LIKE = [Example(f"sort the list {v} in reverse order", f"{v}.sort(reverse=True)", "python", "mined-comment")
        for v in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j")] + [
    Example(f"get the length of the list {v}", f"n = len({v})", "python", "mined-comment")
    for v in ("k", "l", "m", "n", "o", "p", "q", "r", "s", "t")]
UNLIKE = [Example(f"register the metaclass hook number {i} with the interpreter state",
                  f"_hooks.__setitem__(0x{i:x}, lambda *_: {{**globals()}})", "python", "mined-comment")
          for i in range(20)]


def test_bigram_lm_prefers_seen_sequences():
    lm = BigramLM([["a", "b", "c"], ["a", "b", "d"]])
    assert lm.logprob(["a", "b", "c"]) > lm.logprob(["c", "a", "zz"])
    assert lm.logprob(["a", "b"]) < 0


def test_scorer_ranks_like_pairs_above_unlike_pairs():
    scorer = Scorer(REFERENCE)
    assert min(scorer.score(e) for e in LIKE) > max(scorer.score(e) for e in UNLIKE)


def test_weighted_sample_without_replacement_keeps_order():
    items = [Example(str(i), str(i), "python", "x") for i in range(10)]
    picked = weighted_sample(items, [0.0] * 10, 4, 1.0, random.Random(1))
    assert len(picked) == len(set(picked)) == 4
    assert picked == sorted(picked, key=items.index)
    assert weighted_sample(items, [0.0] * 10, 20, 1.0, random.Random(1)) == items


def test_resample_draws_toward_the_reference_and_leaves_others_alone():
    other = [Example("list all files", "ls -la", "bash", "tldr")]
    train = REFERENCE + LIKE + UNLIKE + other
    report = Report()
    out, summary = resample(train, ResampleConfig(True, ("conala",), 0.5, 1.0, 0), {"conala"},
                            {"mined": {"mined-comment"}}, report)
    mined = [e for e in out if e.source == "mined-comment"]
    assert len(mined) == 20 and len(set(mined)) == 20  # half of 40, nothing duplicated
    assert sum(e in LIKE for e in mined) >= 16  # mostly the CoNaLa-like ones
    assert [e for e in out if e.source != "mined-comment"] == REFERENCE + other
    assert report.drops["resample: not drawn"] == 20
    assert summary["mined"]["kept"] == 20 and summary["mined"]["mean_score_kept"] > summary["mined"]["mean_score_before"]
    again, _ = resample(train, ResampleConfig(True, ("conala",), 0.5, 1.0, 0), {"conala"},
                        {"mined": {"mined-comment"}}, Report())
    assert again == out  # seeded: the same corpus every build


def test_high_temperature_is_closer_to_uniform():
    def like_share(temperature: float) -> float:
        shares = []
        for seed in range(5):
            out, _ = resample(REFERENCE + LIKE + UNLIKE, ResampleConfig(True, ("conala",), 0.5, temperature, seed),
                              {"conala"}, {"m": {"mined-comment"}}, Report())
            shares.append(sum(e in LIKE for e in out if e.source == "mined-comment") / 20)
        return sum(shares) / len(shares)

    assert like_share(0.2) > like_share(100.0)


@pytest.mark.parametrize("raw, match", [
    ("nope", "must be a table"),
    ({"keep": 0}, "keep"),
    ({"keep": 1.5}, "keep"),
    ({"temperature": -1}, "temperature"),
    ({"to": []}, "to must be"),
    ({"enabled": "yes"}, "enabled"),
    ({"seed": 1.5}, "seed"),
    ({"ratio": 0.5}, "unknown key"),
])
def test_resample_config_errors(raw, match):
    with pytest.raises(DataError, match=match):
        resample_config(raw, "r.toml")


def _recipe(tmp_path: Path, resample_table: str, flag: str = "resample = true") -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    (data / "c.json").write_text(json.dumps([{"intent": e.intent, "rewritten_intent": e.intent, "snippet": e.code}
                                             for e in REFERENCE]))
    (data / "m.jsonl").write_text("".join(json.dumps({"intent": e.intent, "code": e.code}) + "\n"
                                          for e in LIKE + UNLIKE))
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "t"
data_root = "{data}"
[[source]]
name = "conala"
kind = "conala"
path = "c.json"
[[source]]
name = "docs"
kind = "jsonl"
path = "m.jsonl"
{flag}
{resample_table}
""")
    return recipe


def test_build_resample_switch(tmp_path: Path):
    off = build(_recipe(tmp_path, "[resample]\nenabled = false\n"), tmp_path / "off")
    assert off["sources"]["docs"]["train"] == 40 and "resample" not in off
    on = build(_recipe(tmp_path, "[resample]\nenabled = true\nto = [\"conala\"]\nkeep = 0.25\n"), tmp_path / "on")
    assert on["sources"]["docs"]["train"] == 10
    assert on["sources"]["conala"]["train"] == len(REFERENCE)
    assert on["resample"]["sources"]["docs"] == {**on["resample"]["sources"]["docs"], "before": 40, "kept": 10}
    assert on["drops"]["resample: not drawn"] == 30
    kept = [json.loads(x) for x in (tmp_path / "on" / "train.jsonl").read_text().splitlines()]
    assert sum(1 for r in kept if r["source"] == "docs" and "metaclass" not in r["intent"]) >= 8


def test_build_resample_needs_marked_sources_and_known_reference(tmp_path: Path):
    with pytest.raises(DataError, match="no \\[\\[source\\]\\] has resample = true"):
        build(_recipe(tmp_path, "[resample]\nenabled = true\n", flag=""), tmp_path / "o1")
    with pytest.raises(DataError, match="unknown source"):
        build(_recipe(tmp_path, "[resample]\nenabled = true\nto = [\"curated\"]\n"), tmp_path / "o2")
    with pytest.raises(DataError, match="resample = 'yes'"):
        build(_recipe(tmp_path, "", flag='resample = "yes"'), tmp_path / "o3")
