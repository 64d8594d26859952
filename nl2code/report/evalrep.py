"""The evaluation report: an eval JSON (BLEU kind or execution-suite kind) -> one HTML page.

BLEU kind: what `nl2code eval --json` prints (summary keys, plus `by_source`,
`by_intent_length` and `cases` from evaluate.details). Execution kind ("kind": "exec"):
`overall`, `by_lang` / `by_tag` / `by_style` of {pass@k, n} and `cases` with per-candidate
`passed` flags. Sections whose data is absent are left out, with a note saying so.
"""

from __future__ import annotations

import re
from typing import Any

from nl2code import metrics
from nl2code.errors import UsageError
from nl2code.report import plots
from nl2code.report.page import Markup, cards, code, esc, figure, fmt, note, page, row, section, table

WORST = 25  # rows in the worst-cases table
SHOWN_CANDIDATES = 3
CLOSER = 5.0  # sentence-BLEU points by which another candidate must beat the answer to be named

_NAME = re.compile(r"`([^`\n]+)`|(?<![\w`])(['\"])((?:(?!\2)[^\n])*?)\2(?![\w])")


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def kind_of(report: dict[str, Any]) -> str:
    """"bleu" or "exec", after checking the shapes the report pages read."""
    if not isinstance(report, dict):
        raise UsageError("not an nl2code eval report: expected a JSON object")
    overall = report.get("overall")
    if report.get("kind") == "exec" or (isinstance(overall, dict) and any(str(k).startswith("pass@") for k in overall)):
        kind = "exec"
        by = [report.get(name) or {} for name in ("by_lang", "by_tag", "by_style")]
        groups = [overall] + [g for d in by if isinstance(d, dict) for g in d.values()]
        groups += [None for d in by if not isinstance(d, dict)]  # a by_* that is not an object
        if not isinstance(overall, dict) or not all(isinstance(g, dict) and all(_is_num(v) for k, v in g.items()
                                                                                if str(k).startswith("pass@"))
                                                     for g in groups):
            raise UsageError("malformed execution-suite report: 'overall' and by_* groups must map pass@k to numbers")
    elif _is_num(report.get("bleu")):
        kind = "bleu"
    else:
        raise UsageError("not an nl2code eval report: no 'bleu' or exec 'overall' figures in it")
    cases = report.get("cases")
    if cases is not None and not (isinstance(cases, list) and all(isinstance(c, dict) for c in cases)):
        raise UsageError("malformed eval report: 'cases' must be a list of objects")
    return kind


def as_percent(values: list[float]) -> float:
    """Execution suites give pass@k as fractions in [0, 1]; percentages (any value > 1) pass through."""
    return 100.0 if values and max(values) <= 1.0 else 1.0


# --- why a case lost ---------------------------------------------------------------------

def intent_names(intent: str) -> list[str]:
    """Names in backticks and quoted literals: what the code is expected to copy."""
    out = []
    for m in _NAME.finditer(intent):
        value = (m.group(1) or m.group(3) or "").strip()
        if value and value not in out:
            out.append(value)
    return out


def why_lost(case: dict[str, Any]) -> list[str]:
    """Plain reasons a BLEU-kind case scored low, from its own record."""
    if case.get("exact"):
        return ["exact match"]
    reasons = []
    answer = case.get("answer")
    cands = case.get("candidates") or []
    bleu = float(case.get("bleu", 0.0))
    if not case.get("answered", answer is not None):
        reasons.append("unanswered: no candidate parsed")
    ref = case.get("reference", "")
    missed = [n for n in intent_names(case.get("intent", "")) if n in ref and n not in (answer or "")]
    if missed and answer is not None:
        reasons.append("left out " + ", ".join(repr(n) for n in missed[:4]) + " from the intent")
    ranked = [(float(c.get("bleu", 0.0)), i, c) for i, c in enumerate(cands) if c.get("code") != answer]
    best = max(ranked, default=None, key=lambda t: (t[0], -t[1]))
    if best is not None and best[0] >= bleu + CLOSER:
        tail = "" if best[2].get("parses", True) else ", but it did not parse"
        reasons.append(f"candidate #{best[1] + 1} was closer (BLEU {best[0]:.0f} vs {bleu:.0f}){tail}")
    plain_bleu = case.get("plain_bleu")
    if (answer is not None and plain_bleu is not None and case.get("plain") != answer
            and plain_bleu >= bleu + CLOSER):
        reasons.append(f"the reranker overrode the model's first choice, which was closer (BLEU {plain_bleu:.0f})")
    if answer:
        n_ans, n_ref = len(metrics.tokenize_for_bleu(answer)), len(metrics.tokenize_for_bleu(ref))
        if n_ref and n_ans >= 2 * n_ref:
            reasons.append(f"answer {n_ans / n_ref:.1f}x as long as the reference")
        elif n_ref and n_ans * 2 <= n_ref:
            reasons.append("answer less than half as long as the reference")
    top = max([bleu] + [t[0] for t in ranked])
    if top < 25.0:
        reasons.append(f"no candidate close to the reference (best BLEU {top:.0f})")
    return reasons or [f"partial match (BLEU {bleu:.0f})"]


