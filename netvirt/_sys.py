"""Thin ctypes wrappers for the syscalls Python 3.11 lacks (setns, unshare, mount)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.linkat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000


def _check(ret: int, what: str, path: str | None = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    """Move the *calling thread* into the namespace behind ``fd``."""
    _check(_libc.setns(fd, nstype), "setns")


def unshare_net() -> None:
    """Give the *calling thread* a new, empty network namespace."""
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")


def mount(source: str, target: str, fstype: str | None, flags: int) -> None:
    _check(
        _libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags, None),
        "mount",
        target,
    )


def umount_detach(target: str) -> None:
    _check(_libc.umount2(target.encode(), MNT_DETACH), "umount2", target)


def link_fd(fd: int, target: str) -> None:
    """Give the open (O_TMPFILE) file ``fd`` the name ``target``: linkat(AT_EMPTY_PATH).

    FileExistsError if ``target`` exists. (Through ``/proc/self/fd/N`` the kernel
    may answer EXDEV on a bind-mounted directory; AT_EMPTY_PATH does not.)
    """
    if _libc.linkat(fd, b"", AT_FDCWD, target.encode(), AT_EMPTY_PATH) != 0:
        err = ctypes.get_errno()
        if err == 17:
            raise FileExistsError(err, os.strerror(err), target)
        raise OSError(err, f"linkat: {os.strerror(err)}", target)
