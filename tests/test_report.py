"""HTML reports: eval (BLEU and execution suites), training, and two evals compared.

Reports are built from small fixtures and read back with an HTML parser: every figure is
an embedded PNG, the numbers on the page are the numbers in the JSON. One test renders
each page in headless Chromium and keeps the screenshots (NL2CODE_SCREENSHOTS=DIR keeps
them after the run).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import write_toy_corpus
from nl2code import evaluate, metrics
from nl2code.cli import app

pytest.importorskip("matplotlib", reason="reports need the nl2code[report] extra (matplotlib)")

from nl2code import report as rp  # noqa: E402
from nl2code.report import evalrep, trainrep  # noqa: E402


class Page(HTMLParser):
    """What a report shows: figures, cards, tables (as cell text), sections, external refs."""

    def __init__(self, text: str):
        super().__init__()
        self.figures: dict[str, str] = {}
        self.cards: dict[str, str] = {}
        self.tables: list[list[list[str]]] = []
        self.sections: list[str] = []
        self.external: list[str] = []
        self.scripts = 0
        self._fig = None
        self._card = None
        self._cell = None
        self._in_v = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and not (a[key].startswith("data:") or a[key].startswith("#")):
                self.external.append(a[key])
        if tag == "script":
            self.scripts += 1
        elif tag == "section":
            self.sections.append(a["id"])
        elif tag == "figure":
            self._fig = a["data-plot"]
        elif tag == "img" and self._fig:
            self.figures[self._fig] = a["src"]
        elif tag == "div" and a.get("class") == "card":
            self._card = a["data-key"]
        elif tag == "div" and a.get("class") == "v":
            self._in_v = True
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "figure":
            self._fig = None
        elif tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "div" and self._in_v:
            self._in_v = False

    def handle_data(self, data):
        if self._in_v and self._card:
            self.cards[self._card] = data
        if self._cell is not None:
            self._cell.append(data)

    def table_with(self, header: str) -> list[list[str]]:
        return next(t for t in self.tables if t and header in t[0])


def png_size(uri: str) -> tuple[int, int]:
    assert uri.startswith("data:image/png;base64,")
    data = base64.b64decode(uri.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def check_self_contained(page: Page) -> None:
    assert page.external == [] and page.scripts == 0
    for name, uri in page.figures.items():
        w, h = png_size(uri)
        assert w > 200 and h > 150, name


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture
def eval_files(tmp_path):
    """A JSONL eval set from two sources, with intents of several lengths."""
    recs = [
        {"intent": "sort list `xs` in descending order", "code": "xs.sort(reverse=True)", "source": "so"},
        {"intent": "reverse list `xs`", "code": "xs[::-1]", "source": "so"},
        {"intent": "get the length of list `xs`", "code": "len(xs)", "source": "docs"},
        {"intent": "convert string `s` to lowercase and then strip the spaces from both of its ends",
         "code": "s.lower().strip()", "source": "docs"},
        {"intent": "print </td><script>alert(1)</script> to the screen", "code": "print('<b>')", "source": "so"},
    ]
    test = tmp_path / "eval.jsonl"
    test.write_text("\n".join(json.dumps({**r, "lang": "python"}) for r in recs) + "\n")
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps({"intent": i, "code": c, "lang": "python"}) for i, c in [
        ("sort list `ys` in descending order", "ys.sort(reverse=True)"),
        ("get the length of list `ys`", "len(ys)"),
        ("print hello", "print('hello')")]) + "\n")
    return test, train


def run_eval(*args) -> dict:
    result = CliRunner().invoke(app, ["eval", *map(str, args), "--json"])
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


EXEC = {
    "kind": "exec", "system": "toy model", "suite": "suite.toml",
    "overall": {"pass@1": 0.5, "pass@5": 0.75, "n": 4},
    "by_lang": {"python": {"pass@1": 0.5, "pass@5": 0.75, "n": 4}},
    "by_tag": {"strings": {"pass@1": 1.0, "pass@5": 1.0, "n": 1}, "files": {"pass@1": 0.25, "pass@5": 0.5, "n": 2},
               "lists": {"pass@1": 0.5, "pass@5": 1.0, "n": 1}},
    "by_style": {"terse": {"pass@1": 0.4, "pass@5": 0.6, "n": 2}, "chatty": {"pass@1": 0.6, "pass@5": 0.9, "n": 2}},
    "cases": [
        {"id": "upper", "intent": "uppercase `s`", "lang": "python", "tags": ["strings"], "style": "terse",
         "candidates": ["s.upper()", "s.lower()"], "passed": [True, False], "error": None, "ms": 12.0},
        {"id": "read", "intent": "read file 'a.txt'", "lang": "python", "tags": ["files"], "style": "chatty",
         "candidates": [{"code": "open('a.txt')"}, {"code": "open('a.txt').read()"}], "passed": [False, True],
         "error": None, "ms": 30.0},
        {"id": "count", "intent": "count lines of 'a.txt'", "lang": "python", "tags": ["files"], "style": "terse",
         "candidates": ["len('a.txt')", "wc"], "passed": [False, False], "error": "AssertionError: expected 3, got 5",
         "ms": 20.0},
        {"id": "rev", "intent": "reverse `xs`", "lang": "python", "tags": ["lists"], "style": "chatty",
         "candidates": ["xs[::-1]"], "passed": [True], "error": None, "ms": 9.0},
    ],
}


# --- metrics and per-example records -------------------------------------------------------------

def test_sentence_bleu_ranks_near_misses_above_nonsense():
    assert metrics.sentence_bleu("xs.sort(reverse=True)", "xs.sort(reverse=True)") == pytest.approx(100.0)
    near = metrics.sentence_bleu("xs.sort(reverse=True)", "xs.sort(reverse=False)")
    far = metrics.sentence_bleu("xs.sort(reverse=True)", "print(1)")
    assert metrics.corpus_bleu([["a", "b", "c"]], [["a", "b", "d"]]) == 0.0  # why smoothing is needed
    assert 50 < near < 100 and 0 <= far < near
    assert metrics.sentence_bleu("x", "") == 0.0 and metrics.sentence_bleu("", "") == 100.0


def test_details_groups_match_corpus_bleu_on_subsets():
    rows = [evaluate.Row("a b", "len(xs)", "len(xs)", "len(xs)", True, 5.0, "so", "python", [{"code": "len(xs)", "parses": True}]),
            evaluate.Row("one two three four five six", "xs[::-1]", None, "xs[::", False, 7.0, "so", "python", []),
            evaluate.Row("c", "s.lower()", "s.upper()", "s.upper()", True, 9.0, "docs", "python",
                         [{"code": "s.upper()", "parses": True}, {"code": "s.lower()", "parses": True}])]
    d = evaluate.details(rows)
    assert d["by_source"]["so"] == {"examples": 2, "bleu": round(metrics.conala_bleu(["len(xs)", "xs[::-1]"], ["len(xs)", ""]), 2),
                                    "exact_match": 50.0, "answered_rate": 50.0}
    assert d["by_source"]["docs"]["exact_match"] == 0.0
    assert {k: v["examples"] for k, v in d["by_intent_length"].items()} == {"1-5": 2, "6-10": 1}
    c = d["cases"]
    assert [x["exact"] for x in c] == [True, False, False] and [x["answered"] for x in c] == [True, False, True]
    assert c[2]["candidates"][1]["bleu"] == pytest.approx(100.0) and c[2]["bleu"] < 100
    assert c[1]["ms"] == 7.0 and c[1]["answer"] is None


def test_why_lost_names_the_reason():
    base = {"intent": "lowercase string `s`", "reference": "s.lower()", "exact": False, "answered": True}
    assert evalrep.why_lost({**base, "exact": True}) == ["exact match"]
    unanswered = evalrep.why_lost({**base, "answer": None, "answered": False, "bleu": 0.0,
                                   "candidates": [{"code": "s.lower(", "parses": False, "bleu": 40.0}]})
    assert unanswered[0].startswith("unanswered") and any("#1 was closer" in r and "did not parse" in r for r in unanswered)
    missed = evalrep.why_lost({**base, "answer": "x.lower()", "bleu": 30.0, "candidates": [{"code": "x.lower()", "bleu": 30.0}]})
    assert "left out 's' from the intent" in missed
    rerank = evalrep.why_lost({**base, "answer": "s.upper()", "bleu": 20.0, "plain": "s.lower()", "plain_bleu": 100.0,
                               "candidates": [{"code": "s.upper()", "bleu": 20.0}]})
    assert any("reranker overrode" in r for r in rerank)


def test_worst_case_shows_the_closest_candidate_even_when_ranked_low():
    case = {"id": 0, "intent": "i", "reference": "len(xs)", "answer": "a", "answered": True, "bleu": 0.0,
            "candidates": [{"code": c, "bleu": b, "parses": True} for c, b in
                           [("a", 0.0), ("b", 1.0), ("c", 2.0), ("d", 3.0), ("len(xs)", 100.0)]]}
    cell = evalrep._candidates_cell(case)
    assert "#5 · BLEU 100" in cell and "#3 · BLEU 2" in cell and "#4" not in cell
    assert "candidate #5 was closer (BLEU 100 vs 0)" in evalrep.why_lost(case)


# --- eval report ---------------------------------------------------------------------------------

def test_eval_report_numbers_match_the_json(eval_files, tmp_path):
    test, train = eval_files
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["eval", str(test), "--baseline", "nearest", "--train", str(train),
                                      "--json", "--report", str(out)])
    assert result.exit_code == 0, result.stderr
    rep = json.loads(result.stdout)
    assert set(rep["by_source"]) == {"so", "docs"} and len(rep["cases"]) == 5
    page = Page(out.read_text())
    check_self_contained(page)
    assert set(page.figures) == {"by-source", "by-length", "latency"}
    assert page.sections == ["overview", "by-source", "by-length", "latency", "worst"]
    assert page.cards["BLEU"] == f"{rep['bleu']:.2f}" and page.cards["examples"] == "5"
    assert page.cards["exact match"] == f"{rep['exact_match']:.2f}%"
    rows = page.table_with("source")
    assert {r[0]: [float(x) for x in r[1:]] for r in rows[1:]} == {
        k: [v["examples"], v["bleu"], v["exact_match"], v["answered_rate"]] for k, v in rep["by_source"].items()}
    lengths = page.table_with("intent length")
    assert [r[0] for r in lengths[1:]] == list(rep["by_intent_length"])
    worst = page.table_with("why it lost")
    expected = evalrep.worst_cases(rep["cases"])
    assert [r[1] for r in worst[1:]] == [c["intent"] for c in expected]
    assert "</td><script>" in "".join(r[1] for r in worst[1:])  # shown as text, not markup
    assert all(r[5] for r in worst[1:])


def test_eval_report_of_a_model_shows_its_candidates(tiny_model, eval_files, tmp_path):
    test, _ = eval_files
    rep = run_eval(test, "-m", tiny_model, "--report", tmp_path / "m.html")
    case = rep["cases"][0]
    assert case["answer"] == case["candidates"][0]["code"] and case["ms"] > 0
    assert all({"code", "parses", "score", "bleu"} <= set(c) for c in case["candidates"])
    page = Page((tmp_path / "m.html").read_text())
    assert page.cards["plain beam top-1 BLEU"] == f"{rep['plain_beam_top1_bleu']:.2f}"
    assert page.cards["latency p50"] == f"{rep['latency_ms_p50']:.1f} ms"


def test_text_output_is_unchanged_by_the_records(eval_files):
    test, _ = eval_files
    result = CliRunner().invoke(app, ["eval", str(test), "--baseline", "copy"])
    assert result.exit_code == 0 and "cases" not in result.stdout and "by_source" not in result.stdout


def test_exec_report_shows_pass_at_k_by_tag_and_style(tmp_path):
    page = Page(rp.eval_html(EXEC))
    check_self_contained(page)
    assert {"by_tag", "by_style", "by_lang", "latency"} <= set(page.figures)
    assert page.cards["pass@1"] == "50.0%" and page.cards["pass@5"] == "75.0%" and page.cards["cases"] == "4"
    tags = page.table_with("tag")
    assert {r[0]: r[1:] for r in tags[1:]} == {"strings": ["1", "100.0", "100.0"], "files": ["2", "25.0", "50.0"],
                                               "lists": ["1", "50.0", "100.0"]}
    style = page.table_with("phrasing style")
    assert [r[0] for r in style[1:]] == ["terse", "chatty"]
    worst = page.table_with("why it lost")
    assert [r[0] for r in worst[1:]] == ["count", "upper", "read"]  # never-passed first; "rev" passed
    assert "AssertionError: expected 3, got 5" in worst[1][4] and "0 of 2 candidates passed" in worst[1][4]


@pytest.mark.parametrize("bad, match", [
    ({"hello": 1}, "not an nl2code eval report"), ([1, 2], "not an nl2code eval report"),
    ({"bleu": "high"}, "not an nl2code eval report"), ({"bleu": 3.0, "cases": [1]}, "'cases' must be"),
    ({"kind": "exec", "overall": {"pass@1": "half"}}, "malformed execution-suite"),
    ({**EXEC, "by_tag": [1]}, "malformed execution-suite"),
    ({**EXEC, "by_style": {"terse": {"pass@1": None}}}, "malformed execution-suite"),
])
def test_not_a_report_is_a_usage_error(bad, match):
    from nl2code.errors import UsageError

    with pytest.raises(UsageError, match=match):
        rp.eval_html(bad)


def test_missing_matplotlib_is_one_line(eval_files, monkeypatch):
    test, _ = eval_files
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    result = CliRunner().invoke(app, ["eval", str(test), "--baseline", "copy", "--report", "r.html"])
    assert result.exit_code == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("nl2code: error: reports need matplotlib") and "nl2code[report]" in lines[0]


# --- compare -----------------------------------------------------------------------------------

def test_compare_lists_better_and_worse_cases(eval_files, tmp_path):
    test, train = eval_files
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(run_eval(test, "--baseline", "copy")))
    b.write_text(json.dumps(run_eval(test, "--baseline", "nearest", "--train", train)))
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--compare", str(a), str(b), "--json", "--report", str(tmp_path / "c.html")])
    assert res.exit_code == 0, res.stderr
    cmp = json.loads(res.stdout)
    delta = {c["intent"]: cb["bleu"] - c["bleu"] for c, cb in zip(ra["cases"], rb["cases"])}
    assert {r["intent"] for r in cmp["cases"]["better_cases"]} == {i for i, d in delta.items() if d > 0.01}
    assert {r["intent"] for r in cmp["cases"]["worse_cases"]} == {i for i, d in delta.items() if d < -0.01}
    assert cmp["cases"]["matched"] == 5 and cmp["headline"]["bleu"] == {
        "a": ra["bleu"], "b": rb["bleu"], "delta": round(rb["bleu"] - ra["bleu"], 2)}
    page = Page((tmp_path / "c.html").read_text())
    check_self_contained(page)
    assert {"headline", "cases"} <= set(page.figures)
    assert page.cards["BLEU"] == f"{ra['bleu']:.2f} → {rb['bleu']:.2f}"
    assert page.cards["better in B"] == str(cmp["cases"]["better"])
    text = runner.invoke(app, ["eval", "--compare", str(a), str(b)])
    assert text.exit_code == 0 and f"better {cmp['cases']['better']}" in text.stdout


def test_compare_bad_input_is_one_line(eval_files, tmp_path):
    from test_cli import one_line_error

    test, _ = eval_files
    good = tmp_path / "good.json"
    good.write_text(json.dumps(run_eval(test, "--baseline", "copy")))
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(good.read_text()), "cases": [{"id": 0, "intent": "x", "reference": "y"}]}))
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "exec.json").write_text(json.dumps(EXEC))
    runner = CliRunner()
    for args, match in [([good, tmp_path / "missing.json"], "not found"), ([good, tmp_path / "bad.json"], "not JSON"),
                        ([good, tmp_path / "exec.json"], "cannot compare"), ([good, other], "share no cases")]:
        one_line_error(runner.invoke(app, ["eval", "--compare", *map(str, args)]), match=match)
    one_line_error(runner.invoke(app, ["eval", str(test), "--compare", str(good), str(good)]), match="no dataset")
    one_line_error(runner.invoke(app, ["eval"]), match="no dataset")
    one_line_error(runner.invoke(app, ["eval", "--compare", str(good), str(good), "--first", "3"]), match="--first would do nothing")


def test_compare_exec_reports():
    better = json.loads(json.dumps(EXEC))
    better["cases"][2]["passed"] = [True, False]
    cmp = rp.compare(EXEC, better)
    assert [r["id"] for r in cmp["cases"]["better_cases"]] == ["count"] and cmp["cases"]["worse"] == 0
    assert cmp["headline"]["pass@1 %"] == {"a": 50.0, "b": 50.0, "delta": 0.0}


# --- training report -----------------------------------------------------------------------------

def write_log(run: Path, records: list) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    (run / "log.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return run


def steps(a, b, loss0=5.0):
    return [{"event": "step", "step": s, "epoch": 0, "loss": loss0 / s ** 0.3, "lr": 1e-3 * min(s / 20, 1),
             "tok_per_s": 1000.0 + s, "elapsed": s * 0.5} for s in range(a, b + 1, 10)]


def test_train_report_marks_resumptions(tmp_path):
    log = (steps(10, 40) + [{"event": "eval", "step": 20, "dev_loss": 3.0, "dev_bleu": 10.5, "best": 10.5},
                            {"event": "eval", "step": 40, "dev_loss": 2.5, "dev_bleu": 12.25, "best": 12.25},
                            {"event": "interrupted", "step": 40}, "{\"event\": \"step\", \"st",
                            {"event": "resumed", "step": 40}] + steps(50, 60)
           + steps(30, 80) + [{"event": "eval", "step": 80, "dev_loss": 2.0, "dev_bleu": 11.0, "best": 12.25},
                               {"event": "early_stop", "step": 80}])
    run = write_log(tmp_path / "run", log)
    parsed = trainrep.read_log(run)
    assert [(r["step"], r["how"].split()[0]) for r in parsed.resumptions] == [(40, "resumed"), (30, "step")]
    assert parsed.skipped_lines == 1
    s = trainrep.summary(parsed)
    assert s["best_dev_bleu"] == 12.25 and s["best_step"] == 40 and s["last_step"] == 80 and s["ended"] == "early_stop"
    result = CliRunner().invoke(app, ["train", "report", str(run)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(run / "report.html")
    page = Page((run / "report.html").read_text())
    check_self_contained(page)
    assert set(page.figures) == {"loss", "dev-bleu", "throughput", "lr"}
    assert page.cards["best dev BLEU"] == "12.25" and page.cards["resumptions"] == "2" and page.cards["steps"] == "80"
    evals = page.table_with("dev BLEU")
    assert [r[2] for r in evals[1:]] == ["10.50", "12.25", "11.00"]
    events = page.table_with("event")
    assert [r[0] for r in events[1:]] == ["30", "40", "40", "80"]
    assert "resumed (--resume)" in [r[1] for r in events[1:]]


@pytest.mark.parametrize("content, match", [(None, "not found"), ("", "no training steps"),
                                            ("garbage\n", "no training steps")])
def test_train_report_bad_run_folder(tmp_path, content, match):
    from test_cli import one_line_error

    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / "log.jsonl").write_text(content)
    one_line_error(CliRunner().invoke(app, ["train", "report", str(run)]), match=match)


def test_cli_resume_logs_a_resumed_event(tmp_path):
    corpus = write_toy_corpus(tmp_path / "corpus", copies=4)
    cfg = tmp_path / "t.toml"
    cfg.write_text("[train]\nvocab_size = 500\nbatch_tokens = 300\nwarmup_steps = 5\neval_every = 6\n"
                   "dev_bleu_examples = 2\nthreads = 1\nlog_every = 2\n"
                   "[model]\nd_model = 32\nn_head = 2\nn_enc_layer = 1\nn_dec_layer = 1\nd_ff = 64\nmax_len = 64\n")
    out = tmp_path / "run"
    runner = CliRunner()
    for extra in ([], ["--resume"]):
        steps_ = "6" if not extra else "12"
        r = runner.invoke(app, ["train", str(cfg), "--corpus", str(corpus), "--out", str(out), "--max-steps", steps_, *extra])
        assert r.exit_code == 0, r.stderr
        assert ("resumed from step 6" in r.stderr) == bool(extra), r.stderr
    events = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert {"event": "resumed", "step": 6} in events
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 4, 6, 8, 10, 12]
    assert [r["step"] for r in trainrep.read_log(out).resumptions] == [6]


# --- headless Chromium -----------------------------------------------------------------------------

def test_reports_render_in_headless_chromium(eval_files, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); .ci/run installs it")
    from PIL import Image  # a matplotlib dependency

    test, train = eval_files
    run_eval(test, "--baseline", "nearest", "--train", train, "--report", tmp_path / "eval.html")
    (tmp_path / "exec.html").write_text(rp.eval_html(EXEC))
    run = write_log(tmp_path / "run", steps(10, 60) + [{"event": "eval", "step": 30, "dev_loss": 2.0, "dev_bleu": 9.0,
                                                          "best": 9.0}, {"event": "resumed", "step": 30}] + steps(40, 90))
    (tmp_path / "train.html").write_text(rp.train_html(run))
    keep = os.environ.get("NL2CODE_SCREENSHOTS")
    for name in ("eval", "exec", "train"):
        shot = tmp_path / f"{name}.png"
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
                        (tmp_path / f"{name}.html").as_uri()], capture_output=True, timeout=120, check=True)
        with Image.open(shot) as img:
            assert img.size == (1200, 2000)
            colors = img.convert("RGB").getcolors(maxcolors=1 << 20) or []
        assert len(colors) > 50, f"{name}: the screenshot is (nearly) blank"
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / shot.name)
