"""The shipped recipes and training configs: they load, name no machine's paths, and the tiny
pair (datasets/tiny.toml + datasets/train-tiny.toml) describes a small model and a time limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from nl2code.data.build import load_recipe
from nl2code.train import load_train_config

DATASETS = Path(__file__).resolve().parent.parent / "datasets"
TRAIN_CONFIGS = sorted(DATASETS.glob("train-*.toml"))


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_training_configs_load_and_use_no_absolute_paths(path):
    tcfg, _ = load_train_config(path)
    for key in ("corpus", "out", "init_from", "tokenizer"):
        value = getattr(tcfg, key)
        assert not Path(value).is_absolute() and "/work/" not in value, f"{path.name}: {key} = {value}"


def test_tiny_recipe_and_config():
    recipe = load_recipe(DATASETS / "tiny.toml")
    assert [s.name for s in recipe.sources] == ["conala", "nl2bash"]
    tcfg, mcfg = load_train_config(DATASETS / "train-tiny.toml")
    assert 0 < tcfg.max_minutes <= 3 and tcfg.corpus == "runs/corpus-tiny"
    assert mcfg.d_model <= 128 and mcfg.n_enc_layer <= 2


def test_readme_documents_the_tiny_recipe():
    readme = (DATASETS.parent / "README.md").read_text()
    assert "datasets/tiny.toml" in readme and "datasets/train-tiny.toml" in readme
