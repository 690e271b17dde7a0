"""The tunnels' wire decisions (``netvirt.programs._tunnel_wire``) and ``UdpTunnel``
between fake devices over loopback UDP. Pure: no root, no kernel objects.

Every datagram the tunnel sends must be one ordinary IP packet of at most
``limit`` bytes with correct checksums (scapy recomputes them), whatever the
device hands out: plain packets, packets with a partial checksum, TCP and UDP
GSO super-packets. What arrives in one GRO read is merged back where the device
has a vnet header, and junk is counted, never raised.
"""

from __future__ import annotations

import errno
import random
import struct
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from netvirt.programs import UdpTunnel
from netvirt.programs._tunnel_wire import plan_sends, plan_writes
from netvirt.wire import gso as G
from netvirt.wire.packets import VNET_ZERO_HDR
from netvirt.wire.tso import Run
from tests.unit.test_programs import FakeDevice, context, free_udp_port, running, until
from tests.unit.test_wire_tso import checksums_ok, l4_checksum_ok, packets_of, tcp_packet, vnet

SEED = 99


def wire_packets(runs: list[Run]) -> list[bytes]:
    return [p for run in runs for p in packets_of(run)]


# -- plan_sends ---------------------------------------------------------------------
def test_plain_runs_group_equal_sizes() -> None:
    small = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=i) / bytes(36)) for i in range(70)]
    tail = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"x")
    plan = plan_sends([*small, tail, small[0]], False, 1400)
    assert [(r.n, r.step) for r in plan.runs] == [(64, 64), (7, 64), (1, 64)]
    assert wire_packets(plan.runs) == [*small, tail, small[0]]
    assert plan.dropped == plan.segmented == plan.too_big == 0


def test_super_packets_become_wire_segments() -> None:
    payload = bytes(range(256)) * 100
    sup4 = vnet(1, 1448) + tcp_packet(4, payload)
    sup6 = vnet(4, 1428) + tcp_packet(6, payload)
    ack = VNET_ZERO_HDR + tcp_packet(4, b"")
    plan = plan_sends([sup4, ack, sup6, b"\x01\x01junk"], True, 1400)
    assert plan.segmented == 2 and plan.dropped == 1 and plan.too_big == 0
    packets = wire_packets(plan.runs)
    assert all(len(p) <= 1400 and checksums_ok(p) for p in packets)
    assert tcp_packet(4, b"") in packets
    v4 = [p for p in packets if p[0] >> 4 == 4 and len(p) > 40]
    assert b"".join(bytes(IP(p)[TCP].payload) for p in v4) == payload


def test_too_big_is_counted() -> None:
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / bytes(1500))
    plan = plan_sends([udp], False, 1472)
    assert plan.too_big == 1 and wire_packets(plan.runs) == [udp]
    tcp = tcp_packet(4, bytes(1460))  # a 1500-byte TCP packet: cut, not fragmented
    plan = plan_sends([tcp], False, 1472)
    assert plan.too_big == 0 and plan.segmented == 1
    assert all(len(p) <= 1472 and checksums_ok(p) for p in wire_packets(plan.runs))


def test_frames_on_a_tap() -> None:
    eth = bytes.fromhex("020000000001020000000002" "0800")
    frame = eth + tcp_packet(4, bytes(3000))
    plan = plan_sends([vnet(1, 1448) + frame, VNET_ZERO_HDR + eth + b"\0" * 30, b"short"],
                      True, 1414, ether=True)
    assert plan.dropped == 1 and plan.segmented == 1
    frames = wire_packets(plan.runs)
    assert all(f[:14] == eth and len(f) <= 1414 and checksums_ok(f[14:]) for f in frames[:-1])


