"""Where nl2code keeps things: NL2CODE_HOME, the data root, the bundled default model."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_MODEL_DIR = PACKAGE_DIR / "assets" / "default"


def home() -> Path:
    """NL2CODE_HOME, or ~/.cache/nl2code. Created on demand by callers that write."""
    env = os.environ.get("NL2CODE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "nl2code"


def data_root() -> Path:
    """NL2CODE_DATA, else ../shared/data next to the checkout when it exists, else ./data."""
    env = os.environ.get("NL2CODE_DATA")
    if env:
        return Path(env).expanduser()
    for base in (Path.cwd(), PACKAGE_DIR.parent):
        cand = base.parent / "shared" / "data"
        if cand.is_dir():
            return cand
    return Path.cwd() / "data"


def default_model_path() -> Path:
    """NL2CODE_MODEL if set, else the model shipped inside the package."""
    env = os.environ.get("NL2CODE_MODEL")
    return Path(env).expanduser() if env else DEFAULT_MODEL_DIR
