"""Manual-page EXAMPLES reader, on small roff pages written here (never the machine's pages)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from nl2code.data.build import build
from nl2code.data.manpages import (
    block_commands,
    clean_intent,
    example_section,
    package_versions,
    read_manpages,
    roff_text,
)
from nl2code.data.records import Report
from nl2code.errors import DataError

# gcloud style: prose "To ..., run:" then an .RS block with a $ prompt and \e continuations
CLOUDY = r""".TH "CLOUDY VM CREATE" 1
.SH "NAME"
cloudy vm create \- create a virtual machine
.SH "EXAMPLES"

To create a machine called 'web\-1' in zone 'eu\-west', run:

.RS 2m
$ cloudy vm create web\-1 \e
    \-\-zone=eu\-west
.RE

To create a machine from a template file, run:

.RS 2m
$ cloudy vm create <NAME> \-\-from=template.yaml
.RE

.RS 2m
$ cloudy vm create orphan
.RE

.SH "FLAGS"
To list flags, run:
.RS 2m
$ cloudy vm create \-\-help
.RE
"""

# man(7) style: prose, then .nf/.fi with .B command lines and output after a $ prompt
FINDISH = r""".TH FINDISH 1 "2024-01-02" "findish 4.9"
.SH NAME
findish \- search
.SH EXAMPLES
.SS Simple
Find files named
.I core
in or below the directory
.I /tmp
and delete them.
.nf
.in +4m
.B $ findish /tmp \-name core \-type f \-delete
.in
.fi
.PP
Count the lines of \fBevery\fR \*(lqC\*(rq file and show the total:
.EX
$ \fBfindish\fP . \-name '*.c' | xargs wc \-l
  120 total
.EE
.PP
A block with a command that does not parse:
.EX
$ findish ( \-name x
.EE
.SH SEE ALSO
.BR locate (1)
"""

# DocBook style: the section opens with a block; each description follows its command
OPENER = r""".TH OPENER 1
.SH "EXAMPLES"
.PP
.if n \{\
.RS 4
.\}
.nf
opener \*(Aqhttp://www\&.example\&.org/\*(Aq
.fi
.if n \{\
.RE
.\}
.sp
Opens the example\&.org website in the default browser\&.
.PP
.RS 4
.nf
opener /tmp/picture\&.png
.fi
.RE
.sp
Opens the image file /tmp/picture\&.png in the default image viewer\&.
"""

NO_EXAMPLES = ".TH PLAIN 1\n.SH NAME\nplain \\- nothing to see\n.SH DESCRIPTION\nRun plain.\n"


def write_pages(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("cloudy_vm_create.1.gz", CLOUDY), ("findish.1.gz", FINDISH), ("opener.1.gz", OPENER),
                       ("plain.1.gz", NO_EXAMPLES)):
        with gzip.open(folder / name, "wb") as fh:
            fh.write(text.encode("utf-8"))
    (folder / "broken.1.gz").write_bytes(b"\x1f\x8bnot really gzip")
    (folder / "alias.1.gz").symlink_to(folder / "findish.1.gz")
    return folder


def test_roff_text_escapes_and_font_macros():
    assert roff_text(r"\fBgrep\fP \-n \*(lqx\*(rq \(aqy\(aq") == "grep -n \"x\" 'y'"
    assert roff_text(".B $ find /tmp \\-name core") == "$ find /tmp -name core"
    assert roff_text(".BR locate (1)") == "locate(1)"


def test_example_section_stops_at_next_section():
    lines = example_section(CLOUDY)
    assert any("web" in line for line in lines)
    assert not any("--help" in line or "\\-\\-help" in line for line in lines)
    assert example_section(NO_EXAMPLES) == []


def test_block_commands_prompts_continuations_and_output():
    assert block_commands(["$ tool a \\", "    --flag=1", "output line"], "tool") == ["tool a --flag=1"]
    # without prompts, only lines that start with the page's command count
    assert block_commands(["tool x", "some output", "tool y"], "tool") == ["tool x", "tool y"]
    assert block_commands(["just output"], "tool") == []


def test_clean_intent():
    assert clean_intent("To create a machine called 'web-1', run:") == "create a machine called 'web-1'"
    assert clean_intent("To list the flags, use the following command:") == "list the flags"
    assert clean_intent("Opens the website in the browser.") == "opens the website in the browser"


def test_read_manpages_pairs_and_drops(tmp_path: Path):
    report = Report()
    used: list[Path] = []
    pairs = [(e.intent, e.code, e.lang, e.source)
             for e in read_manpages(write_pages(tmp_path / "man1"), report, "man", used=used)]
    assert pairs == [
        ("create a machine called 'web-1' in zone 'eu-west'", "cloudy vm create web-1 --zone=eu-west", "bash", "man"),
        ("find files named core in or below the directory /tmp and delete them",
         "findish /tmp -name core -type f -delete", "bash", "man"),
        ("count the lines of every \"C\" file and show the total", "findish . -name '*.c' | xargs wc -l", "bash", "man"),
        ("opens the example.org website in the default browser", "opener 'http://www.example.org/'", "bash", "man"),
        ("opens the image file /tmp/picture.png in the default image viewer", "opener /tmp/picture.png", "bash", "man"),
    ]
    assert report.drops["man command has placeholders"] == 1  # <NAME>
    assert report.drops["man example without a description"] == 1  # the orphan block
    assert report.drops["man command does not parse"] == 1
    assert report.drops["unreadable man page"] == 1  # broken.1.gz; the link alias.1.gz is skipped
    assert sorted(p.name for p in used) == ["cloudy_vm_create.1.gz", "findish.1.gz", "opener.1.gz"]


def test_include_and_exclude_globs(tmp_path: Path):
    root = write_pages(tmp_path / "man1")
    only = list(read_manpages(root, Report(), "m", include=["cloudy_*"]))
    assert {e.code.split()[0] for e in only} == {"cloudy"}
    rest = list(read_manpages(root, Report(), "m", exclude=["cloudy_*", "opener*"]))
    assert {e.code.split()[0] for e in rest} == {"findish"}


def test_missing_folder_is_a_data_error(tmp_path: Path):
    with pytest.raises(DataError, match="manual page folder not found"):
        list(read_manpages(tmp_path / "nowhere", Report()))


def test_package_versions_from_dpkg_database(tmp_path: Path):
    db = tmp_path / "dpkg"
    (db / "info").mkdir(parents=True)
    (db / "info" / "findutils.list").write_text("/usr/share/man/man1/findish.1.gz\n/usr/bin/findish\n")
    (db / "info" / "other:amd64.list").write_text("/usr/bin/other\n")
    (db / "status").write_text("Package: findutils\nStatus: install ok installed\nVersion: 4.9.0-4\n\n"
                               "Package: other\nVersion: 1.0\n")
    pages = [Path("/usr/share/man/man1/findish.1.gz"), Path("/usr/share/man/man1/unowned.1.gz")]
    assert package_versions(pages, db) == "findutils==4.9.0-4"
    assert package_versions(pages, tmp_path / "no-dpkg") == ""


def test_build_with_a_manpage_source(tmp_path: Path):
    write_pages(tmp_path / "man1")
    recipe = tmp_path / "r.toml"
    recipe.write_text(f"""
name = "m"
data_root = "{tmp_path}"
[[source]]
name = "man"
kind = "manpage"
path = "man1"
exclude = ["cloudy*"]
weight = 0.3
""")
    stats = build(recipe, tmp_path / "out")
    assert stats["sources"]["man"]["train"] == 4
    assert stats["by_lang"] == {"bash": 4}
    assert "man" in stats["mined_versions"]  # the owning packages ("" here: no package owns them)
    rows = [json.loads(x) for x in (tmp_path / "out" / "train.jsonl").read_text().splitlines()]
    assert {r["source"] for r in rows} == {"man"}
    bad = tmp_path / "bad.toml"
    bad.write_text(recipe.read_text().replace('exclude = ["cloudy*"]', 'exclude = "cloudy*"'))
    with pytest.raises(DataError, match="exclude"):
        build(bad, tmp_path / "out2")
