"""netvirt.packets cross-checked against scapy (scapy is fine in tests)."""

from __future__ import annotations

import os
import random
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Raw
from scapy.utils import checksum as scapy_checksum

from netvirt import packets as P

MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def rebuilt(pkt: bytes, cls: type, *fields: tuple[type, str]) -> bytes:
    """``pkt`` re-serialised by scapy with the named checksum fields recomputed."""
    parsed = cls(pkt)
    for layer, name in fields:
        setattr(parsed[layer], name, None)
    return bytes(parsed)


# -- checksum, parsing ------------------------------------------------------
def test_checksum_matches_scapy() -> None:
    rng = random.Random(1)
    for size in [0, 1, 2, 3, 20, 21, 64, 1499, 1500, 9000]:
        data = bytes(rng.getrandbits(8) for _ in range(size))
        assert P.checksum(data) == scapy_checksum(data) & 0xFFFF, size
    assert P.checksum(b"") == 0xFFFF
    assert P.checksum(b"\xff\xff") == 0
    assert P.checksum(bytearray(b"\x01\x02\x03")) == P.checksum(memoryview(b"\x01\x02\x03"))


def test_checksum_of_a_valid_header_is_zero() -> None:
    header = bytes(IP(src="10.0.0.1", dst="10.0.0.2"))[:20]
    assert P.checksum(header) == 0


def test_parse_ipv4() -> None:
    pkt = bytes(IP(src="10.1.2.3", dst="10.4.5.6", ttl=7, id=99, options=b"\x01" * 4)
                / UDP() / b"x")
    h = P.parse_ipv4(pkt)
    assert h is not None
    assert (h.version, h.ihl, h.header_len, h.proto, h.ttl, h.ident) == (4, 6, 24, 17, 7, 99)
    assert (h.src, h.dst, h.total_length) == (bytes([10, 1, 2, 3]), bytes([10, 4, 5, 6]), len(pkt))
    assert P.parse_ipv4(pkt + b"\0" * 10) is not None  # Ethernet padding is fine
    assert P.parse_ipv4(memoryview(pkt)) is not None


@pytest.mark.parametrize("bad", [
    b"",
    b"\x45" * 19,
    bytes(IP(dst="10.0.0.1") / ICMP())[:27],  # total length > buffer
    b"\x65" + bytes(IP(dst="10.0.0.1") / ICMP())[1:],  # version 6
    b"\x44" + bytes(IP(dst="10.0.0.1") / ICMP())[1:],  # ihl 4
    b"\x4f" + bytes(IP(dst="10.0.0.1") / ICMP())[1:],  # ihl 15 > total length
])
def test_parse_ipv4_rejects(bad: bytes) -> None:
    assert P.parse_ipv4(bad) is None
    assert not P.ip_plausible(bad)


def test_parse_ipv6() -> None:
    pkt = bytes(IPv6(src="fd00::1", dst="fd00::2", hlim=9, tc=3, fl=5) / UDP() / b"abc")
    h = P.parse_ipv6(pkt)
    assert h is not None
    assert (h.next_header, h.hop_limit, h.payload_length) == (17, 9, 11)
    assert h.src == bytes.fromhex("fd000000000000000000000000000001")
    assert P.parse_ipv6(pkt[:39]) is None
    assert P.parse_ipv6(pkt[:-1]) is None  # payload length > buffer
    assert P.parse_ipv6(b"\x40" + pkt[1:]) is None
    assert P.ip_plausible(pkt) and not P.ip_plausible(pkt[:-1])


def test_ip_plausible() -> None:
    assert P.ip_plausible(bytes(IP(dst="1.2.3.4") / TCP()))
    assert not P.ip_plausible(b"")
    assert not P.ip_plausible(b"\x00" * 40)
    assert not P.ip_plausible(b"\x75" + b"\x00" * 40)


# -- echo replies --------------------------------------------------------------
def test_icmp_echo_reply_ip() -> None:
    req = bytes(IP(src="10.0.0.1", dst="10.0.0.2", tos=0x10) / ICMP(id=0x1234, seq=7)
                / (b"payload" * 10))
    reply = P.icmp_echo_reply_ip(req)
    assert reply is not None
    ip = IP(reply)
    assert (ip.src, ip.dst, ip.proto, ip.tos) == ("10.0.0.2", "10.0.0.1", 1, 0x10)
    assert ip.len == len(reply)
    icmp = ip[ICMP]
    assert (icmp.type, icmp.code, icmp.id, icmp.seq) == (0, 0, 0x1234, 7)
    assert bytes(icmp.payload) == b"payload" * 10
    assert rebuilt(reply, IP, (IP, "chksum"), (ICMP, "chksum")) == reply


