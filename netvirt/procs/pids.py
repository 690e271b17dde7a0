"""Processes by identity, not by number: /proc facts and signals that never hit a reused pid.

A pid alone names a process only while that process exists; after it died the
number can belong to anyone. A process is named here by (pid, start time):
field 22 of ``/proc/PID/stat``, clock ticks after boot, fixed for its life
(an ``exec`` keeps it). :func:`signal_if` opens a pidfd first (it pins one
process, whatever happens to the number later), then checks that the pinned
process is the one meant, and only then signals *through the pidfd*: there is
no window in which a recycled pid could be hit.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """The fields of ``/proc/PID/stat`` netvirt uses."""

    pid: int
    state: str
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot


def parse_stat(text: str) -> Stat:
    """Parse a ``/proc/PID/stat`` line (the command name may hold spaces and parentheses)."""
    head, _, rest = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    f = rest.split()
    return Stat(pid=pid, state=f[0], ppid=int(f[1]), pgid=int(f[2]), sid=int(f[3]), start=int(f[19]))


def stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return parse_stat(f.read())
    except (OSError, ValueError, IndexError):
        return None


def start_time(pid: int) -> int | None:
    st = stat(pid)
    return st.start if st else None


def netns_inode(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def is_same(pid: int, start: int | None) -> bool:
    """Whether ``pid`` is still the process that started at ``start`` (and is not a zombie)."""
    st = stat(pid)
    return st is not None and st.state != "Z" and (start is None or st.start == start)


def all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def in_netns(ino: int) -> list[int]:
    """Every live process whose network namespace is the one with inode ``ino``."""
    me = os.getpid()
    return [p for p in all_pids() if p != me and netns_inode(p) == ino and is_same(p, None)]


def in_group(pgid: int) -> list[int]:
    """Every live process of process group ``pgid``."""
    out = []
    for p in all_pids():
        st = stat(p)
        if st is not None and st.pgid == pgid and st.state != "Z":
            out.append(p)
    return out


def signal_if(pid: int, sig: int, check: Callable[[int], bool]) -> bool:
    """Send ``sig`` to ``pid`` only if ``check(pid)`` holds for the process the pidfd pinned.

    Returns whether a signal was sent. A pid that is gone (or a zombie) is not an error.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        return False
    try:
        if not check(pid):  # asked after pinning: a reuse now would fail pidfd_send_signal
            return False
        try:
            signal.pidfd_send_signal(fd, sig)
        except ProcessLookupError:
            return False
        return True
    finally:
        os.close(fd)


def signal_process(pid: int, start: int | None, sig: int) -> bool:
    """Signal the process (pid, start time) if it is still that one."""
    return signal_if(pid, sig, lambda p: is_same(p, start))


def reap(pid: int) -> int | None:
    """waitpid(WNOHANG) for a child of ours: its exit code (negative: killed by a signal), or None."""
    with contextlib.suppress(ChildProcessError):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
    return None


__all__ = ["Stat", "all_pids", "in_group", "in_netns", "is_same", "netns_inode", "parse_stat",
           "reap", "signal_if", "signal_process", "start_time", "stat"]
