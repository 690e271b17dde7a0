"""Userspace segmentation and coalescing (``netvirt.wire.tso``, ``netvirt.wire.csum``).

Checked against an independent implementation: scapy recomputes every
checksum of every segment; the ones'-complement sums against a plain loop
over 16-bit words. Property-style: generated packets (sizes, MSS, flags,
sequence numbers near the wrap, IPv4 and IPv6) round-trip through
``segment`` -> ``coalesce_tcp``, and random or truncated input never raises.
"""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from netvirt.wire import csum, tso
from netvirt.wire.packets import VNET_ZERO_HDR

SEED = 1212


def vnet(gso_type: int, gso_size: int, flags: int = 1, start: int = 0, offset: int = 0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, 0, gso_size, start, offset)


def tcp_packet(version: int, payload: bytes, *, seq: int = 1000, flags: str = "PA",
               options: list[Any] | None = None, ident: int = 7) -> bytes:
    l3: Any = (IP(src="10.0.0.1", dst="10.0.0.2", id=ident, flags="DF") if version == 4
               else IPv6(src="fd00::1", dst="fd00::2"))
    return bytes(l3 / TCP(sport=40000, dport=5001, seq=seq, flags=flags,
                          options=options or []) / payload)


def checksums_ok(packet: bytes) -> bool:
    """Every checksum in ``packet`` is what scapy computes from scratch."""
    cls: Any = IP if packet[0] >> 4 == 4 else IPv6
    parsed = cls(packet)
    if cls is IP:
        del parsed.chksum
    del parsed.payload.chksum
    return bytes(cls(bytes(parsed))) == packet


def ones_sum(data: bytes) -> int:
    """16-bit ones'-complement sum by struct words (independent of netvirt.wire.csum)."""
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def l4_checksum_ok(packet: bytes) -> bool:
    """The IPv4 header and TCP/UDP checksums of ``packet`` verify (sum to 0xFFFF)."""
    if packet[0] >> 4 == 4:
        l4 = (packet[0] & 15) * 4
        if ones_sum(packet[:l4]) != 0xFFFF:
            return False
        pseudo = packet[12:20] + struct.pack("!HH", packet[9], len(packet) - l4)
    else:
        l4 = 40
        pseudo = packet[8:40] + struct.pack("!HH", packet[6], len(packet) - l4)
    return ones_sum(pseudo + packet[l4:]) == 0xFFFF


def packets_of(run: tso.Run) -> list[bytes]:
    return [bytes(run.packet(i)) for i in range(run.n)]


def slow_sum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += data[i] << 8 | data[i + 1]
    return total % 0xFFFF


# -- checksums -------------------------------------------------------------------------
def test_piece_sums_match_a_plain_loop() -> None:
    rng = random.Random(SEED)
    for _ in range(300):
        data = rng.randbytes(rng.randint(0, 3000))
        step = rng.choice([1, 2, 7, 64, 100, 1348, 1349, 1350, rng.randint(1, 3000)])
        want = [slow_sum(data[o : o + step]) for o in range(0, len(data), step)]
        assert csum.piece_sums(data, step) == want
        assert csum.word_sum(data) == slow_sum(data)
        assert csum.total_sum(data) == slow_sum(data)
    # the largest sums the arrays hold: 64 KiB of 0xFF, in rows of 32-bit and 16-bit words
    ones = b"\xff" * 65535
    for step in (65532, 65534, 1348, 1350):
        assert csum.piece_sums(ones, step) == [slow_sum(ones[o : o + step])
                                               for o in range(0, len(ones), step)]
    assert csum.total_sum(ones) == slow_sum(ones)


def test_fold_edges() -> None:
    assert csum.fold(0) == 0 and csum.fold(0xFFFF) == 0xFFFF and csum.fold(0x1FFFE) == 0xFFFF
    assert csum.checksum_field(0) == 0xFFFF  # nothing summed: the complement of zero
    assert csum.checksum_field(0xFFFF) == 0  # a sum of "negative zero"
    assert csum.checksum_field(0x1234) == 0xFFFF - 0x1234


