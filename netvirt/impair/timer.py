"""A precise one-shot timer on an fd: ``timerfd`` with absolute CLOCK_MONOTONIC deadlines.

Theory of operation: asyncio's and libuv's timers are millisecond-grained
and may fire early (cpython #127859, libuv #4773), so the datapath arms a
``timerfd`` (Python 3.11 has no ``os.timerfd_*``: ctypes) for the earliest
time to send, as an absolute ``CLOCK_MONOTONIC`` time (``time.monotonic_ns()``
reads the same clock), and waits for it in the same ``epoll`` as the packet
fds. An hrtimer behind a timerfd has no timer slack, so it fires within
microseconds of the deadline; one wake-up then releases everything due.
Disarmed (deadline None), the fd never becomes readable: no polling at rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

__all__ = ["MonotonicTimer"]

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = os.O_CLOEXEC
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec),
                                  ctypes.c_void_p]


class MonotonicTimer:
    """A timerfd armed at absolute CLOCK_MONOTONIC times (ns)."""

    def __init__(self) -> None:
        fd = _libc.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_create: {os.strerror(err)}")
        self.fd: int = fd
        self.deadline: int | None = None
        self._spec = _Itimerspec()
        self._ref = ctypes.byref(self._spec)

    def fileno(self) -> int:
        return self.fd

    def arm(self, deadline: int | None) -> None:
        """Fire at ``deadline`` (ns on CLOCK_MONOTONIC); None disarms. No-op if unchanged."""
        if deadline == self.deadline:
            return
        self.deadline = deadline
        value = self._spec.it_value
        if deadline is None:
            value.tv_sec = value.tv_nsec = 0
        else:  # a deadline in the past: fire at once (0 would disarm)
            sec, nsec = divmod(max(deadline, 1), 1_000_000_000)
            value.tv_sec, value.tv_nsec = sec, nsec
        if _libc.timerfd_settime(self.fd, _TFD_TIMER_ABSTIME, self._ref, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"timerfd_settime: {os.strerror(err)}")

    def clear(self) -> None:
        """Consume an expiry (after the fd was readable) and forget the deadline."""
        with contextlib.suppress(BlockingIOError):
            os.read(self.fd, 8)
        self.deadline = None

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)
