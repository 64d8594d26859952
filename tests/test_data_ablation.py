"""benchmarks/data_ablation.py: the rows are cumulative cuts of one corpus, by source tag."""

import json

from benchmarks import data_ablation as abl
from nl2code.data.records import Example

RECIPE = """
name = "t"
[[source]]
name = "conala"
kind = "conala"
path = "c.json"
[[source]]
name = "pydoc"
kind = "pydoc"
path = "docs"
resample = true
[[source]]
name = "mined"
kind = "mine"
roots = ["stdlib"]
miners = ["comment"]
resample = true
[resample]
enabled = false
to = ["conala"]
keep = 0.5
"""


def _corpus(tmp_path):
    rows = []
    for i in range(12):
        rows += [Example(f"sort list `xs{i}` descending", f"sorted(xs{i}, reverse=True)", "python", "conala"),
                 Example(f"sort list xs{i} descending", f"sorted(xs{i}, reverse=True)", "python", "conala-free"),
                 Example(f"Return the absolute value {i}", f"abs(x{i})", "python", "apidocs"),
                 Example(f"list files {i}", f"ls dir{i}", "bash", "nl2bash"),
                 Example(f"Create an archive {i}", f"tar cf a{i}.tar d", "bash", "tldr"),
                 Example(f"Create an archive named {i}", f"tar cf NAME{i} d", "bash", "tldr-named"),
                 Example(f"How to sort {i}", f"sorted(data{i})", "python", "pydoc"),
                 Example(f"read the file {i}", f"open(p{i}).read()", "python", "mined-comment")]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.jsonl").write_text("".join(e.to_json() + "\n" for e in rows))
    (corpus / "dev.jsonl").write_text(Example("dev intent", "x", "python", "conala").to_json() + "\n")
    (corpus / "stats.json").write_text(json.dumps({"weights": {"conala": 6.0, "mined": 0.2}}))
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(RECIPE)
    return corpus, recipe


def _sources(out, row):
    lines = (out / row / "corpus" / "train.jsonl").read_text().splitlines()
    counts = {}
    for line in lines:
        s = json.loads(line)["source"]
        counts[s] = counts.get(s, 0) + 1
    return counts


def test_rows_add_sources_in_order_and_resampling_halves_docs_and_mined(tmp_path):
    corpus, recipe = _corpus(tmp_path)
    out = tmp_path / "abl"
    abl.prepare(corpus, out, recipe)
    assert set(_sources(out, "curated")) == {"conala", "apidocs", "nl2bash"}
    assert set(_sources(out, "tldr")) == {"conala", "apidocs", "nl2bash", "tldr", "tldr-named"}
    assert set(_sources(out, "docs")) == {"conala", "apidocs", "nl2bash", "tldr", "tldr-named", "pydoc",
                                           "mined-comment"}
    assert "conala-free" in _sources(out, "free")
    assert set(_sources(out, "nomined")) == set(_sources(out, "free")) - {"mined-comment"}
    free, res = _sources(out, "free"), _sources(out, "resample")
    assert res["pydoc"] == 6 and res["mined-comment"] == 6  # keep 0.5 of each resampled source
    assert res["conala"] == free["conala"] == 12 and res["tldr"] == free["tldr"]
    for row in abl.ROWS:  # the same dev set and the build's weights in every row
        assert (out / row / "corpus" / "dev.jsonl").read_text() == (corpus / "dev.jsonl").read_text()
        stats = json.loads((out / row / "corpus" / "stats.json").read_text())
        assert stats["weights"] == {"conala": 6.0, "mined": 0.2}
        assert stats["train"] == sum(_sources(out, row).values())


def test_table_reads_the_eval_outputs(tmp_path):
    corpus, recipe = _corpus(tmp_path)
    out = tmp_path / "abl"
    abl.prepare(corpus, out, recipe)
    (out / "curated" / "conala.json").write_text(json.dumps({"bleu": 30.123}))
    (out / "curated" / "nl2bash.json").write_text(json.dumps({"bleu": 40.0}))
    (out / "curated" / "exec.json").write_text(json.dumps(
        {"pass@1": 12.5, "pass@5": 20.0, "by_lang_style": {"python/free": {"pass@1": 5.0}}}))
    text = abl.table(out, None)
    row = [line for line in text.splitlines() if line.startswith("| curated")][0]
    assert "| 30.12 | 40.00 | 12.5 | 20.0 | 5.0 | — |" in row
    # 12 CoNaLa pairs at weight 6 among 12 each of apidocs and nl2bash at weight 1
    assert "| 75.0% / 0.0% |" in row
    assert "tldr" not in text.split("\n", 2)[2]  # rows without results are left out
