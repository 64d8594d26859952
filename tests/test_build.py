"""build(): recipe -> train.jsonl / dev.jsonl / stats.json with dedup and the leak guard."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nl2code.data.build import build, load_recipe
from nl2code.data.records import read_jsonl
from nl2code.errors import DataError

CONALA = [
    # the first two are dev (dev_first = 2)
    {"intent": "q", "rewritten_intent": "sort list `xs` in descending order", "snippet": "xs.sort(reverse=True)"},
    {"intent": "q", "rewritten_intent": "get the length of list `xs`", "snippet": "len(xs)"},
    {"intent": "convert string `s` to lowercase", "rewritten_intent": None, "snippet": "s.lower()"},
    {"intent": "q", "rewritten_intent": "convert string `s` to uppercase", "snippet": "s.upper()"},
    # exact duplicate of the record above
    {"intent": "q", "rewritten_intent": "convert string `s` to uppercase", "snippet": "s.upper()"},
    # near duplicate: case, punctuation and code spacing differ
    {"intent": "q", "rewritten_intent": "Convert string `s` to UPPERCASE!", "snippet": "s.upper( )"},
    # leak: same intent as a dev record, case/punctuation folded
    {"intent": "q", "rewritten_intent": "Sort list `xs` in descending order.", "snippet": "sorted(xs)[::-1]"},
    # leak: same code as a dev record (whitespace folded), different intent
    {"intent": "q", "rewritten_intent": "order `xs` from large to small", "snippet": "xs.sort( reverse=True )"},
    # leak: intent appears in the leak_guard (evaluation) file
    {"intent": "q", "rewritten_intent": "print hello world", "snippet": "print('hello world')"},
    "not a record",
]

GUARD = [{"intent": "Print hello, world", "rewritten_intent": None, "snippet": "print('hi there')"}]


def write_fixture(tmp_path: Path, extra_recipe: str = "") -> Path:
    root = tmp_path / "mydata"
    (root / "conala").mkdir(parents=True)
    (root / "conala" / "train.json").write_text(json.dumps(CONALA))
    (root / "conala" / "test.json").write_text(json.dumps(GUARD))
    (root / "api.jsonl").write_text("\n".join([
        json.dumps({"intent": "join list `words` with spaces", "code": "' '.join(words)"}),
        "{broken json",
        json.dumps({"intent": "list all files", "code": "ls -la", "lang": "bash"}),
        "",
    ]))
    (root / "bash").mkdir()
    (root / "bash" / "train.nl").write_text("count lines in file log.txt\nshow disk usage\nlist all files\n")
    (root / "bash" / "train.cm").write_text("wc -l log.txt\ndu -sh ~\nls -la\n")
    (root / "bash" / "dev.nl").write_text("print the working directory\n")
    (root / "bash" / "dev.cm").write_text("pwd\n")
    (root / "django").mkdir()
    (root / "django" / "all.anno").write_text("import os.\ncall f.\nbroken.\nreturn x.\n")
    (root / "django" / "all.code").write_text("import os\nf ( )\nx = = 1\nreturn x\n")
    recipe = tmp_path / "recipes" / "tiny.toml"
    recipe.parent.mkdir()
    recipe.write_text(f"""
name = "tiny"
data_root = "../mydata"
dedup_near = true

[[source]]
name = "conala"
kind = "conala"
path = "conala/train.json"
dev_first = 2
weight = 3.0

[[source]]
name = "api"
kind = "jsonl"
path = "api.jsonl"

[[source]]
name = "nl2bash"
kind = "nl2bash"
path = "bash/train"
dev_path = "bash/dev"
weight = 1.5

[[source]]
name = "django"
kind = "django"
path = "django/all"
range = [0, 3]
dev_range = [3, 4]
weight = 0.5

