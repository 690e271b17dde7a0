"""Async packet I/O on a character-device fd (tun, tap, macvtap).

Theory of operation: the fd is non-blocking; readers wait with
``loop.add_reader`` and then drain up to ``batch`` packets with plain
``os.read`` until ``EAGAIN`` (one read per wake-up halves throughput, see
BASELINES.md section 5). Writes are a single ``os.write``: a tun/tap write never
blocks for long, and ``EIO`` (device down) or ``EAGAIN`` (queue full) drop
the packet and count it instead of raising, so a program survives a link
flap. Works the same on asyncio and uvloop: only ``add_reader`` is used.
"""

from __future__ import annotations

import asyncio
import errno
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Literal

from netvirt.wire.packets import VNET_HDR_LEN

__all__ = ["MAX_PACKET", "VNET_HDR_LEN", "Framing", "PacketPort", "PacketQueues"]

Framing = Literal["ip", "ether"]

#: Largest packet a read can return: 64 KiB GSO super-packet + vnet header.
MAX_PACKET = 65536 + 64


class PacketPort:
    """Packet reader/writer on one non-blocking fd (one queue of a device).

    ``framing`` is ``"ip"`` for a tun (IP packets), ``"ether"`` for tap and
    macvtap (Ethernet frames). When ``vnet_hdr`` is true each packet read or
    written starts with a 10-byte ``virtio_net_hdr``.
    """

    def __init__(self, fd: int, framing: Framing, *, vnet_hdr: bool = False, name: str = "") -> None:
        self._fd = fd
        self.framing: Framing = framing
        self.vnet_hdr = vnet_hdr
        self.name = name
        self._pending: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None  # a reader parked in wait_readable
        self.rx_packets = 0
        self.tx_packets = 0
        self.tx_dropped = 0
        #: All queues of the device, this one included (set by the device; empty if unknown).
        self.queues: list[PacketPort] = []

    # -- lifecycle -------------------------------------------------------
    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError(f"packet port {self.name!r} is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        """Close the fd. Safe to call twice. Call it on the event loop's thread.

        A reader parked in :meth:`wait_readable` is woken: an ``async for``
        over the port ends, a pending :meth:`read` raises ``OSError(EBADF)``.
        """
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.get_loop().remove_reader(fd)  # before the number can be reused
            waiter.set_result(None)
        os.close(fd)

    # -- reading ---------------------------------------------------------
    def read_nowait(self, batch: int = 64) -> list[bytes]:
        """Return up to ``batch`` packets that are ready now (maybe none)."""
        out: list[bytes] = []
        while self._pending and len(out) < batch:
            out.append(self._pending.popleft())
        fd = self._fd
        while len(out) < batch:
            try:
                out.append(os.read(fd, MAX_PACKET))
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    break
                raise
        self.rx_packets += len(out)
        return out

    async def wait_readable(self) -> None:
        """Wait until the fd has at least one packet to read."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        fd = self.fileno()

        def ready() -> None:
            if not fut.done():
                fut.set_result(None)

        loop.add_reader(fd, ready)
        self._waiter = fut
        try:
            await fut
        finally:
            if self._fd == fd:  # else close() removed the reader, and fd may be reused
                loop.remove_reader(fd)
                self._waiter = None

    async def read_batch(self, batch: int = 64) -> list[bytes]:
        """Wait for packets, then return every ready one (up to ``batch``)."""
        while True:
            pkts = self.read_nowait(batch)
            if pkts:
                return pkts
            await self.wait_readable()

    async def read(self) -> bytes:
        """Wait for and return one packet."""
        if not self._pending:
            pkts = await self.read_batch()
            self.rx_packets -= len(pkts)
            self._pending.extend(pkts)
        self.rx_packets += 1
        return self._pending.popleft()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[bytes]:
        while not self.closed:
            try:
                yield await self.read()
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    return
                raise

    # -- writing ---------------------------------------------------------
    def write_nowait(self, packet: bytes | bytearray | memoryview) -> bool:
        """Write one packet now. Returns False (and counts a drop) on EIO/EAGAIN."""
        try:
            os.write(self._fd, packet)
        except (BlockingIOError, InterruptedError):
            self.tx_dropped += 1
            return False
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EAGAIN, errno.ENOBUFS, errno.EINVAL):
                self.tx_dropped += 1
                return False
            raise
        self.tx_packets += 1
        return True

    async def write(self, packet: bytes | bytearray | memoryview) -> bool:
        """Write one packet (see :meth:`write_nowait`); async for API symmetry."""
        return self.write_nowait(packet)


class PacketQueues:
    """Packet I/O of a device through its open queues (tun, tap, macvtap).

    ``await dev.read()``, ``read_batch()``, ``write()``, ``write_nowait()`` and
    ``async for packet in dev`` act on the first queue; ``dev.queues`` holds
    them all (multi-queue tun/tap, extra macvtap opens).
    """

    name: str
    queues: list[PacketPort]

    def _close_queues(self) -> None:
        for q in self.queues:
            q.close()
        self.queues = []

    @property
    def port(self) -> PacketPort:
        if not self.queues:
            raise RuntimeError(f"{self.name}: no open queue (not created, closed, or persistent)")
        return self.queues[0]

    def fileno(self) -> int:
        return self.port.fileno()

    async def read(self) -> bytes:
        return await self.port.read()

    async def read_batch(self, batch: int = 64) -> list[bytes]:
        return await self.port.read_batch(batch)

    async def write(self, packet: bytes | bytearray | memoryview) -> bool:
        return self.port.write_nowait(packet)

    def write_nowait(self, packet: bytes | bytearray | memoryview) -> bool:
        return self.port.write_nowait(packet)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.port.__aiter__()