def test_plan_sends_property() -> None:
    rng = random.Random(SEED)
    for _ in range(150):
        packets = []
        for _ in range(rng.randint(1, 20)):
            choice = rng.random()
            if choice < 0.3:
                packets.append(vnet(rng.choice([1, 4]), rng.randint(48, 1460))
                               + tcp_packet(rng.choice([4, 6]), rng.randbytes(rng.randint(0, 30000))))
            elif choice < 0.6:
                packets.append(VNET_ZERO_HDR + bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP()
                                                     / rng.randbytes(rng.choice([36, 36, 500]))))
            else:
                packets.append(rng.randbytes(rng.randint(0, 100)))
        limit = rng.choice([1400, 1472])
        plan = plan_sends(packets, True, limit)
        for run in plan.runs:
            sizes = [len(p) for p in packets_of(run)]
            assert all(s == run.step for s in sizes[:-1]) and sizes[-1] <= run.step
            assert run.n <= 64 or run.per != 1
        for p in wire_packets(plan.runs):
            if len(p) > limit:
                continue
            if p[0] >> 4 in (4, 6) and len(p) >= 40 and p[9 if p[0] >> 4 == 4 else 6] == 6:
                assert l4_checksum_ok(p)


# -- plan_writes --------------------------------------------------------------------
def datagrams(run: Run) -> tuple[memoryview, int]:
    return memoryview(b"".join(packets_of(run))), run.step


@pytest.mark.parametrize("version", [4, 6])
def test_tcp_run_merges_into_one_write(version: int) -> None:
    payload = bytes(range(256)) * 200  # 51200 bytes: two merged packets (IP length)
    run = plan_sends([vnet(1 if version == 4 else 4, 1448) + tcp_packet(version, payload)],
                     True, 1400).runs[0]
    data, step = datagrams(run)
    writes = plan_writes(data, step, True, True)
    assert writes.merged >= 1 and writes.malformed == 0
    assert sum(n for _, n in writes.packets) == run.n
    cls: Any = IP if version == 4 else IPv6
    body = b""
    for packet, n in writes.packets:
        if n > 1:
            assert struct.unpack_from("<BB", packet) == (1, 1 if version == 4 else 4)
        body += bytes(cls(bytes(packet[10:]))[TCP].payload)
    assert body == payload
    plain = plan_writes(data, step, False, True)  # no vnet header: one write per datagram
    assert plain.merged == 0 and [bytes(p) for p, _ in plain.packets] == packets_of(run)


def test_udp_run_merges_and_junk_is_counted() -> None:
    pkts = [bytes(IP(src="10.0.0.1", dst="10.0.0.2", id=i) / UDP(sport=5, dport=6) / bytes(36))
            for i in range(10)]
    writes = plan_writes(memoryview(b"".join(pkts)), 64, True, True)
    assert writes.merged == 1 and writes.packets[0][1] == 10
    segs = G.gso_segment(writes.packets[0][0])
    assert segs is not None and [bytes(IP(s)[UDP]) for s in segs] == [bytes(IP(p)[UDP]) for p in pkts]
    junk = plan_writes(memoryview(b"\x45" * 64 * 3), 64, True, True)
    assert junk.malformed == 3 and not junk.packets
    assert plan_writes(memoryview(b""), 0, True, True).malformed == 1
    frames = plan_writes(memoryview(bytes(20) + bytes(5)), 20, False, True, ether=True)
    assert frames.malformed == 1 and len(frames.packets) == 1


def test_plan_writes_never_raises() -> None:
    rng = random.Random(SEED + 1)
    good = b"".join(packets_of(plan_sends([vnet(1, 1448) + tcp_packet(4, bytes(20000))],
                                          True, 1400).runs[0]))
    for _ in range(3000):
        if rng.random() < 0.5:
            data = bytearray(good[: rng.randint(0, len(good))])
            for _ in range(rng.randint(0, 3)):
                if data:
                    data[rng.randrange(len(data))] = rng.randrange(256)
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 3000)))
        seg = rng.choice([0, 1, 20, 40, 64, 1400, rng.randint(0, 3000)])
        writes = plan_writes(memoryview(bytes(data)), seg, rng.random() < 0.8, True,
                             rng.random() < 0.1)
        assert writes.malformed >= 0


