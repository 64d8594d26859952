"""Two eval JSON reports side by side: headline figures and which cases got better or worse.

Cases are matched by (intent, reference) for BLEU reports (the n-th repeat of a pair with
the n-th), by id for execution suites. A case's score is its sentence BLEU, or the share
of its candidates that passed; a change of more than TOLERANCE counts.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from nl2code.errors import UsageError
from nl2code.report import plots
from nl2code.report.evalrep import _pass_keys, as_percent, case_pass_rate, kind_of
from nl2code.report.page import Markup, cards, code, esc, figure, fmt, note, page, section, table

TOLERANCE = 0.01
LISTED = 20  # cases listed per direction
LABELS = {"bleu": "BLEU", "exact_match": "exact match %", "answered_rate": "answered %",
          "top1_parse_rate_of_answered": "top-1 parses %", "plain_beam_top1_bleu": "plain top-1 BLEU",
          "latency_ms_p50": "latency p50 ms", "latency_ms_p95": "latency p95 ms"}
BLEU_KEYS = tuple(LABELS)


def load(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"eval report not found: {path}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text; expected the output of `nl2code eval --json`") from None
    try:
        rep = json.loads(text)
    except (ValueError, RecursionError):
        raise UsageError(f"{path}: not JSON; expected the output of `nl2code eval --json`") from None
    try:
        kind_of(rep)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from None
    return rep


def _keys(cases: list[dict[str, Any]], kind: str) -> dict[Any, dict[str, Any]]:
    out, seen = {}, Counter()
    for c in cases:
        if not isinstance(c, dict):
            continue
        base = str(c.get("id")) if kind == "exec" else (c.get("intent"), c.get("reference"))
        seen[base] += 1
        out[(base, seen[base])] = c
    return out


def case_score(case: dict[str, Any], kind: str) -> float:
    return 100.0 * case_pass_rate(case) if kind == "exec" else float(case.get("bleu", 0.0))


def _answer(case: dict[str, Any], kind: str) -> str:
    if kind == "exec":
        cands = case.get("candidates") or []
        first = cands[0] if cands else ""
        return first.get("code", "") if isinstance(first, dict) else str(first)
    return case.get("answer") if case.get("answer") is not None else "(unanswered)"


def headline(rep: dict[str, Any], kind: str) -> dict[str, float]:
    if kind == "exec":
        overall = rep.get("overall") or {}
        keys = _pass_keys(overall)
        scale = as_percent([float(overall[k]) for k in keys])
        return {f"{k} %": round(float(overall[k]) * scale, 2) for k in keys}
    return {k: rep[k] for k in BLEU_KEYS if isinstance(rep.get(k), (int, float))}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    kind = kind_of(a)
    if kind_of(b) != kind:
        raise UsageError("cannot compare a BLEU eval report with an execution-suite report")
    ha, hb = headline(a, kind), headline(b, kind)
    result: dict[str, Any] = {
        "kind": kind,
        "a": {"system": a.get("system"), "dataset": a.get("dataset", a.get("suite"))},
        "b": {"system": b.get("system"), "dataset": b.get("dataset", b.get("suite"))},
        "headline": {k: {"a": ha[k], "b": hb[k], "delta": round(hb[k] - ha[k], 2)} for k in ha if k in hb},
    }
    ca, cb = a.get("cases"), b.get("cases")
    if not isinstance(ca, list) or not isinstance(cb, list):
        result["cases"] = None
        return result
    ka, kb = _keys(ca, kind), _keys(cb, kind)
    both = [k for k in ka if k in kb]
    if not both and ka and kb:
        raise UsageError("the two reports share no cases: were they made on the same dataset?")
    better, worse, same = [], [], 0
    for k in both:
        sa, sb = case_score(ka[k], kind), case_score(kb[k], kind)
        row = {"id": ka[k].get("id"), "intent": ka[k].get("intent"), "reference": ka[k].get("reference"),
               "a": round(sa, 2), "b": round(sb, 2), "delta": round(sb - sa, 2),
               "a_answer": _answer(ka[k], kind), "b_answer": _answer(kb[k], kind)}
        if sb - sa > TOLERANCE:
            better.append(row)
        elif sa - sb > TOLERANCE:
            worse.append(row)
        else:
            same += 1
    better.sort(key=lambda r: (-r["delta"], str(r["id"])))
    worse.sort(key=lambda r: (r["delta"], str(r["id"])))
    result["cases"] = {"matched": len(both), "only_a": len(ka) - len(both), "only_b": len(kb) - len(both),
                       "better": len(better), "worse": len(worse), "same": same,
                       "better_cases": better, "worse_cases": worse,
                       "scores": [[case_score(ka[k], kind), case_score(kb[k], kind)] for k in both]}
    return result


def text(result: dict[str, Any], listed: int = 10) -> str:
    """The comparison as aligned plain text (stdout of `nl2code eval --compare`)."""
    lines = [f"A  {result['a']['system']}  ({result['a']['dataset']})",
             f"B  {result['b']['system']}  ({result['b']['dataset']})", ""]
    width = max([len(k) for k in result["headline"]] + [6]) + 2
    lines.append(f"{'':{width}}{'A':>10}{'B':>10}{'B-A':>10}")
    for k, v in result["headline"].items():
        lines.append(f"{k:{width}}{v['a']:>10}{v['b']:>10}{v['delta']:>+10.2f}")
    c = result["cases"]
    if c is None:
        lines += ["", "cases: one of the reports has no per-case records"]
        return "\n".join(lines) + "\n"
    lines += ["", f"cases matched {c['matched']}  better {c['better']}  worse {c['worse']}  same {c['same']}"
              + (f"  only in A {c['only_a']}  only in B {c['only_b']}" if c["only_a"] or c["only_b"] else "")]
    for title, rows in (("better in B", c["better_cases"]), ("worse in B", c["worse_cases"])):
        if rows:
            lines += ["", f"{title} (first {min(listed, len(rows))} of {len(rows)}):"]
            for r in rows[:listed]:
                lines.append(f"  {r['a']:6.1f} -> {r['b']:6.1f}  {' '.join(str(r['intent']).split())[:90]}")
    return "\n".join(lines) + "\n"


def _case_rows(rows: list[dict[str, Any]], cls: str) -> list[tuple]:
    return [(r["id"], r["intent"], code(r.get("reference") or ""), code(r["a_answer"]), code(r["b_answer"]),
             Markup(f'<span class="{cls}">{esc(fmt(r["a"], 1))} → {esc(fmt(r["b"], 1))}</span>')) for r in rows]


def html(result: dict[str, Any]) -> str:
    plots.require()
    names = list(result["headline"])
    items = [(LABELS.get(k, k), f"{fmt(v['a'])} → {fmt(v['b'])}", f"B-A {v['delta']:+.2f}")
             for k, v in result["headline"].items()]
    sections = [section("overview", "Headline figures", cards(items),
                        table(["", "system", "dataset"], [("A", result["a"]["system"], result["a"]["dataset"]),
                                                          ("B", result["b"]["system"], result["b"]["dataset"])]))]
    pct = [k for k in names if not k.startswith("latency")]
    if pct:
        uri = plots.grouped_bars("A vs B", [LABELS.get(k, k) for k in pct], {"A": [result["headline"][k]["a"] for k in pct],
                                                 "B": [result["headline"][k]["b"] for k in pct]}, ymax=100.0)
        sections.append(section("side-by-side", "Side by side", figure(uri, "headline", "headline figures, A and B")))
    c = result["cases"]
    if c is None:
        sections.append(note("One of the reports has no per-case records: only headline figures compared."))
        return page("nl2code comparison", "A vs B", sections)
    what = "share of candidates passing (%)" if result["kind"] == "exec" else "sentence BLEU"
    counts = cards([("better in B", fmt(c["better"]), ""), ("worse in B", fmt(c["worse"]), ""),
                    ("unchanged", fmt(c["same"]), ""), ("matched", fmt(c["matched"]),
                                                        f"only A {c['only_a']}, only B {c['only_b']}")])
    parts = [counts]
    if c["scores"]:
        xs, ys = zip(*c["scores"])
        parts.append(figure(plots.scatter("Per case: A vs B", xs, ys, f"A {what}", f"B {what}"), "cases",
                            f"one point per case; above the diagonal: better in B ({what})"))
    sections.append(section("cases", "Cases", *parts))
    headers = ["#", "intent", "reference", "A answer", "B answer", "score A → B"]
    widths = ("4%", "20%", "20%", "23%", "23%", "10%")
    for anchor, title, rows, cls in (("better", "Better in B", c["better_cases"], "better"),
                                     ("worse", "Worse in B", c["worse_cases"], "worse")):
        if rows:
            sections.append(section(anchor, f"{title} ({len(rows)}; largest changes first)",
                                    table(headers, _case_rows(rows[:LISTED], cls), cls="cases", numeric=(0,), widths=widths)))
    return page("nl2code comparison", f"A: {result['a']['system']}  ·  B: {result['b']['system']}", sections)
