"""The HTML page the reports share: one self-contained file, no scripts, no external assets.

Everything taken from data (intents, code, paths) is escaped here; only the helpers below
produce markup, so a snippet such as `</td><script>` shows as text.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Iterable, Sequence

from nl2code import __version__

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0 auto; max-width: 1150px; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 22px; margin: 8px 0 2px; }
h2 { font-size: 17px; margin: 28px 0 8px; padding-bottom: 4px; border-bottom: 2px solid #3366aa; }
.sub { color: #666; margin: 0 0 12px; overflow-wrap: anywhere; }
nav a { margin-right: 14px; color: #3366aa; text-decoration: none; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.card { border: 1px solid #d8dee9; border-radius: 6px; padding: 8px 14px; min-width: 120px; background: #f7f9fc; }
.card .v { font-size: 22px; font-weight: 600; color: #1d3f73; }
.card .k { font-size: 12px; color: #555; }
.card .n { font-size: 11px; color: #888; }
figure { margin: 10px 0; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12px; color: #666; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #eef2f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody tr:nth-child(even) { background: #fafafa; }
table.cases { table-layout: fixed; width: 100%; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font: 12px/1.35 ui-monospace, Menlo, Consolas, monospace; }
.cand { margin-bottom: 4px; padding-left: 4px; border-left: 3px solid #ccc; }
.cand.chosen { border-left-color: #3366aa; }
.cand .meta { font-size: 11px; color: #777; }
.better { color: #2a7a2a; font-weight: 600; }
.worse { color: #b03030; font-weight: 600; }
.note { color: #777; font-style: italic; }
ul.why { margin: 0; padding-left: 16px; }
footer { margin-top: 32px; color: #999; font-size: 11px; }
"""


class Markup(str):
    """Text that is already HTML (built by these helpers); everything else is escaped."""


def esc(value: Any) -> str:
    if isinstance(value, Markup):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 2, suffix: str = "") -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}{suffix}"
    if isinstance(value, int):
        return f"{value:,}{suffix}"
    return f"{value}{suffix}"


def cards(items: Iterable[tuple[str, str, str]]) -> Markup:
    """Headline figures: (label, value, note)."""
    out = ['<div class="cards">']
    for label, value, note in items:
        out.append(f'<div class="card" data-key="{esc(label)}"><div class="v">{esc(value)}</div>'
                   f'<div class="k">{esc(label)}</div>' + (f'<div class="n">{esc(note)}</div>' if note else "")
                   + "</div>")
    out.append("</div>")
    return Markup("".join(out))


def figure(uri: str, name: str, caption: str) -> Markup:
    return Markup(f'<figure data-plot="{esc(name)}"><img alt="{esc(caption)}" src="{esc(uri)}">'
                  f"<figcaption>{esc(caption)}</figcaption></figure>")


def code(text: Any) -> Markup:
    return Markup(f"<pre><code>{esc(text)}</code></pre>")


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "", numeric: Sequence[int] = (),
          widths: Sequence[str] = ()) -> Markup:
    out = [f'<table class="{esc(cls)}">']
    if widths:
        out.append("<colgroup>" + "".join(f'<col style="width:{esc(w)}">' for w in widths) + "</colgroup>")
    out.append("<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in headers) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            klass = ' class="num"' if i in numeric else ""
            cells.append(f"<td{klass}>{esc(cell)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return Markup("".join(out))


class Section(Markup):
    anchor: str = ""
    title: str = ""


def section(anchor: str, title: str, *parts: str) -> Section:
    sec = Section(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>' + "".join(esc(p) for p in parts) + "</section>")
    sec.anchor, sec.title = anchor, title
    return sec


def row(*parts: str) -> Markup:
    """Parts side by side (a figure and its table), wrapping on narrow screens."""
    return Markup('<div class="row">' + "".join(esc(p) for p in parts) + "</div>")


def note(text: str) -> Markup:
    return Markup(f'<p class="note">{esc(text)}</p>')


def page(title: str, subtitle: str, sections: Sequence[Markup]) -> str:
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections if isinstance(s, Section))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{esc(title)}</h1><p class=\"sub\">{esc(subtitle)}</p>"
            f"<nav>{nav}</nav>" + "".join(sections)
            + f"<footer>nl2code {esc(__version__)}</footer></body></html>\n")


def write(path: str | Path, text: str) -> Path:
    """Write the page next to its final name, then rename: no half-written report."""
    path = Path(path)
    if path.is_dir():
        raise OSError(21, "is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
