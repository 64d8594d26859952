"""The identical-answers guard of the latency work: top5_hash over three intent sets.

benchmarks/top5_hash.py hashes the CoNaLa dev answers (Python). A speed change must keep
the answers of the other front doors too, so this hashes, per set, the same two lists
(`nl2code -n 5`'s top 5, and every scored candidate with its score rounded to 1e-6):

- conala: the first 400 records of conala-train.json, lang python
- nl2bash: NL2Bash dev (split/dev.nl), lang bash
- exec: the execution suite's intents (benchmarks/exec), each in its own language

    OMP_NUM_THREADS=1 python -m benchmarks.latency_guard [--sets conala,nl2bash,exec]
        [--first N] [--model DIR] [--dump FILE]

Equal hashes before and after a change mean equal answers. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

CONALA = "/work/shared/data/conala/conala-train.json"
NL2BASH = "/work/shared/data/nl2bash/split/dev.nl"
EXEC = "benchmarks/exec"


def intent_sets(names: list[str], first: int = 0, conala: str = CONALA, nl2bash: str = NL2BASH,
                exec_suite: str = EXEC) -> dict[str, list[tuple[str, str]]]:
    """{set name: [(intent, lang)]} in a fixed order; first > 0: only the first N of each."""
    from nl2code.evaluate import load_dataset

    out: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        if name == "conala":
            out[name] = [(ex.intent, "python") for ex in load_dataset(conala, "auto", 400)]
        elif name == "nl2bash":
            out[name] = [(ex.intent, "bash") for ex in load_dataset(nl2bash, "auto")]
        elif name == "exec":
            from nl2code.execsuite import load_suite

            out[name] = [(c.intent, c.lang) for c in load_suite(exec_suite)]
        else:
            raise SystemExit(f"unknown set {name!r}: use conala, nl2bash, exec")
        if first > 0:
            out[name] = out[name][:first]
    return out


def main(argv: list[str] | None = None) -> int:
    from benchmarks.top5_hash import _answers
    from nl2code.engine import Generator

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="conala,nl2bash,exec")
    ap.add_argument("--first", type=int, default=0, help="only the first N intents of each set (0: all)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--dump", default=None, help="also write the per-intent lists as JSON Lines")
    args = ap.parse_args(argv)
    sets = intent_sets(args.sets.split(","), args.first)
    gen = Generator.from_checkpoint(args.model)
    result: dict = {"model": str(gen.path), "precision": gen.precision}
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    for name, items in sets.items():
        top5, every = hashlib.sha256(), hashlib.sha256()
        for intent, lang in items:
            rec = _answers(gen, intent, lang)
            top5.update(json.dumps(rec["top5"], ensure_ascii=False).encode() + b"\n")
            every.update(json.dumps(rec["every"], ensure_ascii=False).encode() + b"\n")
            if dump:
                dump.write(json.dumps({"set": name, "lang": lang, **rec}, ensure_ascii=False) + "\n")
        result[name] = {"intents": len(items), "top5_sha256": top5.hexdigest(),
                        "candidates_sha256": every.hexdigest()}
    if dump:
        dump.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