[[leak_guard]]
kind = "conala"
path = "conala/test.json"
{extra_recipe}
""")
    return recipe


def test_build_end_to_end(tmp_path):
    recipe = write_fixture(tmp_path)
    out = tmp_path / "corpus"
    stats = build(recipe, out)
    train = read_jsonl(out / "train.jsonl")
    dev = read_jsonl(out / "dev.jsonl")

    # dev_first: the first two CoNaLa records are dev, plus the nl2bash dev file and django dev_range
    assert [(e.intent, e.source) for e in dev] == [
        ("sort list `xs` in descending order", "conala"),
        ("get the length of list `xs`", "conala"),
        ("print the working directory", "nl2bash"),
        ("return x.", "django"),
    ]
    pairs = [(e.intent, e.code, e.lang, e.source) for e in train]
    assert pairs == [
        ("convert string `s` to lowercase", "s.lower()", "python", "conala"),
        ("convert string `s` to uppercase", "s.upper()", "python", "conala"),
        ("join list `words` with spaces", "' '.join(words)", "python", "api"),
        ("list all files", "ls -la", "bash", "api"),
        ("count lines in file log.txt", "wc -l log.txt", "bash", "nl2bash"),
        ("show disk usage", "du -sh ~", "bash", "nl2bash"),
        ("import os.", "import os", "python", "django"),
        ("call f.", "f()", "python", "django"),
    ]
    dev_intents = {e.intent for e in dev}
    assert not dev_intents & {e.intent for e in train}

    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk == json.loads(json.dumps(stats))
    assert stats["train"] == 8 and stats["dev"] == 4
    assert stats["read"] == 7 + 2 + 3 + 2
    # exact dup (uppercase) + near dup (uppercase) + nl2bash "list all files" exact dup of api's
    assert stats["duplicates_removed"] == 3
    assert stats["leak_guard_removed"] == 3
    assert stats["sources"] == {
        "conala": {"read_train": 7, "dev": 2, "train": 2},
        "api": {"read_train": 2, "dev": 0, "train": 2},
        "nl2bash": {"read_train": 3, "dev": 1, "train": 2},
        "django": {"read_train": 2, "dev": 1, "train": 2},
    }
    assert stats["weights"] == {"conala": 3.0, "api": 1.0, "nl2bash": 1.5, "django": 0.5}
    assert stats["by_lang"] == {"python": 5, "bash": 3}
    drops = stats["drops"]
    assert drops["exact duplicate"] == 2
    assert drops["near duplicate"] == 1
    assert drops["leak guard: appears in a dev/eval file"] == 3
    # each malformed record is counted once, although a file may be read for train and dev
    assert drops["record is not an object"] == 1
    assert drops["bad JSON"] == 1
    assert drops["django line does not parse after detokenising"] == 1
    assert any("api.jsonl:2: bad JSON" in p for p in stats["problems"])
    assert any("train.json:[9]: record is not an object" in p for p in stats["problems"])
    assert any("all.code:3:" in p for p in stats["problems"])
    assert stats["data_root"] == str(tmp_path / "recipes" / ".." / "mydata")


def test_leak_guard_on_code_only(tmp_path):
    recipe = write_fixture(tmp_path)
    build(recipe, tmp_path / "out")
    train = read_jsonl(tmp_path / "out" / "train.jsonl")
    # "order `xs` from large to small" had the dev code `xs.sort(reverse=True)` (spacing differs)
    assert all("reverse=True" not in e.code.replace(" ", "") for e in train)
    # the guard file's intent "Print hello, world" folds to the train intent "print hello world"
    assert all("hello" not in e.intent for e in train)


def test_build_is_deterministic(tmp_path):
    recipe = write_fixture(tmp_path)
    build(recipe, tmp_path / "a")
    build(recipe, tmp_path / "b")
    for name in ("train.jsonl", "dev.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_no_near_dedup_keeps_near_duplicates(tmp_path):
    recipe = write_fixture(tmp_path)
    recipe.write_text(recipe.read_text().replace("dedup_near = true", "dedup_near = false"))
    stats = build(recipe, tmp_path / "out")
    assert stats["drops"].get("near duplicate", 0) == 0
    assert stats["duplicates_removed"] == 2


def test_missing_source_file_names_path_and_key(tmp_path):
    recipe = write_fixture(tmp_path)
    (tmp_path / "mydata" / "api.jsonl").unlink()
    with pytest.raises(DataError) as exc:
        build(recipe, tmp_path / "out")
    msg = str(exc.value)
    assert "api.jsonl" in msg and "'api'" in msg and "key 'path'" in msg and "tiny.toml" in msg
    assert not (tmp_path / "out" / "train.jsonl").exists()


def test_missing_dev_path_names_key(tmp_path):
    recipe = write_fixture(tmp_path)
    (tmp_path / "mydata" / "bash" / "dev.cm").unlink()
    with pytest.raises(DataError, match=r"dev\.cm.*key 'dev_path'"):
        build(recipe, tmp_path / "out")


def test_missing_leak_guard_file(tmp_path):
    recipe = write_fixture(tmp_path)
    (tmp_path / "mydata" / "conala" / "test.json").unlink()
    with pytest.raises(DataError, match=r"leak_guard file .*test\.json"):
        build(recipe, tmp_path / "out")
    recipe.write_text(recipe.read_text() + "optional = true\n")
    assert build(recipe, tmp_path / "out")["leak_guard_removed"] == 2


def test_missing_recipe(tmp_path):
    with pytest.raises(DataError, match="recipe not found"):
        build(tmp_path / "nope.toml", tmp_path / "out")


def test_invalid_toml(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [unclosed\n")
    with pytest.raises(DataError, match="not valid TOML"):
        load_recipe(bad)


@pytest.mark.parametrize("extra,match", [
    ('\n[[source]]\nname = "x"\nkind = "jsonl"\npath = "api.jsonl"\nwieght = 2\n', "wieght"),
    ('\n[[source]]\nname = "x"\nkind = "csv"\npath = "api.jsonl"\n', "kind"),
    ('\n[[source]]\nkind = "jsonl"\npath = "api.jsonl"\n', "name"),
])
def test_unknown_source_keys_rejected(tmp_path, extra, match):
    recipe = write_fixture(tmp_path)
    recipe.write_text(recipe.read_text() + extra)
    with pytest.raises(DataError, match=match):
        load_recipe(recipe)


def test_conala_title_source(tmp_path):
    """A second CoNaLa source with intent = "title": the question titles of the train records
    only (dev_first cuts the same records), into training and the retrieval index."""
    recipe = write_fixture(tmp_path, '\n[[source]]\nname = "conala-title"\nkind = "conala"\n'
                                     'path = "conala/train.json"\nintent = "title"\ndev_first = 2\n')
    out = tmp_path / "corpus"
    stats = build(recipe, out)
    titles = [(e.intent, e.code) for e in read_jsonl(out / "train.jsonl") if e.source == "conala-title"]
    # record 2's title is its only intent, already a conala pair (a duplicate); the others
    # are titled "q", as are the two dev records, so the leak guard drops them all
    assert titles == []
    assert stats["sources"]["conala-title"] == {"read_train": 7, "dev": 0, "held_out_only": 2, "train": 0}
    assert [e.source for e in read_jsonl(out / "dev.jsonl")].count("conala-title") == 0
    assert stats["dev"] == 4

    fixture = json.loads((tmp_path / "mydata" / "conala" / "train.json").read_text())
    for i, rec in enumerate(fixture[3:6]):  # train records with titles of their own
        rec["intent"] = f"How do I do task {i} in Python?"
    (tmp_path / "mydata" / "conala" / "train.json").write_text(json.dumps(fixture))
    build(recipe, out)
    titles = [(e.intent, e.code) for e in read_jsonl(out / "train.jsonl") if e.source == "conala-title"]
    # three titles of the same code (spacing aside): different intents, so all kept
    assert titles == [("How do I do task 0 in Python?", "s.upper()"), ("How do I do task 1 in Python?", "s.upper()"),
                      ("How do I do task 2 in Python?", "s.upper( )")]
    import sqlite3

    con = sqlite3.connect(out / "index.sqlite")
    indexed = {r[0] for r in con.execute("SELECT intent FROM pairs WHERE source = 'conala-title'")}
    con.close()
    assert indexed == {t for t, _ in titles}


@pytest.mark.parametrize("value,match", [('"question"', "must be"), ("1", "must be")])
def test_conala_intent_values_checked(tmp_path, value, match):
    recipe = write_fixture(tmp_path, f'\n[[source]]\nname = "t"\nkind = "conala"\npath = "conala/train.json"\n'
                                     f'intent = {value}\n')
    with pytest.raises(DataError, match=match):
        load_recipe(recipe)


def test_intent_only_for_conala_sources(tmp_path):
    recipe = write_fixture(tmp_path, '\n[[source]]\nname = "t"\nkind = "jsonl"\npath = "api.jsonl"\n'
                                     'intent = "title"\n')
    with pytest.raises(DataError, match="only a source of kind 'conala'"):
        load_recipe(recipe)


def test_unknown_top_level_key_rejected(tmp_path):
    recipe = write_fixture(tmp_path)
    recipe.write_text("dedup_neer = false\n" + recipe.read_text())
    with pytest.raises(DataError, match="dedup_neer"):
        load_recipe(recipe)


def test_unknown_leak_guard_key_rejected(tmp_path):
    recipe = write_fixture(tmp_path)
    recipe.write_text(recipe.read_text() + 'pth = "x.json"\n')
    with pytest.raises(DataError, match="pth"):
        load_recipe(recipe)


def test_recipe_without_sources(tmp_path):
    recipe = tmp_path / "empty.toml"
    recipe.write_text('name = "empty"\n')
    with pytest.raises(DataError, match=r"no \[\[source\]\]"):
        load_recipe(recipe)


def test_data_root_relative_to_recipe(tmp_path, monkeypatch):
    recipe = write_fixture(tmp_path)
    monkeypatch.chdir(tmp_path / "mydata" / "bash")  # the working directory must not matter
    r = load_recipe(recipe)
    assert r.data_root.resolve() == (tmp_path / "mydata").resolve()
    assert [s.name for s in r.sources] == ["conala", "api", "nl2bash", "django"]
