"""HTML reports people look at: evaluation, training, and two evaluations compared.

Each report is one self-contained HTML file (figures embedded as PNG data URIs, no
scripts, no external assets). Figures need matplotlib, the optional `nl2code[report]`
extra; without it every entry point raises one UsageError that says how to install it.

    eval_html(report_dict)        an `nl2code eval --json` report (BLEU or execution suite)
    train_html(run_dir)           a training folder's log.jsonl
    compare(a, b) / compare_html  two eval reports side by side
"""

from __future__ import annotations

from nl2code.report.compare import compare, html as compare_html, load as load_eval, text as compare_text
from nl2code.report.evalrep import render as eval_html
from nl2code.report.page import write
from nl2code.report.plots import require
from nl2code.report.trainrep import render as train_html

__all__ = ["compare", "compare_html", "compare_text", "eval_html", "load_eval", "require", "train_html", "write"]
