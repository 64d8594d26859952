"""Retrieval-augmented input: the code of the nearest training pairs joins the encoder input.

    <lang> intent pieces  <lang> code of neighbour 1  <lang> code of neighbour 2 ...

A model whose config has `context_k > 0` was trained on such sources and gets them at
inference too (the engine retrieves before decoding). The neighbour's code is slot-adapted
to the intent (`sort `xs`` answered by a pair about `ys` shows `var_0.sort()`), exactly as
retrieved candidates are (nl2code.augment), so the model can copy and edit it.

Training corpora get their context once, offline:

    python -m nl2code.context --corpus runs/corpus-ft --index MODEL/index.sqlite --out runs/corpus-rag

A training pair never sees itself or a near-duplicate of itself (same code, or an intent or
code whose content words overlap by >= NEAR_DUP) as context: it must learn to edit a
neighbour, not to copy its own answer. Dev pairs are not in the index (the build's leak
guard), so they get the context a user would get.
"""

from __future__ import annotations

import dataclasses

from nl2code import slots
from nl2code.retrieval import similarity

NEAR_DUP = 0.8
STORE_K = 3  # neighbours stored per corpus pair (a model uses its first context_k)


def adapt(intent: str, slot_list: list, hit, lang: str) -> tuple[str, str]:
    """(code, slot-canonical code) of a retrieved pair, its values replaced by the intent's."""
    _, canon_r, slots_r = slots.canonicalize_pair(hit.intent, hit.code)
    if slots_r and len(slots_r) == len(slot_list):
        # the pair's values, in order, become the user's values
        renamed = [dataclasses.replace(mine, placeholder=theirs.placeholder)
                   for theirs, mine in zip(slots_r, slot_list)]
        code = slots.restore(canon_r, renamed, lang).strip("\n")
    else:
        code = hit.code.strip("\n")
    _, canon, _ = slots.canonicalize_pair(intent, code)
    return code, canon


def source_ids(tok, src_ids: list[int], context: list[str], lang: str, k: int, max_tokens: int,
               max_len: int) -> list[int]:
    """The encoder input: the intent's ids, then up to k context snippets, each behind the
    language tag and cut to max_tokens pieces; never longer than max_len."""
    ids = list(src_ids)
    tag = tok.lang_ids[lang]
    for code in context[:k]:
        ids += [tag] + tok.encode(code)[:max_tokens]
    return ids[:max_len]


def near_duplicate(hit, intent: str, code: str) -> bool:
    if hit.code.strip() == code.strip():
        return True
    return similarity(hit.intent, intent) >= NEAR_DUP or similarity(hit.code, code) >= NEAR_DUP


def neighbours(index, ex, k: int = STORE_K, exclude_self: bool = True) -> tuple[str, ...]:
    """Slot-canonical code of the k nearest pairs to a corpus example."""
    _, slot_list = slots.canonicalize(ex.intent)
    out = []
    for hit in index.search(ex.intent, ex.lang, k + 8 if exclude_self else k):
        if exclude_self and near_duplicate(hit, ex.intent, ex.code):
            continue
        canon = adapt(ex.intent, slot_list, hit, ex.lang)[1]
        if canon not in out:
            out.append(canon)
        if len(out) == k:
            break
    return tuple(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import json
    import shutil
    import sys
    from pathlib import Path

    from nl2code.data.records import read_jsonl
    from nl2code.retrieval import Index

    ap = argparse.ArgumentParser(prog="python -m nl2code.context", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", required=True, help="a corpus folder (train.jsonl, dev.jsonl, stats.json)")
    ap.add_argument("--index", required=True, help="the retrieval index (index.sqlite)")
    ap.add_argument("--out", required=True, help="the new corpus folder (written; must not exist)")
    ap.add_argument("-k", type=int, default=STORE_K)
    args = ap.parse_args(argv)
    src, out = Path(args.corpus), Path(args.out)
    if out.exists():
        print(f"nl2code: error: {out} exists", file=sys.stderr)
        return 2
    index = Index(args.index)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {}
    for name, exclude in (("train.jsonl", True), ("dev.jsonl", False)):
        examples = read_jsonl(src / name)
        with open(tmp / name, "w", encoding="utf-8") as fh:
            for i, ex in enumerate(examples):
                ctx = neighbours(index, ex, args.k, exclude)
                fh.write(dataclasses.replace(ex, context=ctx).to_json() + "\n")
                if i % 5000 == 0:
                    print(f"{name}: {i:,}/{len(examples):,}", file=sys.stderr, flush=True)
        counts[name] = len(examples)
    if (src / "stats.json").is_file():
        shutil.copy(src / "stats.json", tmp / "stats.json")
    (tmp / "context.json").write_text(json.dumps({"index": str(args.index), "k": args.k,
                                                  "near_dup": NEAR_DUP, "pairs": counts}, indent=1))
    tmp.replace(out)
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