# -- UdpTunnel between fake devices -----------------------------------------------------
async def tunnel_pair(a_vnet: bool, b_vnet: bool, **params: Any) -> tuple[Any, ...]:
    a_dev, b_dev = FakeDevice(vnet_hdr=a_vnet), FakeDevice(vnet_hdr=b_vnet)
    pa, pb = free_udp_port(), free_udp_port()
    a = UdpTunnel(context(a_dev, {"local": f"127.0.0.1:{pa}", "remote": f"127.0.0.1:{pb}"}))
    b = UdpTunnel(context(b_dev, {"local": f"127.0.0.1:{pb}", "remote": f"127.0.0.1:{pa}"}))
    for prog in (a, b):
        for key, value in params.items():
            setattr(prog, key, value)
    return a_dev, b_dev, a, b


async def test_super_packet_crosses_as_segments_and_is_merged_back() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(True, True)
    payload = bytes(range(256)) * 40
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.limit = b.limit = 1400  # loopback's MTU is 64 KiB: make it a 1428-byte wire
            a_dev.send(vnet(1, 1348, 1, 20, 16) + tcp_packet(4, payload))
            merged = await b_dev.recv()
            assert merged[:2] == b"\x01\x01"  # NEEDS_CSUM, TCPV4: one write for the run
            assert bytes(IP(merged[10:])[TCP].payload) == payload
            b_dev.send(VNET_ZERO_HDR + tcp_packet(4, b"ack"))
            assert await a_dev.recv() == VNET_ZERO_HDR + tcp_packet(4, b"ack")
    finally:
        a_dev.close()
        b_dev.close()
    assert a.counters["gso_tx"] == 1 and a.counters["udp_tx"] == -(-len(payload) // (1400 - 40))
    assert b.counters["gso_rx"] == 1 and b.counters["malformed"] == 0


async def test_offload_end_and_plain_end_interoperate() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(True, False)
    payload = bytes(range(256)) * 40
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.limit = 1400
            a_dev.send(vnet(4, 1348, 1, 40, 16) + tcp_packet(6, payload))
            got = [await b_dev.recv() for _ in range(-(-len(payload) // (1400 - 60)))]
            assert all(checksums_ok(g) for g in got)  # what a plain peer sees: ordinary packets
            assert b"".join(bytes(IPv6(g)[TCP].payload) for g in got) == payload
            b_dev.send(tcp_packet(4, b"ack"))
            assert await a_dev.recv() == VNET_ZERO_HDR + tcp_packet(4, b"ack")
    finally:
        a_dev.close()
        b_dev.close()


async def test_without_udp_gso() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(False, True, udp_gso=False)
    pkts = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=i) / bytes(36)) for i in range(10)]
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.port.read_nowait = lambda batch=64, pkts=pkts: list(pkts)
            a._on_device(a.port)
            assert [await b_dev.recv() for _ in pkts] == [VNET_ZERO_HDR + p for p in pkts]
    finally:
        a_dev.close()
        b_dev.close()
    assert not b._gro and b.counters["gso_rx"] == 0


class RefusingSocket:
    """Stands in for the underlay socket: refuses UDP GSO like an old kernel."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendmsg(self, bufs: list[bytes], ancdata: Any, flags: int, address: Any) -> int:
        if ancdata:
            raise OSError(errno.EINVAL, "Invalid argument")
        self.sent.append(b"".join(bytes(b) for b in bufs))
        return len(self.sent[-1])


def test_gso_refused_falls_back_to_one_send_each() -> None:
    dev = FakeDevice()
    try:
        tunnel = UdpTunnel(context(dev, {"local": "127.0.0.1:1", "remote": "127.0.0.1:2"}))
        sock = RefusingSocket()
        pkts = [bytes([i]) * 100 for i in range(10)]
        tunnel.transmit(sock, [Run(list(pkts), 100, 10, 1)])  # type: ignore[arg-type]
        tunnel.transmit(sock, [Run(list(pkts), 100, 10, 1)])  # type: ignore[arg-type]
        assert sock.sent == pkts * 2 and tunnel._gso_below == 100
        assert tunnel.counters["udp_tx"] == 20 and tunnel.counters["dropped"] == 0
    finally:
        dev.close()


def test_offload_param_is_checked() -> None:
    place = "nodes.a.interfaces.tun0.program"
    base = {"local": "10.0.0.1:1", "remote": "10.0.0.2:1"}
    assert UdpTunnel.check_params({**base, "offload": False}, place) == []
    assert UdpTunnel.check_params({**base, "offload": "auto"}, place) == []
    [problem] = UdpTunnel.check_params({**base, "offload": "yes"}, place)
    assert problem.path == f"{place}.offload" and "auto" in problem.message


def partial(packet: bytes, offset: int) -> bytes:
    """``packet`` as a tun with CSUM offload hands it out: NEEDS_CSUM, pseudo-header sum."""
    from netvirt.wire import csum

    l4 = 20 if packet[0] >> 4 == 4 else 40
    src_dst = packet[12:20] if l4 == 20 else packet[8:40]
    proto = packet[9] if l4 == 20 else packet[6]
    pseudo = csum.fold(csum.word_sum(src_dst) + proto + len(packet) - l4)
    body = packet[: l4 + offset] + struct.pack("!H", pseudo) + packet[l4 + offset + 2 :]
    return vnet(0, 0, 1, l4, offset) + body


def test_partial_checksums_are_completed_in_batches() -> None:
    rng = random.Random(SEED + 2)
    udp = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / rng.randbytes(36))
           for _ in range(70)]
    tcp6 = [tcp_packet(6, rng.randbytes(100), seq=i) for i in range(5)]
    odd = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / rng.randbytes(37)) for _ in range(5)]
    batch = [partial(p, 6) for p in udp] + [partial(p, 16) for p in tcp6] + [partial(p, 6) for p in odd]
    plan = plan_sends(batch, True, 1400)
    assert wire_packets(plan.runs) == udp + tcp6 + odd  # scapy's checksums, byte for byte
    assert [r.per for r in plan.runs][:3] == [0, 0, 0]  # 64 + 6 UDP, 5 TCP: one array sum each
    assert plan.dropped == plan.too_big == 0


def test_a_uniform_flood_is_one_array_pass() -> None:
    rng = random.Random(SEED + 3)
    udp = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=5, dport=6) / rng.randbytes(36))
           for _ in range(64)]
    plan = plan_sends([partial(p, 6) for p in udp], True, 1400)
    assert [(r.per, r.n, r.step) for r in plan.runs] == [(0, 64, 64)]
    assert wire_packets(plan.runs) == udp
    mixed = [partial(p, 6) for p in udp[:8]]
    mixed[3] = mixed[3][:6] + b"\x14\x00" + mixed[3][8:]  # another csum_start: not uniform
    plan = plan_sends(mixed, True, 1400)
    assert plan.dropped == 0 and len(wire_packets(plan.runs)) == 8


async def test_a_64k_super_packet_sent_in_two_runs_is_one_write() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(True, True)
    payload = bytes(range(256)) * 250  # 64000 bytes: 48 segments, two UDP GSO sends
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.limit = b.limit = 1400
            a_dev.send(vnet(1, 1348, 1, 20, 16) + tcp_packet(4, payload))
            merged = await b_dev.recv()
            assert merged[:2] == b"\x01\x01" and bytes(IP(merged[10:])[TCP].payload) == payload
            await b_dev.expect_nothing(0.05)
    finally:
        a_dev.close()
        b_dev.close()
    assert a.counters["udp_tx"] == 48 and b.counters["udp_rx"] == 48
    assert b.counters["gso_rx"] == 1 and b.counters["tun_tx"] == 48


def test_back_to_back_super_packets_merge_at_their_psh() -> None:
    """Two super-packets whose segments all have full size arrive as one run: GRO's rule
    (PSH ends a super-packet) cuts it in two merges, not one write per datagram."""
    first = plan_sends([vnet(1, 1360) + tcp_packet(4, bytes(1360 * 10), seq=1000)], True, 1400)
    second = plan_sends([vnet(1, 1360) + tcp_packet(4, bytes(1360 * 10), seq=1000 + 13600)],
                        True, 1400)
    data = memoryview(b"".join(packets_of(first.runs[0]) + packets_of(second.runs[0])))
    writes = plan_writes(data, 1400, True, True)
    assert writes.merged == 2 and [n for _, n in writes.packets] == [10, 10]
