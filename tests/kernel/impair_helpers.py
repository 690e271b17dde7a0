"""Witnesses for impaired links (this module holds no tests): UDP probes and TCP transfers
between two namespaces, timed with CLOCK_MONOTONIC in this process, so one-way delays,
counts, order and bytes are observed on real traffic."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from netvirt._aio import readable
from netvirt.impair import Conditions, End, ImpairedLink
from netvirt.netns import Namespace
from tests.conftest import unique

A_IP, B_IP = "10.231.0.1", "10.231.0.2"
_HDR = struct.Struct("!IQ")
SO_TIMESTAMPNS = 35


@dataclass
class Pair:
    a: Namespace
    b: Namespace
    link: ImpairedLink


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """Two fresh namespaces joined by an (at first unimpaired) link, a:eth0 -- b:eth0."""
    a = await Namespace.create(unique())
    b = await Namespace.create(unique())
    link = ImpairedLink(End(a, "eth0", [f"{A_IP}/24"], label="a:eth0", ipv6_linklocal=False),
                        End(b, "eth0", [f"{B_IP}/24"], label="b:eth0", ipv6_linklocal=False))
    try:
        await link.create()
        await warm_up(a, b)
        yield Pair(a, b, link)
    finally:
        await link.aclose()
        await b.close()
        await a.close()


async def udp_pair(a: Namespace, b: Namespace, port: int = 7000) -> tuple[socket.socket, socket.socket]:
    rx = await b.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind((B_IP, port))
    rx.setblocking(False)
    tx = await a.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.setblocking(False)
    tx.connect((B_IP, port))
    return tx, rx


async def warm_up(a: Namespace, b: Namespace) -> None:
    """One datagram each way, so both neighbour tables are filled before conditions apply."""
    tx, rx = await udp_pair(a, b, 6999)
    back = await b.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        loop = asyncio.get_running_loop()
        tx.send(b"hello")
        await asyncio.wait_for(loop.sock_recv(rx, 100), 3)
        back.sendto(b"hello", (A_IP, 6999))
        await asyncio.sleep(0.05)
    finally:
        for s in (tx, rx, back):
            s.close()


@dataclass
class Probes:
    sent: int = 0
    #: (seq, sent ns, received ns): CLOCK_REALTIME, the receive time from the kernel (SO_TIMESTAMPNS)
    got: list[tuple[int, int, int]] = field(default_factory=list)
    payloads: list[bytes] = field(default_factory=list)

    @property
    def seqs(self) -> list[int]:
        return [s for s, _t, _r in self.got]

    @property
    def delays_ms(self) -> list[float]:
        return [(r - t) / 1e6 for _s, t, r in self.got]


async def probe(a: Namespace, b: Namespace, count: int, *, interval: float = 0.0, size: int = 64,
                settle: float = 0.3, port: int = 7000) -> Probes:
    """Send ``count`` datagrams a -> b (``interval`` apart, 0: a burst), collect what arrives."""
    tx, rx = await udp_pair(a, b, port)
    loop = asyncio.get_running_loop()
    res = Probes()
    pad = bytes(max(0, size - _HDR.size))

    rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)  # the kernel's receive time

    async def receive() -> None:
        while True:
            await readable(loop, rx)
            while True:
                try:
                    data, anc, _flags, _addr = rx.recvmsg(65536, 64)
                except (BlockingIOError, InterruptedError):
                    break
                now = time.time_ns()
                for level, kind, value in anc:
                    if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                        sec, nsec = struct.unpack("qq", value[:16])
                        now = sec * 10**9 + nsec
                seq, t = _HDR.unpack_from(data)
                res.got.append((seq, t, now))
                res.payloads.append(data)

    task = asyncio.create_task(receive())
    try:
        for i in range(count):
            try:
                tx.send(_HDR.pack(i, time.time_ns()) + pad)
            except BlockingIOError:
                await asyncio.sleep(0.001)
                tx.send(_HDR.pack(i, time.time_ns()) + pad)
            res.sent += 1
            if interval:
                await asyncio.sleep(interval)
            elif i % 32 == 31:
                await asyncio.sleep(0)
        await asyncio.sleep(settle)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        tx.close()
        rx.close()
    return res


async def tcp_transfer(a: Namespace, b: Namespace, nbytes: int, *, port: int = 7100,
                       timeout: float = 30) -> tuple[float, bool]:
    """Send ``nbytes`` a -> b over TCP; return (seconds, received intact)."""
    loop = asyncio.get_running_loop()
    lsock = await b.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((B_IP, port))
    lsock.listen(1)
    lsock.setblocking(False)
    csock = await a.socket(socket.AF_INET, socket.SOCK_STREAM)
    csock.setblocking(False)
    data = os.urandom(1 << 20) * (nbytes // (1 << 20)) + os.urandom(nbytes % (1 << 20))
    want = hashlib.sha256(data).digest()

    async def serve() -> bytes:
        conn, _ = await loop.sock_accept(lsock)
        h = hashlib.sha256()
        n = 0
        with conn:
            conn.setblocking(False)
            while n < nbytes:
                chunk = await loop.sock_recv(conn, 1 << 20)
                if not chunk:
                    break
                n += len(chunk)
                h.update(chunk)
        return h.digest()

    try:
        server = asyncio.create_task(serve())
        await asyncio.wait_for(loop.sock_connect(csock, (B_IP, port)), 5)
        t0 = time.monotonic()
        await asyncio.wait_for(loop.sock_sendall(csock, data), timeout)
        got = await asyncio.wait_for(server, timeout)
        return time.monotonic() - t0, got == want
    finally:
        csock.close()
        lsock.close()


async def apply(link: ImpairedLink, side: int, cond: Conditions | None = None, **keys: object) -> None:
    await link.impair(side, cond, **keys)
