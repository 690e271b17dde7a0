"""Probes a step runs inside a live lab: netvirt's own ping, and TCP/UDP echo.

The ping is a raw ICMP/ICMPv6 socket opened inside the ``src`` node and driven by
the event loop, so no ``ping`` binary is needed. The echo pieces serve ``connect``:
a one-connection TCP echo server or a UDP echo on the server's socket, and the
client side that sends the payload and collects what comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import struct
import time
from typing import TYPE_CHECKING

from netvirt._aio import readable
from netvirt.packets import checksum

if TYPE_CHECKING:
    from netvirt.topology.builder import Topology

__all__ = ["ping", "readable", "tcp_echo_once", "tcp_roundtrip", "udp_echo", "udp_roundtrip"]


#: the longest wait between two echo requests when the step sets no ``interval``
ADAPTIVE_INTERVAL = 0.02


async def ping(topo: Topology, src: str, dst: str, *, count: int = 3, timeout: float = 1.0,
               interval: float | None = None) -> tuple[int, list[float]]:
    """Send ``count`` echo requests from node ``src``; return (replies, rtts).

    ``interval`` None (the default) is adaptive, like ``ping -A``: the next request
    goes as soon as the previous one is answered, or after ``ADAPTIVE_INTERVAL``
    at most; so one request is in flight at a time and a lab's check costs its
    round trips, not a fixed 20 ms per request. A number spaces them exactly.
    """
    addr = ipaddress.ip_address(dst)
    v6 = addr.version == 6
    node = topo.node(src)
    sock = await node.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                             socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    loop = asyncio.get_running_loop()
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    sent: dict[int, float] = {}
    rtts: list[float] = []
    got: set[int] = set()
    done = asyncio.Event()
    answered = asyncio.Event()  # the newest request was answered

    def on_readable() -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
            if len(icmp) < 8:
                continue
            typ, _code, _ck, rid, seq = struct.unpack_from("!BBHHH", icmp)
            if typ == (129 if v6 else 0) and rid == ident and seq in sent and seq not in got:
                got.add(seq)
                rtts.append(time.perf_counter() - sent[seq])
                if seq == len(sent):
                    answered.set()
                if len(got) == count:
                    done.set()

    loop.add_reader(sock.fileno(), on_readable)
    try:
        for seq in range(1, count + 1):
            payload = struct.pack("!d", time.time()) + bytes(range(48))
            hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq)
            msg = hdr + payload
            if not v6:  # the kernel fills in the ICMPv6 checksum itself
                msg = hdr[:2] + struct.pack("!H", checksum(msg)) + hdr[4:] + payload
            answered.clear()
            sent[seq] = time.perf_counter()
            try:
                sock.sendto(msg, (dst, 0))
            except OSError as exc:
                if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN):
                    raise
            if seq < count:
                if interval is not None:
                    await asyncio.sleep(interval)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(answered.wait(), ADAPTIVE_INTERVAL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return len(got), rtts


async def tcp_echo_once(loop: asyncio.AbstractEventLoop, lsock: socket.socket) -> None:
    conn, _ = await loop.sock_accept(lsock)
    conn.setblocking(False)
    try:
        while data := await loop.sock_recv(conn, 65536):
            await loop.sock_sendall(conn, data)
    finally:
        conn.close()


async def tcp_roundtrip(loop: asyncio.AbstractEventLoop, sock: socket.socket, dst: tuple[str, int],
                      payload: bytes) -> bytes:
    await loop.sock_connect(sock, dst)
    send = asyncio.ensure_future(loop.sock_sendall(sock, payload))
    try:
        buf = bytearray()
        while len(buf) < len(payload):
            data = await loop.sock_recv(sock, 65536)
            if not data:
                break
            buf += data
        await send
    finally:
        if not send.done():  # timed out: stop writing before the socket is closed
            send.cancel()
            await asyncio.gather(send, return_exceptions=True)
    return bytes(buf)


async def udp_echo(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    while True:
        await readable(loop, sock)
        try:
            data, peer = sock.recvfrom(65536)
        except BlockingIOError:
            continue
        sock.sendto(data, peer)


async def udp_roundtrip(loop: asyncio.AbstractEventLoop, sock: socket.socket, dst: tuple[str, int],
                      payload: bytes) -> bytes:
    chunks = [payload[i:i + 1200] for i in range(0, len(payload), 1200)] or [b""]
    sock.connect(dst)
    out = bytearray()
    for chunk in chunks:  # one at a time: UDP has no retransmission, keep the test exact
        for _attempt in range(3):
            sock.send(chunk)
            try:
                await asyncio.wait_for(readable(loop, sock), 0.5)
                out += sock.recv(65536)
                break
            except (TimeoutError, BlockingIOError):
                continue
        else:
            break
    return bytes(out)
