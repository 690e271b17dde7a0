"""The userspace datapath of an impaired link: a worker process, two tap fds, one timer.

Theory of operation. An impaired link is a pair of taps (one in each node,
named and addressed as the link's veth ends would have been), opened with
IFF_VNET_HDR and TSO/CSUM offload, so the kernel hands out and takes whole
GSO super-packets of up to 64 KiB. The forwarding runs in a small worker
process of its own (``python -m netvirt.impair._worker``, started with the
two tap fds and one end of a control socketpair): not on the event loop,
where any callback would delay a packet, and not in a thread, where the
GIL would (a thread waiting for the GIL waits up to the 5 ms switch
interval); a process also gets the second core.

The worker waits in one ``epoll`` on the two tap fds, a
:class:`MonotonicTimer` and the control socket. Each wake-up first releases
what is due, then reads every ready frame (up to a batch per fd), hands it
with its arrival time to the :class:`Direction` of that end (or writes it
straight to the other tap when that direction has no conditions and nothing
queued), releases everything due, writes it to the other tap and arms the
timer for the next time to send. With nothing queued and no traffic it
sleeps in ``epoll_wait`` without a timeout: no polling at rest.

Control (conditions, carrier, stats) is a JSON request per datagram on the
SOCK_SEQPACKET control socket, answered in order. The worker asks the kernel
to kill it when its parent dies (``PR_SET_PDEATHSIG``) and exits when the
control socket closes; the taps are not persistent, so they vanish with the
last of the two processes' fds. Carrier: ``TUNSETCARRIER`` on both tap fds
pulls the carrier of both ends, as a cable pull does (the devices stay
administratively up, so addresses and routes survive; a veth cannot do this,
``IFLA_CARRIER`` is not supported on veth). While down, what arrives and
what was queued is dropped and counted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import struct
import time
from dataclasses import asdict
from typing import Any

from .conditions import Conditions, Loss
from .engine import Direction
from .frames import TapFrames
from .timer import MonotonicTimer

__all__ = ["TUNSETCARRIER", "Datapath", "conditions_from_wire", "conditions_to_wire", "set_carrier"]

TUNSETCARRIER = 0x400454E2
_BATCH = 16
_MAX_FRAME = 65536 + 64
_MAX_MSG = 1 << 20
#: the timer is armed this much before a time to send at most (its measured wake-up latency)
_MAX_LEAD = 150_000


def set_carrier(fd: int, on: bool) -> None:
    fcntl.ioctl(fd, TUNSETCARRIER, struct.pack("i", 1 if on else 0))


def conditions_to_wire(cond: Conditions | None) -> dict[str, Any] | None:
    return None if cond is None else asdict(cond)


def conditions_from_wire(raw: dict[str, Any] | None) -> Conditions | None:
    if raw is None:
        return None
    loss = Loss(**raw["loss"]) if raw.get("loss") else None
    return Conditions(**{**raw, "loss": loss, "trace": tuple(raw.get("trace", ()))})


class Datapath:
    """Forwarding between two tap fds through two :class:`Direction` engines (one thread).

    ``directions[0]`` is what leaves end 0 (read from ``fds[0]``, written to
    ``fds[1]``); ``directions[1]`` the other way.
    """

    def __init__(self, fds: tuple[int, int],
                 conditions: tuple[Conditions | None, Conditions | None] = (None, None)) -> None:
        now = time.monotonic_ns()
        frames = TapFrames()
        self.fds = fds
        self.directions = (Direction(conditions[0], now=now, frames=frames),
                           Direction(conditions[1], now=now, frames=frames))
        self.write_errors = [0, 0]
        self.carrier = True
        self.wakeups = 0
        self.timer = MonotonicTimer()
        self.lead = 0  # ns: EWMA of how late the timer's wake-ups reach us
        self.policy = "other"  # the process's scheduling policy (the worker sets it)

    # -- control ------------------------------------------------------------------
    def handle(self, req: dict[str, Any]) -> Any:
        op = req.get("op")
        if op == "configure":
            self.directions[req["side"]].configure(conditions_from_wire(req["conditions"]),
                                                   time.monotonic_ns())
            return None
        if op == "carrier":
            on = bool(req["on"])
            for fd in self.fds:
                set_carrier(fd, on)
            self.carrier = on
            if not on:
                for d in self.directions:
                    d.flush()
            return None
        if op == "stats":
            out = []
            for side, d in enumerate(self.directions):
                st = d.stats()
                st["dropped_write"] = self.write_errors[side]
                out.append(st)
            return {"directions": out, "carrier": self.carrier, "wakeups": self.wakeups,
                    "timer_lead_us": self.lead / 1000, "scheduling": self.policy,
                    "pid": os.getpid()}
        if op == "ping":
            return "pong"
        raise ValueError(f"unknown request {op!r}")

    # -- the loop --------------------------------------------------------------------
    def serve(self, ctl: int) -> None:
        """Forward until the control socket closes or asks to stop."""
        timer = self.timer
        fd0, fd1 = self.fds
        ep = select.epoll()
        try:
            for fd in (fd0, fd1, timer.fd, ctl):
                ep.register(fd, select.EPOLLIN)
            while True:
                events = ep.poll()
                self.wakeups += 1
                now = time.monotonic_ns()
                self._release(now, arm=False)  # what is due goes first
                for fd, _ev in events:
                    if fd == fd0:
                        self._pump(0, now)
                    elif fd == fd1:
                        self._pump(1, now)
                    elif fd == timer.fd:
                        if timer.deadline is not None:
                            late = min(max(now - timer.deadline, 0), _MAX_LEAD)
                            self.lead += (late - self.lead) >> 3
                        timer.clear()
                    elif not self._control(ctl):
                        return
                self._release(now)
        finally:
            ep.close()
            timer.close()

    def _control(self, ctl: int) -> bool:
        try:
            data = os.read(ctl, _MAX_MSG)
        except BlockingIOError:
            return True
        if not data:
            return False
        req = json.loads(data)
        if req.get("op") == "stop":
            os.write(ctl, b'{"ok": true}')
            return False
        try:
            reply: dict[str, Any] = {"ok": True, "result": self.handle(req)}
        except Exception as exc:  # a bad request: answer it, keep forwarding
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        os.write(ctl, json.dumps(reply).encode())
        return True

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

    def _release(self, now: int, *, arm: bool = True) -> None:
        d0, d1 = self.directions
        fd0, fd1 = self.fds
        lead = self.lead
        while True:
            for pkt in d0.release(now, lead):
                self._write(fd1, 0, pkt)
            for pkt in d1.release(now, lead):
                self._write(fd0, 1, pkt)
            if not arm:
                return
            n0, n1 = d0.next_deadline(), d1.next_deadline()
            nxt = n0 if n1 is None else n1 if n0 is None else min(n0, n1)
            if nxt is None:
                self.timer.arm(None)
                return
            now = time.monotonic_ns()
            if nxt > now + lead:
                self.timer.arm(nxt - lead)
                return
