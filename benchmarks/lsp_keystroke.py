"""Cost of one keystroke in a big document, in the language server's document model.

One incremental change (a character typed near the end) applied to a document of N lines,
with pygls's TextDocument (splits the whole document into lines on every change) and with
nl2code_lsp's FastTextDocument (finds the edited line by counting newlines in C), plus
finding the lines around the cursor for a completion (nl2code_lsp.text.lines_around).
Median of repeated runs, in milliseconds. With str as the document's storage, one copy of
the text per edit is the floor; FastTextDocument costs about that.

    python -m benchmarks.lsp_keystroke [--lines 1000000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

from lsprotocol import types
from pygls.workspace import TextDocument

from nl2code_lsp import text
from nl2code_lsp.document import FastTextDocument
from nl2code_lsp.text import lines_around


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args(argv)
    source = "value = compute(value)  # keep going\n" * args.lines
    line = args.lines - 2
    change = types.TextDocumentContentChangePartial(
        range=types.Range(types.Position(line, 5), types.Position(line, 5)), text="x")
    print(f"document: {args.lines:,} lines, {len(source) / 1e6:.1f} MB; median of {args.repeat}")
    for cls in (TextDocument, FastTextDocument):
        doc = cls("file:///big.py", source)
        print(f"  {cls.__name__:17} keystroke  {median_ms(lambda: doc.apply_change(change), args.repeat):8.2f} ms")
    print(f"  one copy of the text (the floor) {median_ms(lambda: ''.join((source[:9], 'x', source[9:])), args.repeat):7.2f} ms")

    def cold() -> None:
        text._hint = None  # no remembered line: scan from the top
        lines_around(source, line)

    print(f"  lines_around, last line, cold   {median_ms(cold, args.repeat):8.2f} ms")
    print(f"  lines_around, last line, warm   {median_ms(lambda: lines_around(source, line), args.repeat):8.2f} ms")


if __name__ == "__main__":
    main()
