"""The model card: what a model folder is, for `nl2code model info` and Generator.info().

model_card() reads a folder without loading its weights (the manifest is checked, so a
corrupted folder is refused); Generator.info() adds what only a loaded model knows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# meta keys a card shows when the model has them (written by train and `model package --meta`)
CARD_META = ("languages", "corpus", "corpus_size", "training_minutes", "step", "dev_bleu",
             "conala_dev", "nl2bash_dev")


def card(path: Path, cfg, meta: dict[str, Any], precision: str) -> dict[str, Any]:
    """The fields every card has: the folder, the architecture and sizes, the precision it
    runs at, the recorded metadata of CARD_META and the notes given to `model package`."""
    from nl2code.checkpoint import package_notes

    return {
        "path": str(path),
        "arch": cfg.arch,
        "d_model": cfg.d_model,
        "layers": [cfg.n_enc_layer, cfg.n_dec_layer],
        "vocab_size": cfg.vocab_size,
        "precision": precision,
        **{k: meta[k] for k in CARD_META if k in meta},
        "notes": package_notes(meta),  # what `model package --meta` recorded
    }


def model_card(model: str | Path | None = None, precision: str | None = None) -> dict[str, Any]:
    """The card of a model folder (None: NL2CODE_MODEL or the bundled model) without loading
    it: precision is what generation would run at (precision, else NL2CODE_PRECISION, else
    auto); size_bytes and sha256 come from the checked manifest."""
    from nl2code import checkpoint
    from nl2code.model import precision_for
    from nl2code.paths import resolve_model

    path = resolve_model(model)
    manifest = checkpoint.verify(path)
    cfg, meta = checkpoint.load_config(path)
    size = sum((Path(path) / f).stat().st_size for f in manifest["files"])
    return {**card(path, cfg, meta, precision_for(cfg.arch, precision)),
            "size_bytes": size, "sha256": manifest["files"]}
