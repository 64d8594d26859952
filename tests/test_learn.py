"""Learning from accepted answers (issue 20): accepted pairs teach the tiny model an answer
it did not know, and a harmful fine-tune (accepted wrong answers) is rejected because the
dev score drops. Both run the real training loop on the toy corpus (seconds)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from conftest import TOY, write_toy_corpus
from nl2code.cli import app
from nl2code.errors import UsageError
from nl2code.history import History
from nl2code.learn import LearnConfig, accepted_examples, learn
from nl2code.paths import resolve_model, user_models_dir

MIN_INTENT, MIN_CODE = "get the minimum of list `nums`", "min(nums)"


def quick(corpus, base, **kw) -> LearnConfig:
    return LearnConfig(corpus=str(corpus), base=str(base), steps=60, lr=1e-3, warmup_steps=10, batch_tokens=400,
                       history_weight=8, threads=1, **kw)


def top1(model, intent, lang="python"):
    from nl2code.engine import Generator

    return Generator.from_checkpoint(model).generate(intent, lang, n=1)[0].code


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_toy_corpus(tmp_path_factory.mktemp("learn") / "corpus", copies=4)


def test_accepted_pairs_teach_an_answer_the_model_did_not_know(tiny_model, corpus):
    before = top1(tiny_model, MIN_INTENT)
    assert before != MIN_CODE  # the toy corpus only has "maximum": the model says max(nums)
    with History() as h:
        rid = h.record("lsp", MIN_INTENT, "python", [{"code": before}])
        h.accept(rid, code=MIN_CODE)  # the user fixed the completion and kept it
        report = learn(quick(corpus, tiny_model), h.accepted())
    assert report["kept"], report["reason"]
    target = user_models_dir() / "mine"
    assert report["path"] == str(target) and resolve_model("mine") == target
    assert top1("mine", MIN_INTENT) == MIN_CODE  # selectable by name, and it learned the answer
    assert report["accepted_answered_exactly"] == {"before": 0, "after": 1, "of": 1}
    assert report["changed_answers"] == [{"intent": MIN_INTENT, "lang": "python", "accepted": MIN_CODE,
                                          "before": before, "after": MIN_CODE}]
    dev = report["dev"]["toy"]
    assert dev["after"]["bleu"] >= dev["before"]["bleu"] and report["dev_drops"] == {}
    for intent, code, lang in TOY[:6]:  # and it did not forget
        assert top1(target, intent, lang) == code
    meta = json.loads((target / "config.json").read_text())["meta"]
    assert meta["fine_tuned_from"] == str(tiny_model) and meta["history_pairs"] == 1
    assert top1(tiny_model, MIN_INTENT) == before  # the base model is untouched


def test_a_fine_tune_that_hurts_the_dev_set_is_rejected(tiny_model, corpus, tmp_path):
    dev = TOY[:6]  # dev.jsonl of the toy corpus
    with History() as h:
        for k, (intent, code, lang) in enumerate(dev):  # users "accepted" wrong answers for them
            rid = h.record("cli", intent, lang, [{"code": code}])
            h.accept(rid, code=dev[(k + 1) % len(dev)][1])
        report = learn(quick(corpus, tiny_model, name="worse"), h.accepted())
    assert not report["kept"] and report["path"] is None
    assert report["dev"]["toy"]["after"]["bleu"] < report["dev"]["toy"]["before"]["bleu"]
    assert "toy" in report["dev_drops"] and report["reason"].startswith("rejected: dev BLEU dropped on toy")
    assert not (user_models_dir() / "worse").exists()
    saved = json.loads((user_models_dir().parent / "learn" / "last_report.json").read_text())
    assert saved["kept"] is False and saved["dev"] == report["dev"]
    assert list((user_models_dir().parent / "learn").iterdir()) == [user_models_dir().parent / "learn" / "last_report.json"]


def test_accepted_examples_keep_the_latest_and_only_code_that_parses():
    with History() as h:
        a = h.record("lsp", "x one", "python", [{"code": "a = 1"}])
        h.accept(a, 0)
        b = h.record("lsp", "x one", "python", [{"code": "a = 2"}])
        h.accept(b, 0)
        c = h.record("lsp", "x two", "python", [{"code": "def (:"}])
        h.accept(c, 0)
        h.record("lsp", "x three", "python", [{"code": "b = 3"}])  # shown, never accepted
        pairs = accepted_examples(h.accepted())
    assert [(e.intent, e.code, e.source) for e in pairs] == [("x one", "a = 2", "history")]


def test_nothing_accepted_or_bad_options_are_clear_errors(tiny_model, corpus, tmp_path):
    with pytest.raises(UsageError, match="no accepted answers"):
        learn(quick(corpus, tiny_model), [])
    with pytest.raises(UsageError, match="--name"):
        learn(quick(corpus, tiny_model, name="../evil"), [])
    runner = CliRunner()
    r = runner.invoke(app, ["train", "--from-history", "-m", str(tiny_model)])
    assert r.exit_code == 2 and "no history yet" in r.output
    with History() as h:
        h.accept(h.record("lsp", "x one", "python", [{"code": "a = 1"}]), 0)
    from nl2code import checkpoint

    moved = tmp_path / "moved"  # a model whose training corpus is not on this machine
    checkpoint.package(tiny_model, moved, {"train_config": {"corpus": str(tmp_path / "gone")}})
    r = runner.invoke(app, ["train", "--from-history", "-m", str(moved)])
    assert r.exit_code == 2 and "pass --corpus DIR" in r.output
    r = runner.invoke(app, ["train", "--from-history", "--resume"])
    assert r.exit_code == 2 and "--resume" in r.output


def test_cli_train_from_history_reports(tiny_model, corpus):
    with History() as h:
        rid = h.record("lsp", MIN_INTENT, "python", [{"code": "max(nums)"}])
        h.accept(rid, code=MIN_CODE)
    r = CliRunner().invoke(app, ["train", "--from-history", "-m", str(tiny_model), "--corpus", str(corpus),
                                 "--max-steps", "60", "--name", "cli-made"])
    # the CLI's defaults (lr 1e-4) move a model less than quick(): kept or not, it must report
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert r.exit_code == (0 if report["kept"] else 1)
    assert report["accepted_pairs"] == 1 and report["steps"] == 60 and "toy" in report["dev"]
    assert (user_models_dir() / "cli-made").is_dir() == report["kept"]
