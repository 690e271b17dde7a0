"""TUN devices on a real kernel: packet I/O, lifetime, persistence, queues, offload."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct

import pytest

from netvirt.devices import Tun
from netvirt.devices._tuntap import IFF_MULTI_QUEUE, IFF_VNET_HDR, get_flags
from netvirt.netns import Namespace
from netvirt.packetio import VNET_HDR_LEN
from tests.conftest import unique
from tests.kernel.devices_support import (
    NewNs,
    echo_reply_for,
    info_data,
    ip_link,
    ipv4,
    nsname,
    nss,
    parse_icmp_echo_request,
    sh,
)

__all__ = ["nss"]

pytestmark = pytest.mark.root


def open_tun_fds() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd of the listdir itself is gone
            n += os.readlink(f"/proc/self/fd/{fd}") == "/dev/net/tun"
    return n


async def start_ping(netns: Namespace, dst: str, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", nsname(netns), "ping", "-n", "-q", "-c", str(count), "-i", "0.2",
        "-W", "2", dst, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_tun_reads_echo_request_and_answers_it(nss: NewNs) -> None:
    a = await nss()
    async with Tun(unique(), netns=a, addresses=["10.4.0.1/24"]) as tun:
        proc = await start_ping(a, "10.4.0.2", 1)
        pkt = await asyncio.wait_for(tun.read(), 5)
        assert len(pkt) == 84  # 20 IP + 8 ICMP + 56 payload, no PI header
        req = parse_icmp_echo_request(pkt)
        assert req is not None and req[:2] == ("10.4.0.1", "10.4.0.2")
        reply = echo_reply_for(pkt)
        assert reply is not None and await tun.write(reply)
        assert await asyncio.wait_for(proc.wait(), 5) == 0  # ping got its answer
        await asyncio.sleep(0.3)
        # nothing else came: no IPv6 router solicitation, no MLD (no link-local)
        assert tun.port.read_nowait() == []
        assert (tun.port.rx_packets, tun.port.tx_packets) == (1, 1)
        link = await ip_link(a, tun.name)
        assert link is not None and link["inet6_addr_gen_mode"] == "none"


async def test_tun_async_for_answers_several_pings(nss: NewNs) -> None:
    a = await nss()
    async with Tun(unique(), netns=a, addresses=["10.4.0.1/24"]) as tun:
        proc = await start_ping(a, "10.4.0.9", 3)
        seqs = []

        async def serve() -> None:
            async for pkt in tun:
                req = parse_icmp_echo_request(pkt)
                assert req is not None, f"unexpected packet {pkt.hex()}"
                seqs.append(req[3])
                await tun.write(echo_reply_for(pkt))  # type: ignore[arg-type]
                if len(seqs) == 3:
                    return

        await asyncio.wait_for(serve(), 5)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        assert seqs == [1, 2, 3]


async def test_tun_async_for_ends_when_device_is_closed(nss: NewNs) -> None:
    a = await nss()
    tun = await Tun(unique(), netns=a).create()
    got: list[bytes] = []

    async def serve() -> str:
        async for pkt in tun:
            got.append(pkt)
        return "ended"

    task = asyncio.create_task(serve())
    try:
        await asyncio.sleep(0.05)  # parked in wait_readable
        await tun.aclose()
        assert await asyncio.wait_for(task, 2) == "ended"  # woken, not left hanging
    finally:
        task.cancel()
        await tun.aclose()
    assert got == [] and tun.queues == []


async def test_tun_write_while_down_is_dropped_not_raised(nss: NewNs) -> None:
    a = await nss()
    async with Tun(unique(), netns=a, up=False, addresses=["10.4.0.1/24"]) as tun:
        packet = ipv4("10.4.0.2", "10.4.0.1", 17, struct.pack("!HHHH", 1000, 9, 8, 0))
        assert await tun.write(packet) is False
        assert tun.write_nowait(packet) is False
        assert (tun.port.tx_dropped, tun.port.tx_packets) == (2, 0)
        await tun.set_up()
        assert await tun.write(packet) is True
        assert (tun.port.tx_dropped, tun.port.tx_packets) == (2, 1)


async def test_tun_not_persistent_vanishes_when_closed(nss: NewNs) -> None:
    a = await nss()
    name = unique()
    before = open_tun_fds()
    tun = await Tun(name, netns=a).create()
    link = await ip_link(a, name)
    assert link is not None and info_data(link)["persist"] is False
    assert link.get("ifalias") == "netvirt"
    assert open_tun_fds() == before + 1
    await tun.aclose()
    assert await ip_link(a, name) is None
    assert open_tun_fds() == before
    await tun.aclose()  # safe twice
    with pytest.raises(RuntimeError):
        tun.port  # noqa: B018 - no queue any more


async def test_tun_persistent_keeps_owner_and_is_deleted_by_aclose(nss: NewNs) -> None:
    a = await nss()
    name = unique()
    before = open_tun_fds()
    tun = await Tun(name, netns=a, persist=True, owner=4242, group=4343,
                    addresses=["10.4.0.1/24"]).create()
    try:
        assert tun.queues == [] and open_tun_fds() == before  # our fds are closed...
        link = await ip_link(a, name)  # ...and the device stays, for qemu & co
        assert link is not None
        d = info_data(link)
        assert (d["persist"], d["user"], d["group"]) == (True, 4242, 4343)
        assert "NO-CARRIER" in link["flags"]  # nobody attached
        rc, out, _ = await sh("ip", "netns", "exec", nsname(a), "cat",
                              f"/sys/class/net/{name}/owner", f"/sys/class/net/{name}/group")
        assert (rc, out.split()) == (0, ["4242", "4343"])
        assert {x for _, x in await a.nl(lambda nl: nl.addrs(tun.ifindex))} == {"10.4.0.1/24"}
    finally:
        await tun.aclose()
    assert await ip_link(a, name) is None


async def send_udp_flows(ns: Namespace, dst: str, n: int) -> None:
    """From inside ``ns``: one datagram from each of ``n`` fresh source ports."""

    def send() -> None:
        for _ in range(n):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"flow", (dst, 9))

    await ns.call(send)


async def count_per_queue(tun: Tun, total: int) -> list[int]:
    counts = [0] * len(tun.queues)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 3
    while sum(counts) < total and loop.time() < deadline:
        for i, q in enumerate(tun.queues):
            counts[i] += sum(1 for p in q.read_nowait() if p[0] >> 4 == 4 and p[9] == 17)
        await asyncio.sleep(0.01)
    return counts


async def test_tun_multi_queue_spreads_flows(nss: NewNs) -> None:
    a = await nss()
    async with Tun(unique(), netns=a, queues=2, addresses=["10.6.0.1/24"]) as tun:
        assert len(tun.queues) == 2 and len({q.fileno() for q in tun.queues}) == 2
        assert all(get_flags(q.fileno()) & IFF_MULTI_QUEUE for q in tun.queues)
        d = info_data(await ip_link(a, tun.name))  # type: ignore[arg-type]
        assert (d["multi_queue"], d["numqueues"]) == (True, 2)
        await send_udp_flows(a, "10.6.0.2", 64)
        counts = await count_per_queue(tun, 64)
        assert sum(counts) == 64 and min(counts) > 0, counts
        tun.set_queue_enabled(1, False)
        await send_udp_flows(a, "10.6.0.2", 64)
        assert await count_per_queue(tun, 64) == [64, 0]
        tun.set_queue_enabled(1, True)
        await send_udp_flows(a, "10.6.0.2", 64)
        counts = await count_per_queue(tun, 64)
        assert sum(counts) == 64 and min(counts) > 0, counts


async def test_tun_offload_carries_gso_super_packets(nss: NewNs) -> None:
    loop = asyncio.get_running_loop()
    a, b = await nss(), await nss()
    async with Tun(unique(), netns=a, offload=True, addresses=["10.5.0.1/24"]) as ta, \
            Tun(unique(), netns=b, offload=True, addresses=["10.5.0.2/24"]) as tb:
        assert get_flags(ta.fileno()) & IFF_VNET_HDR and ta.port.vnet_hdr
        lengths: list[int] = []
        gso_types: set[int] = set()

        async def forward(src: Tun, dst: Tun, record: bool) -> None:
            while True:
                for p in await src.read_batch():
                    if record:
                        lengths.append(len(p))
                        gso_types.add(p[1])  # virtio_net_hdr.gso_type
                    dst.write_nowait(p)

        fwd = [asyncio.create_task(forward(ta, tb, True)),
               asyncio.create_task(forward(tb, ta, False))]
        listener = await b.socket(socket.AF_INET, socket.SOCK_STREAM)
        client = await a.socket(socket.AF_INET, socket.SOCK_STREAM)
        payload = os.urandom(1 << 16) * 48  # 3 MiB
        rx: asyncio.Task[int] | None = None
        try:
            with listener, client:
                listener.bind(("10.5.0.2", 0))
                listener.listen(1)

                async def receive() -> int:
                    conn, _ = await loop.sock_accept(listener)
                    got = 0
                    with conn:
                        while chunk := await loop.sock_recv(conn, 1 << 20):
                            got += len(chunk)
                    return got

                rx = asyncio.create_task(receive())
                await asyncio.wait_for(loop.sock_connect(client, listener.getsockname()), 5)
                await asyncio.wait_for(loop.sock_sendall(client, payload), 10)
                client.shutdown(socket.SHUT_WR)
                assert await asyncio.wait_for(rx, 10) == len(payload)
        finally:
            tasks = [*fwd, *([rx] if rx else [])]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # reads far beyond the 1500-byte MTU, each a TCPv4 GSO packet behind its header
        assert max(lengths) > 1500 + VNET_HDR_LEN, max(lengths)
        assert 1 in {t & 0x7F for t in gso_types}, gso_types  # VIRTIO_NET_HDR_GSO_TCPV4
        assert tb.port.tx_dropped == 0
