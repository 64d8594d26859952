"""Execution suite: pass@1 / pass@5 of a model's top-5 candidates on benchmarks/exec.

    python -m benchmarks.exec_suite [--model DIR] [--suite benchmarks/exec] [--lang L]
                                    [--json PATH] [--markdown PATH] [--quick]

Each case's candidates run in confined child processes (nl2code.execrun; see SECURITY.md),
two at a time. Prints a markdown section (overall, per language, per phrasing style, per
tag) and with --json writes the full report, per-case candidates and errors included.
--quick: the first 3 cases of each language (checks that the script runs).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import REPO, add_model_option, default_model_dir, parser


def markdown(rep: dict, command: str, seconds: float) -> str:
    out = ["## Execution suite", "",
           f"`{command}`  ", f"model `{rep['system']}`, suite `{rep['suite']}`, "
           f"isolation: {rep['isolation']}, {seconds / 60:.1f} min", "",
           "| group | cases | answered % | pass@1 % | pass@5 % |", "|---|---:|---:|---:|---:|"]
    rows = [("all", rep)]
    for name in ("lang", "style", "lang_style", "tag"):
        rows += [(f"{name} {k}", v) for k, v in rep[f"by_{name}"].items()]
    for label, s in rows:
        out.append(f"| {label} | {s['cases']} | {s['answered']:.1f} | {s['pass@1']:.1f} | {s['pass@5']:.1f} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> dict:
    p = parser(__doc__.splitlines()[0])
    add_model_option(p)
    p.add_argument("--suite", type=Path, default=REPO / "benchmarks" / "exec")
    p.add_argument("--lang", choices=["python", "bash"])
    p.add_argument("--markdown", type=Path, help="also write the markdown section to this file")
    args = p.parse_args(argv)

    from nl2code.engine import Generator
    from nl2code.execsuite import load_suite, report, score

    folder = default_model_dir(args.model)
    if folder is None:
        print("## Execution suite\n\nskipped: no model\n")
        return {"skipped": "no model"}
    cases = load_suite(args.suite, args.lang)
    if args.quick:
        cases = [c for lang in ("python", "bash") for c in [c for c in cases if c.lang == lang][:3]]
    gen = Generator.from_checkpoint(folder)
    start = time.perf_counter()
    results = score(gen, cases)
    seconds = time.perf_counter() - start
    rep = report(results, str(args.suite), str(folder))
    command = "python -m benchmarks.exec_suite " + " ".join(sys.argv[1:] if argv is None else argv)
    text = markdown(rep, command.strip(), seconds)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        args.json.write_text(json.dumps(rep, indent=1))
    return rep


if __name__ == "__main__":
    main()