def test_icmp_echo_reply_ip_drops_options_and_padding() -> None:
    req = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01" * 8) / ICMP(id=1, seq=2)
                / b"hi") + b"\0" * 6
    reply = P.icmp_echo_reply_ip(req)
    assert reply is not None
    ip = IP(reply)
    assert ip.ihl == 5 and len(reply) == 20 + 8 + 2 and bytes(ip[ICMP].payload) == b"hi"
    assert rebuilt(reply, IP, (IP, "chksum"), (ICMP, "chksum")) == reply


@pytest.mark.parametrize("req", [
    IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=0),  # a reply
    IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=3, code=1),
    IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, code=1),
    IP(src="10.0.0.1", dst="10.0.0.2") / UDP(),
    IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / ICMP(),  # a fragment
    IP(src="10.0.0.1", dst="224.0.0.1") / ICMP(),  # multicast, no src given
    IP(src="10.0.0.1", dst="255.255.255.255") / ICMP(),
    IP(src="0.0.0.0", dst="10.0.0.2") / ICMP(),
])
def test_icmp_echo_reply_ip_ignores(req: IP) -> None:
    assert P.icmp_echo_reply_ip(bytes(req)) is None
    assert P.echo_reply_ip(bytes(req)) is None


def test_icmp_echo_reply_ip_with_source_for_multicast() -> None:
    req = bytes(IP(src="10.0.0.1", dst="224.0.0.1") / ICMP(id=3, seq=4))
    reply = P.icmp_echo_reply_ip(req, src=bytes([10, 0, 0, 9]))
    assert reply is not None and IP(reply).src == "10.0.0.9"


def test_icmpv6_echo_reply_ip() -> None:
    req = bytes(IPv6(src="fd00::1", dst="fd00::2", fl=0x12345) /
                ICMPv6EchoRequest(id=0x4321, seq=9, data=b"abc" * 30))
    reply = P.icmpv6_echo_reply_ip(req)
    assert reply is not None and P.echo_reply_ip(req) == reply
    ip = IPv6(reply)
    assert (ip.src, ip.dst, ip.nh, ip.fl, ip.plen) == ("fd00::2", "fd00::1", 58, 0x12345, 8 + 90)
    echo = ip[ICMPv6EchoReply]
    assert (echo.type, echo.id, echo.seq, echo.data) == (129, 0x4321, 9, b"abc" * 30)
    assert rebuilt(reply, IPv6, (ICMPv6EchoReply, "cksum")) == reply


def test_icmpv6_echo_reply_multicast() -> None:
    req = bytes(IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(id=1, seq=1))
    assert P.icmpv6_echo_reply_ip(req) is None
    me = P.pack_ip("fe80::2")
    reply = P.icmpv6_echo_reply_ip(req, src=me)
    assert reply is not None
    assert IPv6(reply).src == "fe80::2"
    assert rebuilt(reply, IPv6, (ICMPv6EchoReply, "cksum")) == reply


@pytest.mark.parametrize("req", [
    IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoReply(),
    IPv6(src="fd00::1", dst="fd00::2") / UDP(),
    IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrHopByHop() / ICMPv6EchoRequest(),
    IPv6(src="::", dst="fd00::2") / ICMPv6EchoRequest(),
])
def test_icmpv6_echo_reply_ignores(req: IPv6) -> None:
    assert P.icmpv6_echo_reply_ip(bytes(req)) is None


def test_echo_reply_ether_both_families() -> None:
    for ip_req in (IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(id=5, seq=6) / b"x",
                   IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(id=5, seq=6)):
        frame = bytes(Ether(src=MAC_A, dst=MAC_B) / ip_req)
        reply = P.echo_reply_ether(frame)
        assert reply is not None
        eth = Ether(reply)
        assert (eth.src, eth.dst, eth.type) == (MAC_B, MAC_A, Ether(frame).type)
        assert reply[14:] == P.echo_reply_ip(frame[14:])
    frame = bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff") / IP(src="10.0.0.1", dst="10.0.0.2")
                  / ICMP())
    assert P.icmp_echo_reply_ether(frame) is None  # broadcast MAC and no MAC of my own
    reply = P.icmp_echo_reply_ether(frame, P.pack_mac(MAC_B))
    assert reply is not None and Ether(reply).src == MAC_B
    v6 = bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2")
               / ICMPv6EchoRequest())
    assert P.icmp_echo_reply_ether(v6) is None and P.icmpv6_echo_reply_ether(v6) is not None
    assert P.echo_reply_ether(frame[:13]) is None


