"""A sha256 over the answers for the CoNaLa dev intents: the identical-answers check.

For each of the first N records of conala-train.json (CoNaLa dev: 400) two lists go into the
hash: the top-5 answer `nl2code -n 5` gives (codes of the parsing candidates, best first, or
the NoParseableCandidate marker) and every scored candidate the engine considered (code,
parses, score rounded to 1e-6, the order as ranked). Run it before and after a refactor that
must not change behaviour; equal hashes mean equal answers.

    OMP_NUM_THREADS=1 python -m benchmarks.top5_hash [--conala PATH] [--first 400] [--model DIR]
        [--precision int8|float32|auto] [--dump FILE]

Works with the engine before and after it got its two verbs (generate_batch with flags, or
candidates/generate), so the same script measures both sides.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys


def _answers(gen, intent: str, lang: str) -> dict:
    from nl2code.errors import NoParseableCandidate

    if hasattr(gen, "candidates"):  # the two verbs
        every = gen.candidates(intent, lang).ranked[:20]
    else:  # the flags (main before issue 15)
        from nl2code.config import DecodeConfig

        cfg = DecodeConfig(strategy="beam", beam_size=5, n_best=5)
        every = gen.generate_batch([intent], lang, n=20, config=cfg, keep_unparsed=True, raise_empty=False)[0]
    try:
        top5 = [c.code for c in gen.generate(intent, lang, n=5)]
    except NoParseableCandidate:
        top5 = ["<no parseable candidate>"]
    return {"intent": intent, "top5": top5,
            "every": [[c.code, bool(c.parses), round(float(c.score), 6)] for c in every]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conala", default="/work/shared/data/conala/conala-train.json")
    ap.add_argument("--first", type=int, default=400)
    ap.add_argument("--model", default=None)
    ap.add_argument("--precision", default=None)
    ap.add_argument("--dump", default=None, help="also write the per-intent lists as JSON Lines")
    args = ap.parse_args(argv)

    from nl2code.engine import Generator
    from nl2code.evaluate import load_dataset

    gen = Generator.from_checkpoint(args.model, precision=args.precision)
    data = load_dataset(args.conala, "auto", args.first)
    top5_hash, every_hash = hashlib.sha256(), hashlib.sha256()
    dump = open(args.dump, "w", encoding="utf-8") if args.dump else None
    for ex in data:
        rec = _answers(gen, ex.intent, "python")
        top5_hash.update(json.dumps(rec["top5"], ensure_ascii=False).encode() + b"\n")
        every_hash.update(json.dumps(rec["every"], ensure_ascii=False).encode() + b"\n")
        if dump:
            dump.write(json.dumps(rec, ensure_ascii=False) + "\n")
    if dump:
        dump.close()
    print(json.dumps({"intents": len(data), "model": str(gen.path), "precision": gen.precision,
                      "top5_sha256": top5_hash.hexdigest(), "candidates_sha256": every_hash.hexdigest()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
