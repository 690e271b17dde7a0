"""netvirt's own throughput sender and receiver (the ``throughput`` step; no iperf3 needed).

TCP: the receiver accepts one connection in the destination's namespace and
counts bytes; the sender streams 1 MiB writes for ``seconds``; the rate is
the receiver's bytes over the receiver's time from the first byte to the
last. UDP: numbered datagrams (1400 bytes of payload by default) sent at
``rate`` bit/s (paced in bursts of up to 1 ms), or as fast as the socket
takes them; the receiver counts distinct sequence numbers, so the report
gives the received rate and the loss. Both ends run on the event loop, on
sockets opened inside the two namespaces (objects with an async
``socket(family, type)``: a ``Namespace`` or a topology ``Node``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass
from typing import Protocol

from netvirt._aio import readable

__all__ = ["SocketMaker", "ThroughputResult", "measure_throughput"]

_SEQ = struct.Struct("!Q")
_CHUNK = bytes(1 << 20)


class SocketMaker(Protocol):
    async def socket(self, family: int, type: int, proto: int = 0) -> socket.socket: ...


@dataclass(frozen=True)
class ThroughputResult:
    proto: str
    bits_per_second: float
    bytes: int
    seconds: float
    sent: int = 0  # UDP datagrams
    received: int = 0  # UDP datagrams

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    def describe(self) -> str:
        text = f"{_fmt_bits(self.bits_per_second)} over {self.seconds:.2f} s"
        if self.proto == "udp":
            text += f", {self.received}/{self.sent} datagrams, loss {self.loss:.2%}"
        return text


def _fmt_bits(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.2f} {unit}"
    return f"{bps:.0f} bit/s"


async def measure_throughput(src: SocketMaker, dst: SocketMaker, addr: str, port: int, *,
                             proto: str = "tcp", seconds: float = 3.0, rate: int | None = None,
                             size: int = 1400) -> ThroughputResult:
    """Send from ``src`` to ``addr:port`` (owned by ``dst``) for ``seconds``; measure at ``dst``."""
    family = socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET
    if proto == "tcp":
        return await _tcp(src, dst, family, (addr, port), seconds)
    if proto == "udp":
        return await _udp(src, dst, family, (addr, port), seconds, rate, size)
    raise ValueError(f"proto must be tcp or udp, not {proto!r}")


async def _tcp(src: SocketMaker, dst: SocketMaker, family: int, where: tuple[str, int],
               seconds: float) -> ThroughputResult:
    loop = asyncio.get_running_loop()
    lsock = await dst.socket(family, socket.SOCK_STREAM)
    csock = await src.socket(family, socket.SOCK_STREAM)
    first = last = 0.0
    total = 0
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind(where)
        lsock.listen(1)
        lsock.setblocking(False)
        csock.setblocking(False)

        async def receive() -> None:
            nonlocal first, last, total
            conn, _ = await loop.sock_accept(lsock)
            with conn:
                conn.setblocking(False)
                while data := await loop.sock_recv(conn, 1 << 20):
                    now = time.perf_counter()
                    if not total:
                        first = now
                    total += len(data)
                    last = now

        rx = asyncio.create_task(receive())
        try:
            await asyncio.wait_for(loop.sock_connect(csock, where), 5)
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                await asyncio.wait_for(loop.sock_sendall(csock, _CHUNK), seconds + 10)
            csock.shutdown(socket.SHUT_WR)
            await asyncio.wait_for(rx, 30)
        finally:
            if not rx.done():
                rx.cancel()
                await asyncio.gather(rx, return_exceptions=True)
    finally:
        csock.close()
        lsock.close()
    span = max(last - first, 1e-9)
    return ThroughputResult("tcp", total * 8 / span, total, span)


async def _udp(src: SocketMaker, dst: SocketMaker, family: int, where: tuple[str, int],
               seconds: float, rate: int | None, size: int) -> ThroughputResult:
    loop = asyncio.get_running_loop()
    rsock = await dst.socket(family, socket.SOCK_DGRAM)
    ssock = await src.socket(family, socket.SOCK_DGRAM)
    seen: set[int] = set()
    first = last = 0.0
    nbytes = 0
    sent = 0
    try:
        rsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rsock.bind(where)
        rsock.setblocking(False)
        ssock.setblocking(False)
        ssock.connect(where)

        async def receive() -> None:
            nonlocal first, last, nbytes
            while True:
                await readable(loop, rsock)
                while True:
                    try:
                        data = rsock.recv(65536)
                    except (BlockingIOError, InterruptedError):
                        break
                    now = time.perf_counter()
                    if not seen:
                        first = now
                    last = now
                    seen.add(_SEQ.unpack_from(data)[0])
                    nbytes += len(data)

        rx = asyncio.create_task(receive())
        pad = bytes(max(0, size - _SEQ.size))
        per_ms = None if rate is None else rate / 8 / size / 1000  # datagrams per ms
        t0 = time.perf_counter()
        end = t0 + seconds
        try:
            while (now := time.perf_counter()) < end:
                want = (now - t0) * 1000 * per_ms if per_ms is not None else sent + 64
                while sent < want:
                    try:
                        ssock.send(_SEQ.pack(sent) + pad)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # ENOBUFS, unreachable: counted as lost
                        pass
                    sent += 1
                await asyncio.sleep(0.001 if per_ms is not None else 0)
            await asyncio.sleep(0.3)  # what is in flight
        finally:
            rx.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rx
    finally:
        ssock.close()
        rsock.close()
    span = max(last - first, 1e-9) if len(seen) > 1 else seconds
    return ThroughputResult("udp", nbytes * 8 / span, nbytes, span, sent, len(seen))
