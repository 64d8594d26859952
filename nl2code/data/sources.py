"""Where mined pairs come from: recipe roots and the Python files under them.

A root is "stdlib", an installed package (resolved without importing it) or a folder.
The walk never follows symlinks, opens only regular files (O_NOFOLLOW, O_NONBLOCK), skips
test, hidden and cache folders, and reports every file it skips and why. Used by
nl2code/data/miners.py.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import platform
import stat
import sysconfig
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from nl2code.data.records import Report
from nl2code.errors import DataError

SKIP_DIRS = frozenset(
    {"test", "tests", "__pycache__", "site-packages", "dist-packages", "idle_test"}
)
MAX_FILE_BYTES = 1_000_000


# --------------------------------------------------------------------------- roots


def resolve_root(name: str) -> tuple[Path, str]:
    """A recipe root -> (path, version): "stdlib", an installed package, or a folder."""
    if name == "stdlib":
        return _stdlib_root()
    if name == "site-packages":
        return _site_packages_root()
    if all(part.isidentifier() for part in name.split(".")):
        found = _package_root(name)
        if found is not None:
            return found
    folder = Path(os.path.expanduser(name))
    if folder.is_dir() or (folder.is_file() and folder.suffix == ".py"):
        return folder.resolve(), "unversioned"
    raise DataError(
        f"mining root {name!r} not found: not a folder, 'stdlib', 'site-packages' or an installed package"
    )


def _site_packages_root() -> tuple[Path, str]:
    """The running environment's site-packages; its "version" lists every distribution."""
    import importlib.metadata as md

    path = Path(sysconfig.get_paths()["purelib"])
    if not path.is_dir():
        raise DataError(f"mining root 'site-packages': folder {path} is missing")
    dists = sorted({f"{d.metadata['Name']}=={d.version}" for d in md.distributions(path=[str(path)])
                    if d.metadata["Name"]}, key=str.lower)
    return path.resolve(), ", ".join(dists)


def _stdlib_root() -> tuple[Path, str]:
    path = Path(sysconfig.get_paths()["stdlib"])
    if not path.is_dir():
        raise DataError(f"mining root 'stdlib': standard library folder {path} is missing")
    return path.resolve(), platform.python_version()


def _package_root(name: str) -> tuple[Path, str] | None:
    """Locate an installed package without importing it; None when it is not installed."""
    top, _, rest = name.partition(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        base = Path(list(spec.submodule_search_locations)[0])
    elif spec.origin and spec.origin.endswith(".py"):
        base = Path(spec.origin)
    else:
        raise DataError(f"mining root {name!r} has no Python source (built-in or compiled)")
    path = base.joinpath(*rest.split(".")) if rest else base
    if rest and not path.is_dir():
        path = path.with_suffix(".py")
    if not path.exists():
        raise DataError(f"mining root {name!r} not found under {base}")
    return path.resolve(), _package_version(top, path)


def _package_version(top: str, path: Path) -> str:
    if _is_stdlib_path(path):
        return platform.python_version()
    try:
        return importlib.metadata.version(top)
    except importlib.metadata.PackageNotFoundError:
        pass
    for dist in _distributions_by_package().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


@lru_cache(maxsize=1)
def _distributions_by_package() -> dict[str, list[str]]:
    return dict(importlib.metadata.packages_distributions())


def _is_stdlib_path(path: Path) -> bool:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    inside = path == stdlib or stdlib in path.parents
    return inside and not ({"site-packages", "dist-packages"} & set(path.parts))


# --------------------------------------------------------------------------- files


def iter_python_files(
    root: Path, report: Report, max_bytes: int = MAX_FILE_BYTES
) -> Iterator[tuple[Path, str]]:
    """Yield (path, text) for each readable .py file under root, in sorted order.

    Symlinks (to folders or files) are never followed, only regular files are opened,
    test/hidden/cache folders are skipped, and files that are too large or not UTF-8 are
    reported and skipped.
    """
    root = Path(root)
    paths = [root] if root.is_file() else _walk_python_paths(root, report)
    for path in paths:
        text = _read_source(path, report, max_bytes)
        if text is not None:
            yield path, text


def _walk_python_paths(root: Path, report: Report) -> Iterator[Path]:
    def on_error(exc: OSError) -> None:
        report.drop("unreadable folder", str(exc.filename))

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if _wanted_dir(here / d))
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield here / name


def _wanted_dir(path: Path) -> bool:
    name = path.name
    return not (name.startswith(".") or name in SKIP_DIRS or path.is_symlink())


def _read_source(path: Path, report: Report, max_bytes: int) -> str | None:
    """The file's text, or None (reported) for symlinks, non-regular, huge or bad files."""
    where = str(path)
    try:
        info = os.lstat(path)
    except OSError:
        report.drop("unreadable file", where)
        return None
    reason = _unreadable_reason(info, max_bytes)
    if reason:
        report.drop(reason, where)
        return None
    data = _read_regular_file(path, max_bytes)
    if data is None:
        report.drop("unreadable file", where)
        return None
    if len(data) > max_bytes:
        report.drop("file too large", where)
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        report.drop("undecodable", where)
        return None
    if "\x00" in text:
        report.drop("binary file", where)
        return None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _unreadable_reason(info: os.stat_result, max_bytes: int) -> str | None:
    if stat.S_ISLNK(info.st_mode):
        return "symlink not followed"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if info.st_size > max_bytes:
        return "file too large"
    return None


def _read_regular_file(path: Path, max_bytes: int) -> bytes | None:
    """Read at most max_bytes + 1 bytes; refuse (None) anything that is not a regular file.

    O_NOFOLLOW and O_NONBLOCK make the open itself safe if the entry was swapped for a
    symlink or a FIFO after it was checked.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        return fh.read(max_bytes + 1)