# -- segment -----------------------------------------------------------------------------
@pytest.mark.parametrize("version,gso_type", [(4, 1), (6, 4)])
def test_segment_tcp_against_scapy(version: int, gso_type: int) -> None:
    payload = bytes(range(256)) * 40
    packet = tcp_packet(version, payload, seq=2**32 - 100, flags="FPA",
                        options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))])
    run = tso.segment(vnet(gso_type, 1348) + packet, 1400)
    assert run is not None and run.per in (0, 2)
    segs = packets_of(run)
    cls: Any = IP if version == 4 else IPv6
    parsed = [cls(s) for s in segs]
    hdr = (20 if version == 4 else 40) + 32
    mss = min(1348, 1400 - hdr)
    assert run.step == hdr + mss and run.n == len(segs) == -(-len(payload) // mss)
    assert all(len(s) <= 1400 for s in segs)
    assert b"".join(bytes(p[TCP].payload) for p in parsed) == payload
    assert [p[TCP].seq for p in parsed] == [(2**32 - 100 + i * mss) % 2**32 for i in range(run.n)]
    assert [str(p[TCP].flags) for p in parsed] == ["A"] * (run.n - 1) + ["FPA"]
    assert all(checksums_ok(s) for s in segs)
    if version == 4:
        assert [p[IP].id for p in parsed] == list(range(7, 7 + run.n))


def test_segment_cuts_below_gso_size_to_fit_the_wire() -> None:
    packet = tcp_packet(4, bytes(20000))
    run = tso.segment(vnet(1, 1460) + packet, 1472)  # a 1500 tun on a 1500 underlay
    assert run is not None and run.step == 1472
    assert all(len(s) <= 1472 and checksums_ok(s) for s in packets_of(run))
    # a plain TCP packet above the limit is cut too; other protocols are not
    big = tcp_packet(4, bytes(1460))
    run = tso.segment(VNET_ZERO_HDR + big, 1400)
    assert run is not None and run.n == 2 and all(checksums_ok(s) for s in packets_of(run))
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / bytes(1472))
    run = tso.segment(VNET_ZERO_HDR + udp, 1400)
    assert run is not None and run.n == 1 and packets_of(run) == [udp]


def test_segment_udp_l4_and_partial_checksums() -> None:
    data = bytes(range(256)) * 12
    for l3 in (IP(src="10.0.0.1", dst="10.0.0.2"), IPv6(src="fd00::1", dst="fd00::2")):
        udp = bytes(l3 / UDP(sport=1, dport=2) / data)
        run = tso.segment(vnet(5, 1000) + udp, 1400)
        assert run is not None and run.n == 4
        segs = packets_of(run)
        assert all(checksums_ok(s) for s in segs)
        cls: Any = type(l3)
        assert b"".join(bytes(cls(s)[UDP].payload) for s in segs) == data
    # NEEDS_CSUM without GSO: the field holds the pseudo-header sum, the rest is done here
    whole = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / b"hello")
    pseudo = csum.fold(csum.word_sum(whole[12:20]) + 17 + len(whole) - 20)
    partial = whole[:26] + struct.pack("!H", pseudo) + whole[28:]
    run = tso.segment(vnet(0, 0, 1, 20, 6) + partial, 1400)
    assert run is not None and packets_of(run) == [whole]