def worst_cases(cases: list[dict[str, Any]], k: int = WORST) -> list[dict[str, Any]]:
    """Unanswered first, then lowest sentence BLEU; ties in dataset order."""
    return sorted(cases, key=lambda c: (bool(c.get("answered", True)), float(c.get("bleu", 0.0)),
                                        c.get("id", 0)))[:k]


def _candidates_cell(case: dict[str, Any]) -> Markup:
    """The first few candidates, plus the closest one when it ranked below them."""
    cands = list(enumerate(case.get("candidates") or []))
    shown = cands[:SHOWN_CANDIDATES]
    closest = max(cands, key=lambda t: (float(t[1].get("bleu", 0.0)), -t[0]), default=None)
    if closest is not None and closest[0] >= SHOWN_CANDIDATES:
        shown.append(closest)
    out = []
    for i, c in shown:
        chosen = case.get("answered", True) and c.get("code") == case.get("answer")
        marks = [f"#{i + 1}", f"BLEU {float(c.get('bleu', 0.0)):.0f}",
                 "parses" if c.get("parses", True) else "does not parse"]
        if c.get("repaired"):
            marks.append("repaired")
        if chosen:
            marks.append("the answer")
        out.append(f'<div class="cand{" chosen" if chosen else ""}">{code(c.get("code", ""))}'
                   f'<div class="meta">{esc(" · ".join(marks))}</div></div>')
    return Markup("".join(out) or '<span class="note">none</span>')


