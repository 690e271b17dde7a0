"""0.1.0's GSO helpers of ``netvirt.wire.gso`` against scapy: ``gso_segment`` (the
ipip tunnel's and a plain device's segmenter), ``udp_merge`` (UDP GRO in reverse),
``vnet_plausible``. Pure."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from netvirt.wire import gso as G
from netvirt.wire import packets as P

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


def vnet(gso_type: int, gso_size: int, flags: int = 1, start: int = 0, offset: int = 0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, 0, gso_size, start, offset)


def tcp_super(version: int = 4, flags: str = "PA", payload: bytes = PAYLOAD,
              seq: int = 1000) -> bytes:
    l3: Any = (IP(src="10.0.0.1", dst="10.0.0.2", id=7) if version == 4
               else IPv6(src="fd00::1", dst="fd00::2"))
    return bytes(l3 / TCP(sport=40000, dport=5001, seq=seq, flags=flags) / payload)


def reparsed_ok(segment: bytes) -> bool:
    """True if every checksum in ``segment`` is right (scapy recomputes them)."""
    cls: Any = IP if segment[0] >> 4 == 4 else IPv6
    pkt = cls(segment)
    if cls is IP:
        del pkt.chksum
    del pkt.payload.chksum
    return bytes(cls(bytes(pkt))) == segment


# -- gso_segment -------------------------------------------------------------------------
@pytest.mark.parametrize("version,gso_type", [(4, G.VNET_GSO_TCPV4), (6, G.VNET_GSO_TCPV6)])
def test_gso_segment_tcp(version: int, gso_type: int) -> None:
    segs = G.gso_segment(vnet(gso_type, 1360) + tcp_super(version, "FPA", seq=2**32 - 100))
    assert segs is not None and len(segs) == 8
    cls: Any = IP if version == 4 else IPv6
    parsed = [cls(s) for s in segs]
    assert b"".join(bytes(p[TCP].payload) for p in parsed) == PAYLOAD
    assert [p[TCP].seq for p in parsed] == [(2**32 - 100 + i * 1360) % 2**32 for i in range(8)]
    assert [str(p[TCP].flags) for p in parsed] == ["A"] * 7 + ["FPA"]
    assert all(reparsed_ok(s) for s in segs)
    assert all(len(s) <= 1360 + 40 + (20 if version == 6 else 0) for s in segs)
    if version == 4:
        assert [p[IP].id for p in parsed] == list(range(7, 15))


def test_gso_segment_ecn_udp_and_plain() -> None:
    segs = G.gso_segment(vnet(G.VNET_GSO_TCPV4 | G.VNET_GSO_ECN, 4000)
                         + tcp_super(flags="CA"))
    assert segs is not None
    assert [str(IP(s)[TCP].flags) for s in segs] == ["AC", "A", "A"]  # CWR on the first only
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / PAYLOAD)
    segs = G.gso_segment(vnet(G.VNET_GSO_UDP_L4, 1000) + udp)
    assert segs is not None and len(segs) == 11 and all(reparsed_ok(s) for s in segs)
    assert b"".join(bytes(IP(s)[UDP].payload) for s in segs) == PAYLOAD
    plain = G.gso_segment(P.VNET_ZERO_HDR + udp)
    assert plain == [udp]


@pytest.mark.parametrize("packet", [
    vnet(G.VNET_GSO_TCPV4, 1000) + tcp_super()[:30],  # truncated
    vnet(G.VNET_GSO_TCPV4, 0) + tcp_super(),  # no segment size
    vnet(G.VNET_GSO_UDP, 1000) + tcp_super(),  # UFO: not segmented here
    vnet(G.VNET_GSO_UDP_L4, 1000) + tcp_super(),  # type does not match the protocol
    vnet(G.VNET_GSO_TCPV6, 1000) + bytes(IPv6(nh=0) / (b"\0" * 60)),  # extension header
    vnet(G.VNET_GSO_TCPV4, 1000) + b"\x70" + bytes(60),  # not IP
    vnet(G.VNET_GSO_TCPV4, 47) + tcp_super(),  # below TCP's smallest MSS: ~1400+ segments
    vnet(G.VNET_GSO_UDP_L4, 100)  # 103 UDP segments, more than UDP_MAX_SEGMENTS
    + bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / PAYLOAD),
    b"\x01\x01",
])
def test_gso_segment_rejects(packet: bytes) -> None:
    assert G.gso_segment(packet) is None


def test_vnet_plausible() -> None:
    assert G.vnet_plausible(vnet(G.VNET_GSO_TCPV4, 1360) + tcp_super())
    assert G.vnet_plausible(P.VNET_ZERO_HDR + tcp_super())
    assert not G.vnet_plausible(vnet(9, 1360) + tcp_super())  # unknown GSO type
    assert not G.vnet_plausible(vnet(1, 1360, flags=8) + tcp_super())
    assert not G.vnet_plausible(P.VNET_ZERO_HDR + tcp_super()[:30])
    assert not G.vnet_plausible(P.VNET_ZERO_HDR)


# -- udp_merge -------------------------------------------------------------------------
def udp_run(version: int = 4, count: int = 20, size: int = 64, last: int = 30,
            headers: bool = False, **change: Any) -> tuple[bytes, int, list[bytes]]:
    pkts = []
    for i in range(count):
        l3: Any = (IP(src="10.0.0.1", dst="10.0.0.2", id=i) if version == 4
                   else IPv6(src="fd00::1", dst="fd00::2"))
        n = last if i == count - 1 else size
        pkts.append(bytes(l3 / UDP(sport=5, dport=6) / (bytes([i]) * n)))
    for index, (offset, value) in change.items():
        i = int(index[1:])
        pkts[i] = pkts[i][:offset] + bytes([value]) + pkts[i][offset + 1:]
    wire = [vnet(0, 0, 1, 20 if version == 4 else 40, 6) + p if headers else p for p in pkts]
    return b"".join(wire), len(wire[0]), pkts


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("headers", [False, True])
def test_udp_merge_round_trip(version: int, headers: bool) -> None:
    run, step, pkts = udp_run(version, headers=headers)
    merged = G.udp_merge(run, step)
    assert merged is not None
    flags, gso_type, hdr_len, gso_size, start, offset = struct.unpack_from("<BBHHHH", merged)
    ip_len = 20 if version == 4 else 40
    assert (flags, gso_type, hdr_len, gso_size, start, offset) == (1, 5, ip_len + 8, 64, ip_len, 6)
    segs = G.gso_segment(merged)
    assert segs is not None and len(segs) == len(pkts)
    cls: Any = IP if version == 4 else IPv6
    assert [bytes(cls(s)[UDP]) for s in segs] == [bytes(cls(p)[UDP]) for p in pkts]
    assert all(reparsed_ok(s) for s in segs)


@pytest.mark.parametrize("change", [
    {"c3": (23, 7)},  # another destination port
    {"c0": (8, 3)},  # another TTL on the first
    {"c5": (1, 4)},  # another TOS
    {"c4": (6, 0x20)},  # a fragment (MF)
    {"c2": (9, 6)},  # not UDP
])
def test_udp_merge_refuses_other_flows(change: dict[str, tuple[int, int]]) -> None:
    run, step, _ = udp_run(**change)  # type: ignore[arg-type]
    assert G.udp_merge(run, step) is None


def test_udp_merge_refuses_odd_runs() -> None:
    run, step, _ = udp_run(count=1)
    assert G.udp_merge(run, step) is None  # one datagram: nothing to merge
    run, step, _ = udp_run(last=64)
    assert G.udp_merge(run, step) is not None  # all equal is fine
    run, step, _ = udp_run(count=G.UDP_MAX_SEGMENTS + 1)
    assert G.udp_merge(run, step) is None  # more than one UDP GSO packet may carry
    opts = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP() / b"x")
    assert G.udp_merge(opts * 3, len(opts)) is None  # IP options
    run, step, _ = udp_run()
    assert G.udp_merge(run + b"\0", step) is None  # a last datagram that does not parse
    assert G.udp_merge(run[:-40], step) is None  # truncated last datagram