@pytest.mark.parametrize("packet", [
    vnet(1, 1000) + tcp_packet(4, bytes(3000))[:30],  # truncated
    vnet(1, 0) + tcp_packet(4, bytes(3000)),  # no segment size
    vnet(3, 1000) + tcp_packet(4, bytes(3000)),  # UFO
    vnet(5, 1000) + tcp_packet(4, bytes(3000)),  # type does not match the protocol
    vnet(1, 1000) + tcp_packet(6, bytes(3000)),  # TCPV4 on IPv6
    vnet(4, 1000) + bytes(IPv6(nh=0) / (b"\0" * 60)),  # extension header
    vnet(1, 1000) + b"\x70" + bytes(60),  # not IP
    vnet(1, 1) + tcp_packet(4, bytes(3000)),  # 3000 segments of one byte
    b"\x01\x01",
])
def test_segment_rejects(packet: bytes) -> None:
    assert tso.segment(packet, 1400) is None


# -- coalesce_tcp ----------------------------------------------------------------------
def test_round_trip_property() -> None:
    rng = random.Random(SEED)
    for _ in range(250):
        version = rng.choice([4, 6])
        size = rng.choice([1, rng.randint(1, 3000), rng.randint(3000, 60000)])
        payload = rng.randbytes(size)
        seq = rng.choice([0, 2**32 - rng.randint(1, 5000), rng.randrange(2**32)])
        flags = rng.choice(["A", "PA"])
        opts = rng.choice([None, [("NOP", None), ("NOP", None), ("Timestamp", (5, 6))]])
        packet = tcp_packet(version, payload, seq=seq, flags=flags, options=opts,
                            ident=rng.randrange(65536))
        gso_size = rng.randint(48, 1460)
        limit = rng.choice([1400, 1472, 9000])
        run = tso.segment(vnet(1 if version == 4 else 4, gso_size) + packet, limit)
        assert run is not None
        segs = packets_of(run)
        assert all(l4_checksum_ok(s) for s in segs), (version, size, gso_size)
        assert checksums_ok(segs[0]) and checksums_ok(segs[-1])
        if run.n < 2:
            continue
        merged = tso.coalesce_tcp(b"".join(segs), run.step)
        if len(packet) > 65535:  # bigger than one IP packet may be: the caller cuts runs
            continue
        assert merged is not None, (version, size, gso_size, limit)
        merged = bytes(merged)
        csum.use_numpy(False)  # the payloads gathered by a join instead of one array copy
        try:
            assert tso.coalesce_tcp(b"".join(segs), run.step) == merged
        finally:
            csum.use_numpy(True)
        flags_, gso_type, hdr_len, mss, start, offset = struct.unpack_from("<BBHHHH", merged)
        l4 = 20 if version == 4 else 40
        assert (flags_, gso_type, start, offset) == (1, 1 if version == 4 else 4, l4, 16)
        assert mss == run.step - hdr_len
        cls: Any = IP if version == 4 else IPv6
        body = cls(merged[10:])
        assert bytes(body[TCP].payload) == payload
        assert body[TCP].seq == seq and str(body[TCP].flags) == flags
        # the partial checksum is the pseudo-header sum, as a tun expects with NEEDS_CSUM
        src_dst = merged[10 + 12 : 10 + 20] if version == 4 else merged[10 + 8 : 10 + 40]
        want = csum.fold(csum.word_sum(src_dst) + 6 + len(merged) - 10 - l4)
        assert struct.unpack_from("!H", merged, 10 + l4 + 16)[0] == want


def test_coalesce_refuses_what_tcp_would_not_merge() -> None:
    payload = bytes(range(256)) * 20
    packet = tcp_packet(4, payload, flags="A")
    run = tso.segment(vnet(1, 1000) + packet, 1400)
    assert run is not None
    segs = packets_of(run)
    good = b"".join(segs)
    assert tso.coalesce_tcp(good, run.step) is not None

    def changed(index: int, offset: int, value: int) -> bytes:
        s = list(segs)
        s[index] = s[index][:offset] + bytes([value]) + s[index][offset + 1 :]
        return b"".join(s)

    for index, offset, value in [
        (1, 23, 7),  # another destination port
        (2, 8, 3),  # another TTL
        (1, 40 - 20 + 20 + 13, 0x11),  # FIN|ACK in the middle
        (0, 20 + 4, 9),  # a sequence gap
        (3, 60, segs[3][60] ^ 1),  # a payload byte flipped: the checksum fails
        (1, 1, 4),  # another TOS
    ]:
        assert tso.coalesce_tcp(changed(index, offset, value), run.step) is None
    assert tso.coalesce_tcp(segs[0], run.step) is None  # one segment: nothing to merge
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / bytes(100))
    assert tso.coalesce_tcp(udp * 3, len(udp)) is None