# -- ARP and NDP -----------------------------------------------------------------
def arp_who_has(pdst: str, psrc: str = "10.0.0.1", op: int = 1) -> bytes:
    return bytes(Ether(src=MAC_A, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=op, hwsrc=MAC_A, psrc=psrc, pdst=pdst))


def test_arp_reply() -> None:
    reply = P.arp_reply(arp_who_has("10.0.0.2"), "10.0.0.2", MAC_B)
    assert reply is not None
    eth = Ether(reply)
    assert (eth.src, eth.dst, eth.type) == (MAC_B, MAC_A, 0x0806)
    arp = eth[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.hwdst, arp.pdst) == (
        2, MAC_B, "10.0.0.2", MAC_A, "10.0.0.1")
    padded = arp_who_has("10.0.0.2") + b"\0" * 18
    assert P.arp_reply(padded, "10.0.0.2", MAC_B) == reply


def test_arp_reply_target_forms() -> None:
    req = arp_who_has("10.0.0.2")
    assert P.arp_reply(req, "10.0.0.3", MAC_B) is None
    assert P.arp_reply(req, {P.pack_ip("10.0.0.3"), P.pack_ip("10.0.0.2")}, MAC_B) is not None
    assert P.arp_reply(req, P.ANY_ADDRESS, P.pack_mac(MAC_B)) is not None
    assert P.arp_reply(arp_who_has("10.0.0.2", op=2), "10.0.0.2", MAC_B) is None
    probe = arp_who_has("10.0.0.2", psrc="0.0.0.0")
    assert P.arp_reply(probe, "10.0.0.2", MAC_B) is not None  # defend my own address
    assert P.arp_reply(probe, P.ANY_ADDRESS, MAC_B) is None
    gratuitous = arp_who_has("10.0.0.2", psrc="10.0.0.2")
    assert P.arp_reply(gratuitous, P.ANY_ADDRESS, MAC_B) is None
    assert P.arp_reply(req[:41], "10.0.0.2", MAC_B) is None


def test_arp_request_builder_matches_scapy() -> None:
    assert P.arp_request(MAC_A, "10.0.0.1", "10.0.0.2") == arp_who_has("10.0.0.2")


def ns_frame(target: str, src: str = "fd00::1", hlim: int = 255, slla: bool = True) -> bytes:
    group = "ff02::1:ff" + format(int.from_bytes(P.pack_ip(target)[13:], "big"), "06x")[:2] \
        + ":" + format(int.from_bytes(P.pack_ip(target)[14:], "big"), "04x")
    pkt = IPv6(src=src, dst=group, hlim=hlim) / ICMPv6ND_NS(tgt=target)
    if slla:
        pkt = pkt / ICMPv6NDOptSrcLLAddr(lladdr=MAC_A)
    return bytes(Ether(src=MAC_A, dst="33:33:ff:00:00:02") / pkt)


def test_ndp_advert() -> None:
    reply = P.ndp_advert(ns_frame("fd00::2"), "fd00::2", MAC_B)
    assert reply is not None
    eth = Ether(reply)
    assert (eth.src, eth.dst) == (MAC_B, MAC_A)
    ip = eth[IPv6]
    assert (ip.src, ip.dst, ip.hlim) == ("fd00::2", "fd00::1", 255)
    na = eth[ICMPv6ND_NA]
    assert (na.type, na.R, na.S, na.O, na.tgt) == (136, 0, 1, 1, "fd00::2")
    assert eth[ICMPv6NDOptDstLLAddr].lladdr == MAC_B
    assert rebuilt(reply, Ether, (ICMPv6ND_NA, "cksum")) == reply


