"""Tap frames behind a vnet header: GSO-aware wire length, segmentation, visible corruption (pure)."""

from __future__ import annotations

import struct
from random import Random

from netvirt.impair.frames import TapFrames
from netvirt.packets import checksum

ETH = bytes.fromhex("020000000002" "020000000001" "0800")


def tcp_frame(payload: int, *, gso_size: int = 0) -> bytes:
    total = 20 + 32 + payload
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                               bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])))
    struct.pack_into("!H", ip, 10, checksum(ip))
    tcp = bytearray(struct.pack("!HHIIBBHHH", 5000, 6000, 1000, 0, 8 << 4, 0x18, 65535, 0, 0)) + bytes(12)
    pseudo = int.from_bytes(ip[12:20], "big") + 6 + 32 + payload
    struct.pack_into("!H", tcp, 16, (pseudo % 0xFFFF))  # partial: the pseudo-header sum
    flags, gso = (1, 1) if gso_size else (1, 0)
    vnet = struct.pack("<BBHHHH", flags, gso, 66, gso_size, 34, 16)
    return vnet + ETH + bytes(ip) + bytes(tcp) + bytes(range(256)) * (payload // 256) + bytes(payload % 256)


def test_wire_length_counts_each_segment_s_headers() -> None:
    f = TapFrames()
    plain = tcp_frame(1000)
    assert f.wire_len(plain) == len(plain) - 10
    big = tcp_frame(10_000, gso_size=1448)  # 7 segments of at most 1448 bytes
    assert f.wire_len(big) == (len(big) - 10) + 6 * 66


def test_segments_are_ordinary_frames_with_checksums() -> None:
    f = TapFrames()
    segs = f.segment(tcp_frame(10_000, gso_size=1448))
    assert len(segs) == 7
    assert sum(len(s) - 10 - 66 for s in segs) == 10_000
    for s in segs:
        assert s[:10] == bytes(10) and s[10:24] == ETH and len(s) - 10 <= 1514
        ip = s[24:]
        assert checksum(ip[:20]) == 0
        pseudo = int.from_bytes(ip[12:20], "big") + 6 + len(ip) - 20
        assert checksum(ip[20:], pseudo) == 0
    assert sum(f.wire_len(s) for s in segs) == f.wire_len(tcp_frame(10_000, gso_size=1448))
    plain = tcp_frame(100)
    assert f.segment(plain) == [plain]


def test_corruption_is_visible_to_the_receiver() -> None:
    f = TapFrames()
    frame = tcp_frame(1000)
    bad = f.corrupt(frame, Random(3))
    assert bad[:10] == bytes(10)  # no NEEDS_CSUM any more: the receiver verifies
    body = bytearray(bad[10:])
    good = bytearray(frame[10:])
    at = 14 + 20 + 16
    struct.pack_into("!H", good, at, checksum(memoryview(good)[34:]))
    flips = [a ^ b for a, b in zip(body, good, strict=True) if a != b]
    assert len(flips) == 1 and bin(flips[0]).count("1") == 1