def test_random_input_never_raises() -> None:
    rng = random.Random(SEED + 1)
    base = tcp_packet(4, bytes(5000))
    for _ in range(5000):
        kind = rng.random()
        if kind < 0.4:
            data = rng.randbytes(rng.randint(0, 200))
        elif kind < 0.8:  # a real packet, truncated or with a byte changed
            data = bytearray(base[: rng.randint(0, len(base))])
            if data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        else:
            data = bytes([0x45]) + rng.randbytes(rng.randint(20, 3000))
        header = vnet(rng.choice([0, 1, 3, 4, 5, 0x81, 9]), rng.randint(0, 2000),
                      rng.choice([0, 1, 2]), rng.randint(0, 100), rng.randint(0, 30))
        run = tso.segment(header + data, rng.choice([1, 68, 1400, 65535]))
        if run is not None:
            assert run.n <= tso.MAX_SEGMENTS
        tso.coalesce_tcp(data * rng.randint(1, 3), rng.randint(0, 2000))


def test_array_and_loop_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy path (one buffer) and the per-segment loop give the same packets."""
    rng = random.Random(SEED + 2)
    for _ in range(60):
        version = rng.choice([4, 6])
        if rng.random() < 0.7:
            size, flags = rng.randint(0, 40000), rng.choice(["A", "PA", "FPA", "CA"])
            ident = rng.choice([7, 65535 - rng.randint(0, 900), rng.randrange(65536)])
            packet = tcp_packet(version, rng.randbytes(size), seq=rng.randrange(2**32),
                                flags=flags, ident=ident)
            header = vnet(1 if version == 4 else 4, rng.randint(48, 1460))
            # one of the same shape (the array path reuses what depends on the shape only)
            again = tcp_packet(version, rng.randbytes(size), seq=rng.randrange(2**32),
                               flags=rng.choice(["A", "PA", "FPA", "CA"]),
                               ident=rng.randrange(65536))
            a = tso.segment(header + again, 1400)
            b = tso.segment(header + again, 1400, contiguous=False)
            assert (a is None and b is None) or (a is not None and b is not None
                                                 and packets_of(a) == packets_of(b))
        else:
            l3: Any = IP(src="10.0.0.1", dst="10.0.0.2") if version == 4 else IPv6()
            packet = bytes(l3 / UDP(sport=1, dport=2) / rng.randbytes(rng.randint(0, 20000)))
            header = vnet(5, rng.randint(300, 1400))
        a = tso.segment(header + packet, 1400)
        b = tso.segment(header + packet, 1400, contiguous=False)
        if a is None or b is None:
            assert a is b is None
            continue
        assert (a.step, a.n) == (b.step, b.n) and packets_of(a) == packets_of(b)
    data = rng.randbytes(9000)
    csum.use_numpy(False)  # the sums without numpy
    try:
        assert csum.piece_sums(data, 1400) == [slow_sum(data[o : o + 1400])
                                               for o in range(0, 9000, 1400)]
        assert csum.numpy_module() is None
    finally:
        csum.use_numpy(True)


def test_keep_freed_heap_defers_to_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tunnels raise glibc's trim threshold (see ``netvirt._sys.keep_freed_heap``),
    unless the user chose one with ``MALLOC_TRIM_THRESHOLD_``."""
    from netvirt import _sys

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert _sys.keep_freed_heap(16 << 20) is False
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    assert _sys.keep_freed_heap(16 << 20) is (getattr(_sys._libc, "mallopt", None) is not None)
