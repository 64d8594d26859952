"""File access that a hostile folder cannot turn against us.

- Reads open only regular files, never through a symbolic link at the last path component
  (O_NOFOLLOW), never blocking on a FIFO (O_NONBLOCK, then fstat), and read at most a
  stated number of bytes: a model folder whose manifest is a link to /dev/stdin or
  /dev/zero, or a FIFO, is an error instead of a hang or a MemoryError.
- Writes create files without following links: a link planted where an output file or its
  temporary file goes is refused (or, for our own temporary names, removed), never
  written through.
- A run folder is locked with flock(2); the second process gets an error naming the holder.

Every failure is an OSError-free, one-line exception of the type the caller asks for.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, error=OSError) -> int:
    """A read-only fd of the regular file at path (not a link, FIFO, device or folder)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _NONBLOCK | _CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path} not found") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{path} is a symbolic link: refusing to follow it") from None
        raise error(f"cannot read {path}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"cannot read {path}: {_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: str | Path, limit: int, error=OSError, what: str = "file") -> bytes:
    """The bytes of a regular file of at most limit bytes (else error, before reading it)."""
    fd = open_regular(path, error)
    with os.fdopen(fd, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size > limit:
            raise error(f"{path}: {what} too large ({size:,} bytes; the limit is {limit:,})")
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew while we read it
        raise error(f"{path}: {what} too large (over {limit:,} bytes)")
    return data


def read_text(path: str | Path, limit: int, error=OSError, what: str = "file") -> str:
    data = read_bounded(path, limit, error, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 (bad byte at offset {exc.start})") from None



def create_new(path: str | Path, error=OSError, replace_temp: bool = False):
    """A new file opened for writing (binary), never through a link.

    replace_temp: path is our own temporary name; whatever is there (a leftover file or a
    planted link) is removed first, without following it.
    """
    path = Path(path)
    if replace_temp:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except IsADirectoryError:
            raise error(f"{path} is a folder: remove it") from None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except FileExistsError:
        raise error(f"{path} already exists") from None
    return os.fdopen(fd, "wb")


def write_atomic(path: str | Path, data: bytes, error=OSError) -> None:
    """Write data to path through a fresh temporary sibling and a rename.

    rename(2) replaces a link at path instead of following it, so nothing outside the
    folder is ever written.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp"
    with create_new(tmp, error, replace_temp=True) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def append_line(path: str | Path, text: str, error=OSError) -> None:
    """Append one line to a log file, never through a symbolic link."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | _NOFOLLOW | _CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(f"{path} is a symbolic link: refusing to write through it") from None
        raise
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise error(f"{path} is not a regular file: refusing to write to it")
        fh.write(text.rstrip("\n") + "\n")


class FolderLock:
    """An exclusive flock(2) on FOLDER/.lock, released when the process ends or release().

    The lock file holds "pid host time" of the holder, so the second process can say who
    holds it. The kernel drops the lock when the holder dies, so a crash never leaves a
    stale lock behind.
    """

    NAME = ".lock"

    def __init__(self, folder: str | Path, error=OSError):
        self.path = Path(folder) / self.NAME
        for _ in range(10):  # the holder removes the file when it ends: lock the file that is there
            fd = self._try_lock(folder, error)
            if fd is not None:
                break
        else:
            raise error(f"cannot lock {self.path}: it keeps being replaced")
        os.ftruncate(fd, 0)
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {when}\n".encode(), 0)
        self._fd: int | None = fd

    def _try_lock(self, folder, error) -> int | None:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise error(f"{self.path} is a symbolic link: refusing to use it as a lock") from None
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "unknown process"
            os.close(fd)
            raise error(f"{folder} is in use by another training run ({holder}); "
                        f"wait for it to end or use another --out") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the previous holder removed it between our open and our lock
            os.close(fd)
            return None
        return fd

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.unlink(self.path)  # while still held: a waiter re-checks the inode
            except OSError:
                pass
            os.close(self._fd)  # closing the last fd drops the flock
            self._fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
