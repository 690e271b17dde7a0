"""The userspace datapath of an impaired link: one thread, two tap fds, one timer.

Theory of operation. An impaired link is a pair of taps (one in each
node, with the names, addresses and MTU the link's veth ends would have
had), opened with IFF_VNET_HDR and TSO/CSUM offload, so the kernel hands
out and takes whole GSO super-packets of up to 64 KiB. A thread of its own
(not the event loop: a busy loop must not delay a packet) waits in one
``epoll`` on the two tap fds, a :class:`MonotonicTimer` and an ``eventfd``
for control. Each wake-up reads every ready frame (up to a batch per fd),
hands it with the arrival time to the :class:`Direction` of that end (or
writes it straight to the other tap when the direction has no conditions
and nothing queued), then releases everything due, writes it to the other
tap, and arms the timer for the next time to send. With nothing queued and
no traffic it sleeps in ``epoll_wait`` without a timeout: no polling.

Control (conditions, carrier, stats) runs on the caller's thread under the
datapath's lock, then wakes the thread through the eventfd so it re-arms
its timer. Carrier: ``TUNSETCARRIER`` on both tap fds pulls the carrier of
both ends, as a cable pull does (the devices stay administratively up, so
addresses and routes survive; a veth cannot do this, ``IFLA_CARRIER`` is
not supported on veth). While down, what arrives and what was queued is
dropped and counted.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .conditions import Conditions
from .engine import Direction
from .frames import TapFrames
from .timer import MonotonicTimer

__all__ = ["TUNSETCARRIER", "Datapath"]

T = TypeVar("T")

TUNSETCARRIER = 0x400454E2
_BATCH = 16
_MAX_FRAME = 65536 + 64


def set_carrier(fd: int, on: bool) -> None:
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))


class Datapath:
    """Forwarding between two tap fds through two :class:`Direction` engines.

    ``directions[0]`` is what leaves end 0 (read from ``fds[0]``, written to
    ``fds[1]``); ``directions[1]`` the other way. The fds stay the caller's.
    """

    def __init__(self, fds: tuple[int, int], conditions: tuple[Conditions | None, Conditions | None],
                 *, name: str = "impair") -> None:
        now = time.monotonic_ns()
        frames = TapFrames()
        self.fds = fds
        self.name = name
        self.directions = (Direction(conditions[0], now=now, frames=frames),
                           Direction(conditions[1], now=now, frames=frames))
        self.write_errors = [0, 0]
        self.carrier = True
        self.wakeups = 0
        self._lock = threading.Lock()
        self._timer: MonotonicTimer | None = None
        self._wake_fd = -1
        self._stop = False
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        self._timer = MonotonicTimer()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._thread = threading.Thread(target=self._run, name=f"netvirt-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close its timer and eventfd (the tap fds stay open). Safe twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            self._wake()
            thread.join()
        if self._timer is not None:
            self._timer.close()
            self._timer = None
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    # -- control (any thread) --------------------------------------------------
    def control(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` under the datapath's lock, then let the thread re-arm its timer."""
        with self._lock:
            result = fn()
        self._wake()
        return result

    def configure(self, side: int, conditions: Conditions | None) -> None:
        self.control(lambda: self.directions[side].configure(conditions, time.monotonic_ns()))

    def set_carrier(self, on: bool) -> None:
        def do() -> None:
            for fd in self.fds:
                set_carrier(fd, on)
            self.carrier = on
            if not on:
                for d in self.directions:
                    d.flush()

        self.control(do)

    def stats(self, side: int) -> dict[str, Any]:
        with self._lock:
            out = self.directions[side].stats()
        out["dropped_write"] = self.write_errors[side]
        return out

    def _wake(self) -> None:
        if self._wake_fd >= 0:
            os.eventfd_write(self._wake_fd, 1)

    # -- the thread --------------------------------------------------------------
    def _run(self) -> None:
        timer = self._timer
        assert timer is not None
        fd0, fd1 = self.fds
        ep = select.epoll()
        try:
            for fd in (fd0, fd1, timer.fd, self._wake_fd):
                ep.register(fd, select.EPOLLIN)
            while not self._stop:
                events = ep.poll()
                self.wakeups += 1
                with self._lock:
                    now = time.monotonic_ns()
                    self._release(now, timer, arm=False)  # what is due goes first
                    for fd, _ev in events:
                        if fd == fd0:
                            self._pump(0, now)
                        elif fd == fd1:
                            self._pump(1, now)
                        elif fd == timer.fd:
                            timer.clear()
                        else:
                            with contextlib.suppress(BlockingIOError):
                                os.eventfd_read(self._wake_fd)
                    self._release(now, timer)
        except Exception as exc:  # pragma: no cover - a bug: say so, never die silently
            os.write(2, f"netvirt: datapath {self.name} stopped: {exc!r}\n".encode())
            raise
        finally:
            ep.close()

    def _pump(self, side: int, now: int) -> None:
        src, dst = self.fds[side], self.fds[1 - side]
        d = self.directions[side]
        for _ in range(_BATCH):
            try:
                pkt = os.read(src, _MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EIO, errno.EBADF):
                    return
                raise
            if not self.carrier:
                d.counters.received += 1
                d.counters.dropped_down += 1
            elif d.passthrough:
                d.note_passthrough(1, d.frames.wire_len(pkt))
                self._write(dst, side, pkt)
            else:
                d.enqueue(now, pkt)

    def _write(self, fd: int, side: int, pkt: bytes) -> None:
        try:
            os.write(fd, pkt)
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN, errno.ENOBUFS, errno.EINVAL, errno.EBADF):
                raise
            self.write_errors[side] += 1

    def _release(self, now: int, timer: MonotonicTimer, *, arm: bool = True) -> None:
        d0, d1 = self.directions
        fd0, fd1 = self.fds
        while True:
            for pkt in d0.release(now):
                self._write(fd1, 0, pkt)
            for pkt in d1.release(now):
                self._write(fd0, 1, pkt)
            if not arm:
                return
            n0, n1 = d0.next_deadline(), d1.next_deadline()
            nxt = n0 if n1 is None else n1 if n0 is None else min(n0, n1)
            if nxt is None:
                timer.arm(None)
                return
            now = time.monotonic_ns()
            if nxt > now:
                timer.arm(nxt)
                return