def _why_cell(reasons: list[str]) -> Markup:
    return Markup('<ul class="why">' + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")


# --- BLEU kind -----------------------------------------------------------------------------

def _group_section(anchor: str, title: str, groups: dict[str, dict[str, Any]], what: str) -> Markup:
    names = list(groups)
    uri = plots.grouped_bars(
        f"{title}", names,
        {"BLEU": [groups[g].get("bleu", 0.0) for g in names],
         "exact match %": [groups[g].get("exact_match", 0.0) for g in names],
         "answered %": [groups[g].get("answered_rate", 0.0) for g in names]},
        ylabel="score", ymax=100.0, counts=[groups[g].get("examples", 0) for g in names])
    rows = [(g, s.get("examples"), s.get("bleu"), s.get("exact_match"), s.get("answered_rate")) for g, s in groups.items()]
    return section(anchor, title, row(figure(uri, anchor, f"BLEU, exact match and answered rate by {what}"),
                                      table([what, "examples", "BLEU", "exact match %", "answered %"],
                                            [[fmt(v) for v in r] for r in rows], numeric=(1, 2, 3, 4))))


def _latency_section(values: list[float], marks: dict[str, float], unit_note: str) -> Markup:
    uri = plots.histogram("Latency per example", values, "milliseconds", marks)
    return section("latency", "Latency", figure(uri, "latency", f"latency per example ({unit_note})"))


def bleu_report(rep: dict[str, Any]) -> str:
    sections = [section("overview", "Headline figures", cards([
        ("BLEU", fmt(rep.get("bleu")), "corpus BLEU-4, CoNaLa tokens"),
        ("exact match", fmt(rep.get("exact_match"), suffix="%"), ""),
        ("answered", fmt(rep.get("answered_rate"), suffix="%"), "a parsing candidate"),
        ("top-1 parses", fmt(rep.get("top1_parse_rate_of_answered"), suffix="%"), "of answered"),
        ("plain beam top-1 BLEU", fmt(rep.get("plain_beam_top1_bleu")), "no filter, no rerank"),
        ("latency p50", fmt(rep.get("latency_ms_p50"), 1, " ms"), f"p95 {fmt(rep.get('latency_ms_p95'), 1, ' ms')}"),
        ("examples", fmt(rep.get("examples")), rep.get("lang", "")),
    ]))]
    cases = rep.get("cases")
    if rep.get("by_source"):
        sections.append(_group_section("by-source", "By source", rep["by_source"], "source"))
    if rep.get("by_intent_length"):
        sections.append(_group_section("by-length", "By intent length (words)", rep["by_intent_length"],
                                       "intent length"))
    if cases:
        lat = [float(c["ms"]) for c in cases if isinstance(c.get("ms"), (int, float))]
        if lat:
            marks = {k: float(rep[f"latency_ms_{k}"]) for k in ("p50", "p95") if f"latency_ms_{k}" in rep}
            sections.append(_latency_section(lat, marks, "beam search, filter and rerank of one intent"))
        worst = worst_cases(cases)
        rows = [(c.get("id"), c.get("intent"), code(c.get("reference")), _candidates_cell(c), fmt(c.get("bleu")),
                 _why_cell(why_lost(c))) for c in worst]
        sections.append(section(
            "worst", f"Worst {len(worst)} cases",
            note("Unanswered first, then lowest sentence BLEU (add-one smoothed); up to "
                 f"{SHOWN_CANDIDATES} candidates each in the order the reranker put them, and the closest "
                 "one when it ranked lower."),
            table(["#", "intent", "reference", "top candidates", "BLEU", "why it lost"], rows, cls="cases",
                  numeric=(0, 4), widths=("4%", "20%", "20%", "32%", "6%", "18%"))))
    else:
        sections.append(note("This report has no per-example records (an eval JSON from before they were "
                             "added): no breakdowns, latency histogram or worst cases."))
    return page("nl2code evaluation report", f"{rep.get('system', '?')} on {rep.get('dataset', '?')}", sections)


# --- execution-suite kind --------------------------------------------------------------------

def _pass_keys(d: dict[str, Any]) -> list[str]:
    return sorted((k for k in d if str(k).startswith("pass@")), key=lambda k: int(k[5:]) if k[5:].isdigit() else 0)


def case_pass_rate(case: dict[str, Any]) -> float:
    passed = case.get("passed") or []
    return sum(bool(p) for p in passed) / len(passed) if passed else 0.0


def exec_why(case: dict[str, Any]) -> list[str]:
    passed = case.get("passed") or []
    reasons = [f"{sum(bool(p) for p in passed)} of {len(passed)} candidates passed"]
    if case.get("error"):
        reasons.append(str(case["error"]))
    errors = [e for e in case.get("errors") or [] if e]
    for e in dict.fromkeys(str(e) for e in errors):
        if len(reasons) >= 4:
            break
        reasons.append(e)
    return reasons


def _exec_candidates_cell(case: dict[str, Any]) -> Markup:
    passed = case.get("passed") or []
    out = []
    for i, c in enumerate((case.get("candidates") or [])[:SHOWN_CANDIDATES]):
        text = c.get("code", "") if isinstance(c, dict) else c
        ok = bool(passed[i]) if i < len(passed) else False
        out.append(f'<div class="cand{" chosen" if ok else ""}">{code(text)}'
                   f'<div class="meta">#{i + 1} · {"passed" if ok else "failed"}</div></div>')
    return Markup("".join(out) or '<span class="note">none</span>')


def exec_report(rep: dict[str, Any]) -> str:
    overall = rep.get("overall") or {}
    keys = _pass_keys(overall)
    groups = {name: rep[name] for name in ("by_lang", "by_tag", "by_style") if isinstance(rep.get(name), dict) and rep[name]}
    scale = as_percent([float(overall[k]) for k in keys]
                       + [float(s[k]) for g in groups.values() for s in g.values() for k in _pass_keys(s)])
    items = [(k, fmt(float(overall[k]) * scale, 1, "%"), "") for k in keys]
    items.append(("cases", fmt(overall.get("n", len(rep.get("cases") or []))), rep.get("suite", "")))
    sections = [section("overview", "Headline figures", cards(items))]
    titles = {"by_lang": ("language", "By language"), "by_tag": ("tag", "By tag"), "by_style": ("phrasing style", "By phrasing style")}
    for name, stats in groups.items():
        what, title = titles[name]
        names = list(stats)
        gkeys = keys or _pass_keys(next(iter(stats.values())))
        uri = plots.grouped_bars(title, names, {k: [float(stats[g].get(k, 0.0)) * scale for g in names] for k in gkeys},
                                 ylabel="% of cases", ymax=100.0, counts=[stats[g].get("n", 0) for g in names])
        rows = [[g, fmt(stats[g].get("n"))] + [fmt(float(stats[g].get(k, 0.0)) * scale, 1) for k in gkeys] for g in names]
        sections.append(section(name.replace("_", "-"), title, row(
            figure(uri, name, f"pass@k by {what}"),
            table([what, "cases"] + [f"{k} %" for k in gkeys], rows, numeric=tuple(range(1, 2 + len(gkeys)))))))
    cases = rep.get("cases") or []
    lat = [float(c["ms"]) for c in cases if isinstance(c.get("ms"), (int, float))]
    if lat:
        sections.append(_latency_section(lat, {}, "generation of one case's candidates"))
    failing = sorted((c for c in cases if case_pass_rate(c) < 1.0), key=case_pass_rate)  # ties: suite order
    if failing:
        worst = failing[:WORST]
        rows = [(c.get("id"), c.get("intent"), ", ".join(map(str, c.get("tags") or [])) + f" / {c.get('style', '')}",
                 _exec_candidates_cell(c), _why_cell(exec_why(c))) for c in worst]
        sections.append(section("worst", f"Worst {len(worst)} cases",
                                 note("Fewest passing candidates first; ties in suite order."),
                                 table(["id", "intent", "tags / style", "top candidates", "why it lost"], rows,
                                       cls="cases", widths=("8%", "22%", "12%", "36%", "22%"))))
    return page("nl2code execution-suite report", f"{rep.get('system', '?')} on {rep.get('suite', rep.get('dataset', '?'))}",
                sections)


def render(rep: dict[str, Any]) -> str:
    plots.require()
    return exec_report(rep) if kind_of(rep) == "exec" else bleu_report(rep)
