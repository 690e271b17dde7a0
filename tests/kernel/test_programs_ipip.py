"""The ipip-tunnel program back to back on raw sockets (root: a private network namespace)."""

from __future__ import annotations

import asyncio
import ctypes
import fcntl
import os
import socket
import struct
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import IPv6

from netvirt.programs import IpipTunnel
from netvirt.programs.base import OpenSocket
from tests.unit.test_programs import FakeDevice, context, running, until

# -- ipip-tunnel (raw sockets: root, in a private network namespace) ---------------------
CLONE_NEWNET = 0x40000000


def _enter_private_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # ip link set lo up
        ifreq = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, ifreq))[1]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


@pytest.fixture
def netns_open_socket() -> Iterator[OpenSocket]:
    if os.geteuid() != 0:
        pytest.skip("raw sockets and unshare(CLONE_NEWNET) need root")
    pool = ThreadPoolExecutor(1, initializer=_enter_private_netns)

    async def open_socket(family: int, type_: int, proto: int) -> socket.socket:
        loop = asyncio.get_running_loop()
        sock = await loop.run_in_executor(pool, socket.socket, family, type_, proto)
        sock.setblocking(False)
        return sock

    try:
        pool.submit(lambda: None).result()
    except OSError as exc:
        pool.shutdown()
        pytest.skip(f"cannot make a private network namespace: {exc}")
    yield open_socket
    pool.shutdown()


async def test_ipip_tunnel_back_to_back(netns_open_socket: OpenSocket) -> None:
    a_dev, b_dev = FakeDevice(), FakeDevice()
    a = IpipTunnel(context(a_dev, {"local": "127.0.0.1", "remote": "127.0.0.2"},
                           open_socket=netns_open_socket))
    b = IpipTunnel(context(b_dev, {"local": "127.0.0.2", "remote": "127.0.0.1"},
                           open_socket=netns_open_socket))
    c_dev = FakeDevice()  # a foreign tunnel end, also aimed at b
    c = IpipTunnel(context(c_dev, {"local": "127.0.0.3", "remote": "127.0.0.2"},
                           open_socket=netns_open_socket))
    try:
        async with running(a), running(b), running(c):
            await until(lambda: None not in (a._sock, b._sock, c._sock))
            pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(seq=1) / (b"x" * 64))
            a_dev.send(pkt)
            assert await b_dev.recv() == pkt
            b_dev.send(pkt)
            assert await a_dev.recv() == pkt
            c_dev.send(pkt)
            a_dev.send(b"\x45" + os.urandom(10))  # truncated inner packet
            a_dev.send(bytes(IPv6(dst="::1") / UDP()))  # protocol 4 carries IPv4 only
            await until(lambda: b.counters["rx_foreign"] == 1 and b.counters["malformed"] == 1)
            assert a.counters["dropped"] == 1
            a_dev.send(pkt)
            assert await b_dev.recv() == pkt
        await b_dev.expect_nothing(0.01)
    finally:
        for d in (a_dev, b_dev, c_dev):
            d.close()
    assert b.counters["tun_tx"] == 2 and b.counters["ipip_rx"] == 4 and a.counters["ipip_tx"] == 3


