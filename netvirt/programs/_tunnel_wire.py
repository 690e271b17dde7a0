"""The tunnels' wire decisions, pure: what to send for what a device hands out,
what to write into a device for what arrives. No sockets, no fds: tested alone.

The wire is the standard one (SPEC.md section 2): one ordinary IP packet per
datagram, each at most ``limit`` bytes, the largest inner packet the underlay
carries without fragmenting (path MTU minus the outer IP and UDP headers).

Device -> wire (:func:`plan_sends`): packets read from a tun, each with a
``virtio_net_hdr`` when the device has one. A plain packet (zero header, or
no header at all) that fits goes as it is; consecutive packets of one size
(plus one shorter last) form one :class:`~netvirt.wire.tso.Run`, which
the UDP tunnel sends with one ``sendmsg`` + ``UDP_SEGMENT``. A GSO
super-packet, a packet whose checksum was left to "hardware", and a TCP
packet above ``limit`` become their wire segments
(:func:`~netvirt.wire.tso.segment`), a run of their own. Anything else above
``limit`` still goes (the underlay will fragment it) and is counted as
``too_big``: a tun MTU of at most ``limit`` avoids it.

Wire -> device (:func:`plan_writes`): the datagrams of one ``UDP_GRO``
read, ``segment`` bytes each (the last maybe shorter). On a device with a
vnet header, runs of TCP segments of one flow are merged back into one
super-packet (:func:`~netvirt.wire.tso.coalesce_tcp`) and runs of UDP
datagrams of one flow into one ``UDP_L4`` packet
(:func:`~netvirt.wire.gso.udp_merge`): one write each; everything else is
written packet by packet, behind a zero header where the device has one.
A datagram that is not a plausible IP packet is counted, never written.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from typing import Any

from ..wire.csum import numpy_module
from ..wire.gso import UDP_MAX_SEGMENTS, udp_merge
from ..wire.packets import VNET_HDR_LEN, VNET_ZERO_HDR, Buffer, ip_plausible, vnet_to_plain
from ..wire.tso import Run, coalesce_tcp, merge_limit, segment

__all__ = ["Sends", "Writes", "complete_checksums", "plan_sends", "plan_writes"]

_VNET = struct.Struct("<BBHHHH")
_LITTLE = sys.byteorder == "little"


@dataclass
class Sends:
    """What :func:`plan_sends` decided: runs to send, and what it counted."""

    runs: list[Run] = field(default_factory=list)
    dropped: int = 0  #: device packets that could not be made wire packets
    segmented: int = 0  #: device packets cut into several wire packets
    too_big: int = 0  #: wire packets above the limit (the underlay fragments them)


@dataclass
class Writes:
    """What :func:`plan_writes` decided: packets to write, and what it counted."""

    #: ``(buffer, datagrams it carries)``: merged super-packets carry several
    packets: list[tuple[Buffer, int]] = field(default_factory=list)
    malformed: int = 0
    merged: int = 0  #: super-packets among ``packets``


def plan_sends(packets: list[bytes], vnet: bool, limit: int, ether: bool = False) -> Sends:
    """Wire runs for a batch of device packets (see the module doc).

    ``ether``: the packets are Ethernet frames (a tap): ``limit`` then counts
    the 14-byte Ethernet header too, and segments of a frame's GSO packet
    each get a copy of its Ethernet header."""
    out = Sends()
    if ether:
        _frames(packets, vnet, limit, out)
        return out
    if vnet and len(packets) >= 4 and packets[0][:2] == b"\x01\x00" and numpy_module() is not None:
        run = _uniform_batch(packets, limit)  # a flood of one size: one array pass for all
        if run is not None:
            out.runs.append(run)
            return out
    plan = _Planner(out, limit)
    for packet in packets:
        if not vnet:
            if len(packet) > limit:
                plan.cut(VNET_ZERO_HDR + packet)
            else:
                plan.plain(packet)
        elif packet[:VNET_HDR_LEN] == VNET_ZERO_HDR and len(packet) - VNET_HDR_LEN <= limit:
            plan.plain(memoryview(packet)[VNET_HDR_LEN:])
        elif (len(packet) - VNET_HDR_LEN <= limit and packet[:2] == b"\x01\x00"
              and len(packet) >= VNET_HDR_LEN + 28 and numpy_module() is not None):
            plan.needs_csum(packet)  # a checksum left to "hardware", no GSO: batched
        else:
            plan.cut(packet)
    plan.flush()
    return out


class _Planner:
    """The state of :func:`plan_sends`: the open run, and packets waiting for checksums."""

    def __init__(self, out: Sends, limit: int) -> None:
        self.out, self.runs, self.limit = out, out.runs, limit
        self.open_step = 0  # the step of the last run if plain packets may still join it
        self.pending: list[bytes] = []  # NEEDS_CSUM packets of one size and layout
        self.key = b""

    def plain(self, packet: Buffer) -> None:
        if self.pending:
            self.flush()
        size, runs = len(packet), self.runs
        if size > self.limit:
            self.out.too_big += 1
        step = self.open_step
        if size and step and size <= step and runs[-1].n < UDP_MAX_SEGMENTS:
            last = runs[-1]
            last.bufs.append(packet)
            runs[-1] = last._replace(n=last.n + 1)
            if size < step:
                self.open_step = 0  # a shorter packet ends a run
        else:
            runs.append(Run([packet], size, 1, 1))
            self.open_step = size

    def cut(self, packet: Buffer) -> None:
        if self.pending:
            self.flush()
        run = segment(packet, self.limit)
        if run is None:
            self.out.dropped += 1
        elif run.n > 1:
            self.out.segmented += 1
            self.runs.append(run)
            self.open_step = 0
        else:
            self.plain(run.packet(0))

    def needs_csum(self, packet: bytes) -> None:
        key = bytes(packet[6:10]) + len(packet).to_bytes(4, "big")  # csum_start, csum_offset
        if self.pending and key != self.key:
            self.flush()
        self.key = key
        self.pending.append(packet)
        if len(self.pending) == UDP_MAX_SEGMENTS:
            self.flush()

    def flush(self) -> None:
        pending, self.pending = self.pending, []
        run = complete_checksums(pending) if len(pending) >= 4 else None
        if run is not None:
            self.runs.append(run)
            self.open_step = 0
            return
        for packet in pending:
            self.cut(packet)


def _uniform_batch(packets: list[bytes], limit: int) -> Run | None:
    """:func:`complete_checksums` for a batch whose packets all have one size and one
    vnet header (NEEDS_CSUM, no GSO), checked with array operations; else None."""
    size = len(packets[0])
    if size - VNET_HDR_LEN > limit or size < VNET_HDR_LEN + 28 or len(packets) > UDP_MAX_SEGMENTS:
        return None
    if len(set(map(len, packets))) != 1:
        return None
    np: Any = numpy_module()
    grid = np.frombuffer(b"".join(packets), np.uint8).reshape(len(packets), size)
    if not (grid[:, :VNET_HDR_LEN] == grid[0, :VNET_HDR_LEN]).all():
        return None
    return complete_checksums(packets, grid)


def complete_checksums(packets: list[bytes], grid: Any = None) -> Run | None:
    """One buffer of the plain packets behind ``packets``' vnet headers, each with the
    checksum it left to "hardware" (NEEDS_CSUM) completed: one array sum for all.
    The packets share one size and checksum layout; None if that cannot be summed
    in 16-bit rows (odd sizes or offsets)."""
    flags, _gso, _hl, _gs, start, offset = _VNET.unpack_from(packets[0])
    size = len(packets[0]) - VNET_HDR_LEN
    at = start + offset
    np: Any = numpy_module()
    if size & 1 or start & 1 or at + 2 > size or np is None:
        return None
    count = len(packets)
    if grid is None:
        out: Any = bytearray(b"".join([memoryview(p)[VNET_HDR_LEN:] for p in packets]))
    else:  # the packets joined, vnet headers included: drop those columns
        out = np.ascontiguousarray(grid[:, VNET_HDR_LEN:]).reshape(-1)
    words = np.frombuffer(out, np.uint16).reshape(count, size // 2)
    sums = words[:, start // 2 :].sum(axis=1, dtype=np.uint64) % 0xFFFF
    if _LITTLE:
        sums = sums * 256 % 0xFFFF  # native words: the byte-swapped class
    check = (0xFFFF - sums) % 0xFFFF
    if offset == 6:  # UDP: a computed 0 is sent as 0xFFFF (0 means "no checksum")
        check[check == 0] = 0xFFFF
    grid = np.frombuffer(out, np.uint8).reshape(count, size)
    grid[:, at] = check >> 8
    grid[:, at + 1] = check & 0xFF
    return Run([out], size, count, 0)


def _frames(frames: list[bytes], vnet: bool, limit: int, out: Sends) -> None:
    for frame in frames:
        plain: Buffer | None = frame
        if vnet:
            if len(frame) < VNET_HDR_LEN:
                plain = None
            elif frame[:VNET_HDR_LEN] == VNET_ZERO_HDR:
                plain = memoryview(frame)[VNET_HDR_LEN:]
            elif not frame[1]:  # no GSO: complete the checksum
                plain = vnet_to_plain(frame)
            else:  # GSO: cut the IP packet behind the Ethernet header
                cut = segment(frame[:VNET_HDR_LEN] + frame[VNET_HDR_LEN + 14 :], limit - 14,
                              contiguous=False)
                if cut is None or cut.per != 2:
                    out.dropped += 1
                    continue
                eth = frame[VNET_HDR_LEN : VNET_HDR_LEN + 14]
                bufs: list[Buffer] = []
                for i in range(0, len(cut.bufs), 2):
                    bufs += (eth, cut.bufs[i], cut.bufs[i + 1])
                out.runs.append(Run(bufs, cut.step + 14, cut.n, 3))
                out.segmented += 1
                continue
        if plain is None or len(plain) < 14:
            out.dropped += 1
            continue
        if len(plain) > limit:
            out.too_big += 1
        out.runs.append(Run([plain], len(plain), 1, 1))


def plan_writes(data: memoryview, seg: int, vnet: bool, merge: bool,
                ether: bool = False) -> Writes:
    """Device writes for the datagrams of one read (see the module doc).

    ``ether``: the datagrams carry Ethernet frames (a tap): each is written
    as it is (at least 14 bytes), never merged."""
    out = Writes()
    size = len(data)
    seg = seg if 0 < seg < size else size
    if ether:
        for offset in range(0, size or 1, seg or 1):
            frame = data[offset : offset + seg]
            if len(frame) < 14:
                out.malformed += 1
            else:
                out.packets.append((VNET_ZERO_HDR + frame if vnet else frame, 1))
        return out
    if vnet and merge and size > seg:
        per = _merge_count(data, seg)
        start = 0
        while start < size:
            n = min(per, _flow_run(data, start, seg))  # TCP: up to a PSH (GRO's rule too)
            run = data[start : start + n * seg]
            start += len(run)
            if len(run) > seg:
                merged = _merge(run, seg)
                if merged is not None:
                    out.packets.append((merged, -(-len(run) // seg)))
                    out.merged += 1
                    continue
            _each(run, seg, vnet, out)
    else:
        _each(data, seg, vnet, out)
    return out


def _flow_run(data: memoryview, start: int, seg: int) -> int:
    """How many datagrams from ``start`` on one TCP super-packet may take: the ACK-only
    segments and the first one with another flag (PSH ends a super-packet, as in GRO).
    Any other protocol: all."""
    first = data[start : start + 60]
    version = first[0] >> 4 if len(first) >= 40 else 0
    if version not in (4, 6) or (first[9] if version == 4 else first[6]) != 6:
        return len(data)
    l4 = (first[0] & 15) * 4 if version == 4 else 40
    if l4 + 14 > len(first):
        return len(data)
    flags = bytes(data[start + l4 + 13 :: seg])
    return len(flags) - len(flags.lstrip(b"\x10")) + 1


def _merge_count(data: memoryview, seg: int) -> int:
    """How many ``seg``-byte datagrams one merged super-packet may carry: its IP length
    must fit 16 bits, a UDP_L4 one carries at most UDP_MAX_SEGMENTS."""
    if len(data) < 60:
        return 1
    version = data[0] >> 4
    l4 = (data[0] & 15) * 4 if version == 4 else 40
    proto = data[9] if version == 4 else data[6]
    if proto != 6 or l4 + 13 > len(data):
        return merge_limit(seg)
    hdr = l4 + (data[l4 + 12] >> 4) * 4
    room = 0xFFFF - hdr + (40 if version == 6 else 0)  # IPv6 counts no fixed header
    return max(1, room // (seg - hdr)) if seg > hdr else 1


def _merge(run: memoryview, seg: int) -> Buffer | None:
    if len(run) < 40:
        return None
    version = run[0] >> 4
    proto = run[9] if version == 4 else run[6] if version == 6 else -1
    if proto == 6:
        return coalesce_tcp(run, seg)
    if proto == 17 and len(run) <= seg * UDP_MAX_SEGMENTS:
        return udp_merge(run, seg)
    return None


def _each(data: memoryview, seg: int, vnet: bool, out: Writes) -> None:
    for offset in range(0, len(data) or 1, seg or 1):
        inner = data[offset : offset + seg]
        if not ip_plausible(inner):
            out.malformed += 1
        else:
            out.packets.append((VNET_ZERO_HDR + inner if vnet else inner, 1))