def test_ndp_advert_dad_and_ignores() -> None:
    dad = ns_frame("fd00::2", src="::", slla=False)
    reply = P.ndp_advert(dad, "fd00::2", MAC_B)
    assert reply is not None
    eth = Ether(reply)
    assert (eth.dst, eth[IPv6].dst, eth[ICMPv6ND_NA].S, eth[ICMPv6ND_NA].O) == (
        "33:33:00:00:00:01", "ff02::1", 0, 1)
    assert rebuilt(reply, Ether, (ICMPv6ND_NA, "cksum")) == reply
    assert P.ndp_advert(dad, P.ANY_ADDRESS, MAC_B) is None
    assert P.ndp_advert(ns_frame("fd00::2", src="::"), "fd00::2", MAC_B) is None  # DAD + SLLA
    assert P.ndp_advert(ns_frame("fd00::3"), "fd00::2", MAC_B) is None
    assert P.ndp_advert(ns_frame("fd00::2", hlim=64), "fd00::2", MAC_B) is None
    assert P.ndp_advert(ns_frame("fd00::2"), P.ANY_ADDRESS, MAC_B) is not None
    no_slla = P.ndp_advert(ns_frame("fd00::2", slla=False), "fd00::2", MAC_B)
    assert no_slla is not None and Ether(no_slla).dst == MAC_A
    bad_option = bytearray(ns_frame("fd00::2"))
    bad_option[14 + 40 + 24 + 1] = 0  # option length 0 is invalid
    assert P.ndp_advert(bytes(bad_option), "fd00::2", MAC_B) is None


def test_ndp_solicit_builder() -> None:
    frame = P.ndp_solicit(MAC_A, "fd00::1", "fd00::2")
    eth = Ether(frame)
    assert eth.dst == "33:33:ff:00:00:02" and eth[IPv6].dst == "ff02::1:ff00:2"
    assert eth[ICMPv6ND_NS].tgt == "fd00::2" and eth[ICMPv6NDOptSrcLLAddr].lladdr == MAC_A
    assert rebuilt(frame, Ether, (ICMPv6ND_NS, "cksum")) == frame
    assert P.ndp_advert(frame, "fd00::2", MAC_B) is not None


# -- builders, classify, vnet --------------------------------------------------------
def test_icmp_echo_request_builders() -> None:
    v4 = P.icmp_echo_request("10.0.0.1", "10.0.0.2", 7, 8, b"data")
    assert rebuilt(v4, IP, (IP, "chksum"), (ICMP, "chksum")) == v4
    assert (IP(v4)[ICMP].type, IP(v4)[ICMP].id, IP(v4)[ICMP].seq) == (8, 7, 8)
    v6 = P.icmp_echo_request("fd00::1", "fd00::2", 7, 8, b"data")
    assert rebuilt(v6, IPv6, (ICMPv6EchoRequest, "cksum")) == v6
    assert IPv6(v6)[ICMPv6EchoRequest].data == b"data"
    with pytest.raises(ValueError):
        P.icmp_echo_request("10.0.0.1", "fd00::2")
    info = P.parse_echo(v6)
    assert info == P.EchoInfo(6, 128, 7, 8, P.pack_ip("fd00::1"), P.pack_ip("fd00::2"), b"data")
    reply = P.echo_reply_ip(v4)
    assert reply is not None
    info4 = P.parse_echo(reply)
    assert info4 is not None and (info4.version, info4.type, info4.payload) == (4, 0, b"data")
    assert P.parse_echo(bytes(IP() / UDP())) is None and P.parse_echo(b"") is None


def test_ether_frame_and_mac_helpers() -> None:
    assert P.ether_frame(MAC_B, MAC_A, 0x0800, b"x") == bytes(
        Ether(dst=MAC_B, src=MAC_A, type=0x0800) / b"x")
    assert P.pack_mac("02-00-00-00-00-0A") == bytes.fromhex("02000000000a")
    with pytest.raises(ValueError):
        P.pack_mac("02:00")
    with pytest.raises(ValueError):
        P.pack_ip(b"\x01\x02")


