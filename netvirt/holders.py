"""Who keeps a network namespace alive after its name is gone.

Theory of operation: removing ``/run/netns/NAME`` (unmount + unlink) only drops
one reference. The namespace, and every device in it, lives on while any of
these hold it: a process living in it (``/proc/PID/ns/net``), an fd opened on
it (``/proc/PID/fd/N -> net:[INODE]``), or an fd on a tun/tap device inside it
(qemu holding a persistent tap: ``/proc/PID/fd/N -> /dev/net/tun``; which
namespace that device is in is asked of the fd itself, through a copy taken
with ``pidfd_getfd(2)`` and ``TUNGETDEVNETNS``). Sockets opened inside it hold
it too but cannot be told apart from the outside; they are rare in the
programs a lab is used with and are not searched for.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import time
from dataclasses import dataclass

_SYS_PIDFD_GETFD = 438
_TUNGETDEVNETNS = 0x54E3
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Holder:
    pid: int
    start: int | None  # /proc/PID/stat field 22: tells a reused pid apart
    comm: str
    how: str  # "lives in it", "holds an fd on it", "holds tap0" ...

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.comm}) {self.how}"


def _start(pid: int) -> int | None:
    """Start time of a live (not zombie) process, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return None if fields[0] in ("Z", "X") else int(fields[19])
    except (OSError, ValueError, IndexError):
        return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _tun_netns_ino(pid: int, fd: int) -> int | None:
    """The inode of the namespace of the tun/tap device behind another process's fd."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        copy = _libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0)
        if copy < 0:
            return None
        try:
            nsfd = fcntl.ioctl(copy, _TUNGETDEVNETNS)
        except OSError:
            return None
        finally:
            os.close(copy)
        try:
            return os.fstat(nsfd).st_ino
        finally:
            os.close(nsfd)
    finally:
        os.close(pidfd)


def _tun_name(pid: int, fd: str) -> str:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("iff:"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "a tun/tap"


def holders(inodes: set[int]) -> dict[int, list[Holder]]:
    """Every process that holds one of these namespaces (by inode), per inode."""
    found: dict[int, list[Holder]] = {}
    if not inodes:
        return found
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        with contextlib.suppress(OSError):
            ino = os.stat(f"/proc/{pid}/ns/net").st_ino
            if ino in inodes:
                found.setdefault(ino, []).append(Holder(pid, _start(pid), _comm(pid), "lives in it"))
                continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("net:["):
                ino = int(target[5:-1])
                if ino in inodes:
                    found.setdefault(ino, []).append(Holder(pid, _start(pid), _comm(pid), "holds an fd on it"))
                    break
            elif target == "/dev/net/tun" or target.startswith("/dev/tap"):
                ino2 = _tun_netns_ino(pid, int(fd))
                if ino2 in inodes:
                    assert ino2 is not None
                    found.setdefault(ino2, []).append(
                        Holder(pid, _start(pid), _comm(pid), f"holds {_tun_name(pid, fd)}"))
                    break
    return found


def kill_holders(found: list[Holder], timeout: float = 5.0) -> list[Holder]:
    """SIGTERM, then SIGKILL, each holder that is still the recorded process; those left."""
    def alive(h: Holder) -> bool:
        return _start(h.pid) == h.start and h.start is not None

    for h in found:
        if alive(h):
            with contextlib.suppress(ProcessLookupError):
                os.kill(h.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(h) for h in found):
        time.sleep(0.02)
    for h in found:
        if alive(h):
            with contextlib.suppress(ProcessLookupError):
                os.kill(h.pid, signal.SIGKILL)
    time.sleep(0.05)
    return [h for h in found if alive(h)]


__all__ = ["Holder", "holders", "kill_holders"]
