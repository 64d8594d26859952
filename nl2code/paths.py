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
    """NL2CODE_MODEL if set (a path, or the name of a user's model), else the bundled model."""
    return resolve_model(None)


def user_models_dir() -> Path:
    """Models the user made (`nl2code train --from-history`), selectable by name."""
    return home() / "models"


def resolve_model(model: str | Path | None) -> Path:
    """A model folder from a path, a name under user_models_dir(), or None (the default).

    A value that exists as a path is a path; a bare name (no separator) that is not a path
    names one of the user's models.
    """
    if model is None or str(model) == "":
        model = os.environ.get("NL2CODE_MODEL") or None
        if model is None:
            return DEFAULT_MODEL_DIR
    path = Path(model).expanduser()
    if not path.exists() and os.sep not in str(model) and (user_models_dir() / str(model)).is_dir():
        return user_models_dir() / str(model)
    return path