@pytest.mark.parametrize(("pkt", "framing", "expected"), [
    (IP(dst="1.2.3.4") / ICMP(), "ip", "icmp"),
    (IP(dst="1.2.3.4") / TCP(), "ip", "tcp"),
    (IP(dst="1.2.3.4") / UDP(), "ip", "udp"),
    (IP(dst="1.2.3.4", proto=47), "ip", "ipv4"),
    (IPv6(dst="::1") / ICMPv6EchoRequest(), "ip", "icmp6"),
    (IPv6(dst="::1") / IPv6ExtHdrHopByHop() / UDP(), "ip", "udp"),
    (IPv6(dst="::1") / IPv6ExtHdrFragment(offset=0) / TCP(), "ip", "tcp"),
    (IPv6(dst="::1") / IPv6ExtHdrFragment(offset=8) / Raw(b"x" * 8), "ip", "ipv6"),
    (IPv6(dst="::1", nh=59), "ip", "ipv6"),
    (Raw(b"\x00" * 30), "ip", "other"),
    (Raw(b"\x45\x00"), "ip", "malformed"),
    (Ether() / ARP(), "ether", "arp"),
    (Ether() / IP() / UDP(), "ether", "udp"),
    (Ether() / IPv6() / ICMPv6ND_NS(), "ether", "icmp6"),
    (Ether(type=0x88CC) / Raw(b"lldp"), "ether", "other"),
    (Raw(b"\x00" * 10), "ether", "malformed"),
])
def test_classify(pkt: object, framing: str, expected: str) -> None:
    data = bytes(pkt)  # type: ignore[call-overload]
    assert P.classify(data, framing) == expected
    assert P.classify(P.add_vnet_hdr(data), framing, vnet_hdr=True) == expected
    assert expected in P.CLASSES


def test_vnet_helpers() -> None:
    pkt = bytes(IP(dst="1.2.3.4") / UDP() / b"x")
    framed = P.add_vnet_hdr(pkt)
    assert len(framed) == P.VNET_HDR_LEN + len(pkt) and framed[:10] == bytes(10)
    assert P.strip_vnet_hdr(framed) == pkt
    assert P.vnet_to_plain(framed) == pkt
    assert P.vnet_to_plain(b"\0" * 5) is None
    gso = struct.pack("<BBHHHH", 1, 1, 40, 1448, 20, 16) + pkt
    assert P.vnet_to_plain(gso) is None


def test_vnet_to_plain_completes_partial_checksum() -> None:
    full = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / (b"z" * 33))
    # CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not complemented.
    pseudo = P.pack_ip("10.0.0.1") + P.pack_ip("10.0.0.2") + struct.pack("!xBH", 17, 8 + 33)
    partial = bytearray(full)
    partial[26:28] = struct.pack("!H", 0xFFFF - P.checksum(pseudo))
    hdr = struct.pack("<BBHHHH", 1, 0, 0, 0, 20, 6)  # NEEDS_CSUM at offset 20+6
    plain = P.vnet_to_plain(hdr + bytes(partial))
    assert plain is not None and bytes(plain) == full
    bad = struct.pack("<BBHHHH", 1, 0, 0, 0, 200, 6) + bytes(partial)
    assert P.vnet_to_plain(bad) is None


# -- never raise on garbage ------------------------------------------------------------
def _samples() -> list[bytes]:
    return [
        bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"abcdefgh"),
        bytes(IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(data=b"xy")),
        arp_who_has("10.0.0.2"),
        ns_frame("fd00::2"),
        bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()),
        bytes(Ether(src=MAC_A, dst=MAC_B) / IPv6(src="fd00::1", dst="fd00::2")
              / ICMPv6EchoRequest()),
    ]


def test_fuzz_never_raises() -> None:
    rng = random.Random(20240601)
    inputs: list[bytes] = []
    for sample in _samples():
        inputs += [sample[:n] for n in range(len(sample) + 1)]
        for _ in range(300):
            mutated = bytearray(sample)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
            inputs.append(bytes(mutated)[: rng.randint(0, len(mutated))])
    inputs += [os.urandom(rng.randint(0, 120)) for _ in range(2000)]
    inputs += [bytes([b]) + os.urandom(rng.randint(0, 80)) for b in (0x45, 0x46, 0x60, 0x4F)
               for _ in range(200)]
    me4, me6, mac = P.pack_ip("10.0.0.2"), P.pack_ip("fd00::2"), P.pack_mac(MAC_B)
    for data in inputs:
        for view in (data, memoryview(data)):
            P.parse_ipv4(view)
            P.parse_ipv6(view)
            P.ip_plausible(view)
            P.parse_echo(view)
            P.vnet_to_plain(view)
            for framing in ("ip", "ether"):
                assert P.classify(view, framing) in P.CLASSES
                assert P.classify(view, framing, vnet_hdr=True) in P.CLASSES
            P.icmp_echo_reply_ip(view)
            P.icmpv6_echo_reply_ip(view, src=me6)
            P.echo_reply_ether(view, mac, src=me4)
            P.echo_reply_ether(view)
            P.arp_reply(view, P.ANY_ADDRESS, mac)
            P.arp_reply(view, me4, mac)
            P.ndp_advert(view, P.ANY_ADDRESS, mac)
            P.ndp_advert(view, me6, mac)
