"""Linux namespace isolation for one execution-suite run (standard library only, best effort).

Loaded by nl2code/exec_driver.py in the child process, before the snippet runs. isolate()
puts the process in new user, mount, network and PID namespaces, makes every mount
read-only except the run's own folder, and locks the mounts; probe() tries all of it in a
throwaway process so the parent (nl2code.execrun.isolation) knows whether to ask for it.
Where the kernel or a container refuses (no unprivileged user namespaces, seccomp,
AppArmor), Refused says why and the runner falls back to the plain confinement.
"""

import ctypes
import os
import sys
from pathlib import Path

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
MS_OPTIONS = {"nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048,
              "relatime": 1 << 21, "strictatime": 1 << 24}
KEEP_WRITABLE = ("/proc", "/sys", "/dev/pts", "/dev/mqueue")


class Refused(Exception):
    pass


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
    return libc


def _call(ok: bool, what: str) -> None:
    if not ok:
        raise Refused(f"{what}: {os.strerror(ctypes.get_errno())}")


def _enter_user_ns(libc, flags: int) -> None:
    uid, gid = os.getuid(), os.getgid()
    _call(libc.unshare(CLONE_NEWUSER | flags) == 0, "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"0 {uid} 1"), ("gid_map", f"0 {gid} 1")):
        try:
            Path(f"/proc/self/{name}").write_text(text)
        except OSError as exc:
            raise Refused(f"{name}: {exc.strerror}") from None


def _mount(libc, src, target, fstype, flags) -> int:
    enc = lambda x: None if x is None else x.encode()
    return libc.mount(enc(src), enc(target), enc(fstype), flags, None)


def isolate(writable: list[str]) -> None:
    """New user, mount, network and PID namespaces; every mount read-only except `writable`.

    After this the process (as PID 1 of its own PID namespace, with a fresh /proc) sees no
    network, cannot signal processes outside, and cannot write outside `writable`. The mounts
    are then locked by entering one more user namespace, so the snippet cannot remount them.
    Raises Refused where the kernel or a container does not allow any step (a mount that
    cannot be made read-only included). The process may be half-isolated then: the runner
    probes first (probe) and ends a run whose isolation fails.
    """
    libc = _libc()
    _enter_user_ns(libc, CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)
    _call(_mount(libc, None, "/", None, MS_REC | MS_PRIVATE) == 0, "make mounts private")
    for path in writable:
        _call(_mount(libc, path, path, None, MS_BIND | MS_REC) == 0, f"bind {path}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4].encode().decode("unicode_escape")
        if point in writable or any(point == k or point.startswith(k + "/") for k in KEEP_WRITABLE):
            continue
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for opt in fields[5].split(","):
            flags |= MS_OPTIONS.get(opt, 0)
        _call(_mount(libc, None, point, None, flags) == 0, f"read-only {point}")
    pid = os.fork()  # the first child is PID 1 of the new namespace; when it ends, all of it ends
    if pid:
        _, status = os.waitpid(pid, 0)
        os._exit(max(os.waitstatus_to_exitcode(status), 0))
    _call(_mount(libc, "proc", "/proc", "proc", MS_OPTIONS["nosuid"] | MS_OPTIONS["nodev"]
                 | MS_OPTIONS["noexec"]) == 0, "mount /proc")
    _enter_user_ns(libc, CLONE_NEWNS)  # mounts copied into a less privileged namespace are locked
    os.chdir(os.getcwd())  # the working folder as seen through the writable bind mount


def probe(folder: str) -> int:
    """Try isolate() in this throwaway process: exit 0 if it works and holds, else say why."""
    try:
        os.chdir(folder)
        isolate([folder])
        Path("probe").write_text("ok")
        for outside in ("/", str(Path(folder).parent)):
            leak = Path(outside, f".nl2code-probe-{os.getpid()}")
            try:
                leak.write_text("x")
            except OSError:
                continue
            leak.unlink()
            raise Refused(f"{outside} is still writable")
    except (Refused, OSError) as exc:
        sys.stdout.write(f"{exc}\n")
        return 1
    return 0
