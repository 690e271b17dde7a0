"""Segmentation offload in userspace: GSO super-packets <-> packets that fit the wire.

A tun opened with a vnet header and TSO/USO hands out TCP (and UDP) super-
packets of up to 64 KiB, one ``virtio_net_hdr`` in front
(``'<BBHHHH'``: flags, gso_type, hdr_len, gso_size, csum_start,
csum_offset), with the L4 checksum left to "hardware" (``NEEDS_CSUM``).
A tunnel on the standard wire sends ordinary IP packets, each small enough
for the underlay: :func:`segment` does the kernel's software GSO for it,
and :func:`coalesce_tcp` is the receiving side's GRO, which turns a run of
such segments back into one super-packet for one ``write`` into a tun.

How it stays fast in Python: no per-byte loop anywhere. Each segment's
header is the super-packet's header with a few fields packed in, its
checksums come from sums precomputed for the fixed part of the header plus
one ones'-complement sum of its payload, and those payload sums come from
one pass over the buffer (:func:`netvirt.wire.csum.piece_sums`). Payloads
are never copied: :func:`segment` returns an iovec (header, payload view,
header, payload view...) for one ``sendmsg`` with ``UDP_SEGMENT``. The
coalescer checks all segments of a run at once with strided slices
(``run[k::step]``: one C-level slice per header byte), verifies their TCP
checksums in one sum, and joins the payloads in one ``bytes.join``.

Like the rest of :mod:`netvirt.wire`, these never raise on bad input: they
return None.
"""

from __future__ import annotations

import struct
from typing import Any, Final, NamedTuple

from .csum import Buffer, checksum_field, fold, numpy_module, piece_sums, piece_sums_array, total_sum, word_sum
from .packets import VNET_HDR_LEN, vnet_to_plain

__all__ = ["MAX_SEGMENTS", "Run", "coalesce_tcp", "merge_limit", "segment"]

_VNET = struct.Struct("<BBHHHH")
_NEEDS_CSUM = 1
_GSO_NONE, _GSO_TCPV4, _GSO_TCPV6, _GSO_UDP_L4, _GSO_ECN = 0, 1, 4, 5, 0x80
_TCP, _UDP = 6, 17
_FIN_PSH, _CWR = 0x09, 0x80
_ACK, _ACK_PSH = 0x10, 0x18
#: Most segments :func:`segment` makes of one packet (64 KiB at TCP's smallest MSS, 48).
MAX_SEGMENTS: Final = 1400


class Run(NamedTuple):
    """Packets for UDP GSO sends: ``bufs`` joined are ``n`` packets of ``step``
    bytes each, the last maybe shorter. ``per`` buffers make one packet, or
    ``per`` is 0 and ``bufs[0]`` holds all of them back to back."""

    bufs: list[Buffer]
    step: int
    n: int
    per: int

    def chunk(self, a: int, b: int) -> list[Buffer]:
        """The buffers of packets ``a`` to ``b - 1`` (an iovec for one ``sendmsg``)."""
        if self.per:
            return self.bufs[a * self.per : b * self.per]
        return [memoryview(self.bufs[0])[a * self.step : b * self.step]]

    def packet(self, i: int) -> Buffer:
        """Packet ``i`` as one buffer."""
        if self.per == 1:
            return self.bufs[i]
        if not self.per:
            return memoryview(self.bufs[0])[i * self.step : (i + 1) * self.step]
        return b"".join(self.bufs[i * self.per : (i + 1) * self.per])


def _layout(ip: memoryview) -> tuple[int, int, int, int] | None:
    """(version, L4 offset, header length, total length) of an unfragmented TCP/UDP packet."""
    size = len(ip)
    if size < 20:
        return None
    version = ip[0] >> 4
    if version == 4:
        l4, total, proto = (ip[0] & 15) * 4, ip[2] << 8 | ip[3], ip[9]
        if l4 < 20 or ip[6] & 0x3F or ip[7]:  # a fragment cannot be cut
            return None
    elif version == 6 and size >= 40:
        l4, total, proto = 40, 40 + (ip[4] << 8 | ip[5]), ip[6]
    else:
        return None
    if total > size:
        return None
    if proto == _TCP:
        hdr = l4 + (ip[l4 + 12] >> 4) * 4 if l4 + 20 <= total else total + 1
        if hdr < l4 + 20:
            return None
    elif proto == _UDP:
        hdr = l4 + 8
    else:
        return None
    if hdr > total:
        return None
    return version, l4, hdr, total


def segment(packet: Buffer, limit: int, *, contiguous: bool = True) -> Run | None:
    """The wire packets for one packet read from a tun with a vnet header.

    Each is a plain IP packet with complete checksums. A TCP super-packet
    (``TCPV4``/``TCPV6``) is cut at its ``gso_size``, or smaller where
    that would exceed ``limit`` bytes (the largest inner packet the underlay
    carries unfragmented): TCP does not mind smaller segments. A ``UDP_L4``
    super-packet is cut at ``gso_size`` (each piece is one datagram of the
    sender's). A packet without GSO has its checksum completed
    (``NEEDS_CSUM``); if it is a TCP packet above ``limit`` it is cut like a
    super-packet. Any other packet above ``limit`` comes back whole: the
    caller decides (it cannot be cut without IP fragments). None for what
    cannot be handled: a truncated or inconsistent packet, IPv6 extension
    headers, UFO, more than :data:`MAX_SEGMENTS` segments.

    With numpy (and ``contiguous``), a packet of 4 or more segments is built in
    one buffer by array operations (no Python per segment): a ``per == 0``
    run; otherwise the run is an iovec of header and payload view per segment.
    """
    if len(packet) < VNET_HDR_LEN + 20 or limit < 1:
        return None
    _flags, gso_type, _hl, gso_size, _cs, _co = _VNET.unpack_from(packet)
    kind = gso_type & ~_GSO_ECN
    ip = memoryview(packet)[VNET_HDR_LEN:]
    if kind == _GSO_NONE:
        if len(ip) <= limit or ip[9 if ip[0] >> 4 == 4 else 6] != _TCP:
            plain = vnet_to_plain(packet)
            return None if plain is None else Run([plain], len(plain), 1, 1)
        cut = limit  # a TCP packet too long for the wire
    elif kind in (_GSO_TCPV4, _GSO_TCPV6, _GSO_UDP_L4):
        cut = gso_size
    else:
        return None
    layout = _layout(ip)
    if layout is None:
        return None
    version, l4, hdr, total = layout
    tcp = ip[9 if version == 4 else 6] == _TCP
    if tcp == (kind == _GSO_UDP_L4) or (kind == _GSO_TCPV4 and version != 4) or (
            kind == _GSO_TCPV6 and version != 6):
        return None
    mss = min(cut, limit - hdr) if tcp and limit > hdr else cut
    payload = ip[hdr:total]
    count = -(-len(payload) // mss) if mss > 0 else 0
    if not 1 <= count <= MAX_SEGMENTS and payload:
        return None
    count = count or 1
    if contiguous and count >= 4 and numpy_module() is not None:
        return Run([_cut_np(ip, version, l4, hdr, tcp, payload, mss, count)], hdr + mss, count, 0)
    return Run(_cut(ip, version, l4, hdr, tcp, payload, mss, count), hdr + mss, count, 2)


def _template(ip: memoryview, version: int, l4: int, hdr: int,
              tcp: bool) -> tuple[bytearray, int, int, int, int, int]:
    """The header with its per-segment fields zeroed, and what the segments need:
    (template, IPv4 header sum, L4 sum with the pseudo-header, ident, seq, flags)."""
    tpl = bytearray(ip[:hdr])
    if version == 4:
        src, dst, ident = ip[12:16], ip[16:20], ip[4] << 8 | ip[5]
        tpl[2:6] = bytes(4)  # length, identification
        tpl[10:12] = bytes(2)  # header checksum
        ip_base = word_sum(tpl[:l4])
    else:
        src, dst, ident, ip_base = ip[8:24], ip[24:40], 0, 0
        tpl[4:6] = bytes(2)
    pseudo = word_sum(src) + word_sum(dst) + (_TCP if tcp else _UDP)
    seq0 = flags = 0
    if tcp:
        seq0, flags = int.from_bytes(ip[l4 + 4 : l4 + 8], "big"), ip[l4 + 13]
        tpl[l4 + 4 : l4 + 8] = bytes(4)
        tpl[l4 + 13] = 0
        tpl[l4 + 16 : l4 + 18] = bytes(2)
    else:
        tpl[l4 + 4 : l4 + 8] = bytes(4)
    return tpl, ip_base, word_sum(tpl[l4:]) + pseudo, ident, seq0, flags


class _Shape(NamedTuple):
    """What every super-packet of one shape (segment count, sizes, header layout) shares:
    per segment, its IP total length (IPv4) or L4 length (IPv6), its sequence offset
    and its L4 length, and the segments' TCP flag masks for each flags byte seen."""

    length: Any  # the IP length field: IPv4 total length, IPv6 payload length
    offsets: Any  # i * mss
    l4_len: Any
    index: Any
    marks: dict[int, Any]


_shapes: dict[tuple[int, int, int, int, int, int], _Shape] = {}
_MAX_SHAPES = 64


def _shape(np: Any, version: int, l4: int, hdr: int, mss: int, count: int, last: int) -> _Shape:
    key = (version, l4, hdr, mss, count, last)
    shape = _shapes.get(key)
    if shape is None:
        if len(_shapes) >= _MAX_SHAPES:
            _shapes.clear()
        index = np.arange(count, dtype=np.int64)
        sizes = np.full(count, mss, dtype=np.int64)
        sizes[-1] = last
        l4_len = sizes + (hdr - l4)
        shape = _shapes[key] = _Shape(sizes + hdr if version == 4 else l4_len, index * mss,
                                      l4_len, index, {})
    return shape


def _marks(np: Any, shape: _Shape, flags: int) -> Any:
    """The TCP flags byte of each segment: FIN and PSH on the last only, CWR on the first."""
    marks = shape.marks.get(flags)
    if marks is None:
        count = len(shape.index)
        marks = np.full(count, flags & ~_FIN_PSH, dtype=np.int64)
        marks[-1] = flags
        marks[1:] &= ~_CWR
        shape.marks[flags] = marks
    return marks


def _cut_np(ip: memoryview, version: int, l4: int, hdr: int, tcp: bool, payload: memoryview,
            mss: int, count: int) -> memoryview:
    """:func:`_cut` with array operations: all segments in one buffer.

    The headers are one ``(count, hdr)`` array whose per-segment fields are
    written a column at a time through a big-endian 16-bit view (every field
    sits at an even offset), then copied in front of the payload rows. What
    depends only on the packet's shape is computed once per shape
    (:func:`_shape`): a TCP stream's super-packets mostly share a few."""
    np: Any = numpy_module()
    tpl, ip_base, l4_base, ident, seq0, flags = _template(ip, version, l4, hdr, tcp)
    step, size = hdr + mss, len(payload)
    last = size - (count - 1) * mss
    full = count if last == mss else count - 1
    shape = _shape(np, version, l4, hdr, mss, count, last)
    heads = np.empty((count, hdr), np.uint8)
    heads[:] = np.frombuffer(bytes(tpl), np.uint8)
    words = heads.view(">u2")
    if version == 4:
        idents = shape.index + ident
        idents &= 0xFFFF
        words[:, 1] = shape.length
        words[:, 2] = idents
        idents += shape.length
        idents += ip_base
        words[:, 5] = _field(idents)
    else:
        words[:, 2] = shape.length
    sums = piece_sums_array(payload, mss) if size else None
    if sums is None:
        sums = np.asarray(piece_sums(payload, mss) if size else [0], dtype=np.int64)
    if tcp:
        seq = shape.offsets + seq0
        seq &= 0xFFFFFFFF
        high, low = seq >> 16, seq & 0xFFFF
        words[:, (l4 + 4) // 2] = high
        words[:, (l4 + 6) // 2] = low
        marks = _marks(np, shape, flags)
        heads[:, l4 + 13] = marks
        high += low
        high += marks
        high += sums
        high += shape.l4_len
        high += l4_base
        words[:, (l4 + 16) // 2] = _field(high)
    else:
        words[:, (l4 + 4) // 2] = shape.l4_len
        check = _field(2 * shape.l4_len + sums + l4_base)
        check[check == 0] = 0xFFFF
        words[:, (l4 + 6) // 2] = check
    arr = np.empty((count - 1) * step + hdr + last, np.uint8)  # every byte is written below
    body = np.frombuffer(payload, np.uint8)
    if full:
        grid = arr[: full * step].reshape(full, step)
        grid[:, :hdr] = heads[:full]
        grid[:, hdr:] = body[: full * mss].reshape(full, mss)
    if full < count:
        tail = arr[full * step :]
        tail[:hdr] = heads[full]
        tail[hdr:] = body[full * mss :]
    return memoryview(arr)


def _field(total: Any) -> Any:
    """:func:`checksum_field` of an array of sums that are never 0."""
    return (0xFFFF - total % 0xFFFF) % 0xFFFF


def _cut(ip: memoryview, version: int, l4: int, hdr: int, tcp: bool, payload: memoryview,
         mss: int, count: int) -> list[Buffer]:
    tpl, ip_base, l4_base, ident, seq0, flags = _template(ip, version, l4, hdr, tcp)
    sums = piece_sums(payload, mss) if len(payload) else [0]
    pack = struct.pack_into
    bufs: list[Buffer] = []
    last = count - 1
    for i in range(count):
        chunk = payload[i * mss : (i + 1) * mss]
        size = len(chunk)
        h = bytearray(tpl)
        l4_len = hdr - l4 + size
        if version == 4:
            ident_i = (ident + i) & 0xFFFF
            pack("!HH", h, 2, hdr + size, ident_i)
            pack("!H", h, 10, checksum_field(ip_base + hdr + size + ident_i))
        else:
            pack("!H", h, 4, l4_len)
        if tcp:
            seq = (seq0 + i * mss) & 0xFFFFFFFF
            f = flags if i == last else flags & ~_FIN_PSH
            if i:
                f &= ~_CWR
            pack("!I", h, l4 + 4, seq)
            h[l4 + 13] = f
            pack("!H", h, l4 + 16, checksum_field(l4_base + l4_len + (seq >> 16) + (seq & 0xFFFF)
                                                  + f + sums[i]))
        else:
            pack("!H", h, l4 + 4, l4_len)
            pack("!H", h, l4 + 6, checksum_field(l4_base + 2 * l4_len + sums[i]) or 0xFFFF)
        bufs.append(h)
        bufs.append(chunk)
    return bufs


def merge_limit(step: int) -> int:
    """How many ``step``-byte packets one merged super-packet may take (IP length <= 65535)."""
    return max(1, min(64, 65535 // step)) if step > 0 else 1


def coalesce_tcp(run: Buffer, step: int) -> Buffer | None:
    """One TCP super-packet, vnet header first (``NEEDS_CSUM``, ``TCPV4``/``TCPV6``),
    carrying a run of TCP segments; None when they do not qualify.

    ``run`` is (a piece of) what a ``UDP_GRO`` read returns: 2 or more plain IP
    packets of ``step`` bytes each, the last maybe shorter. They qualify when
    they are consecutive segments of one flow, as :func:`segment` or any TCP
    stack makes them: IPv4 without options or fragments, or IPv6 without
    extension headers; the same addresses, ports, TOS/traffic class, TTL/hop
    limit, DF, ack, window and options; sequence numbers back to back; only
    ACK set (PSH allowed on the last); every checksum correct (one sum over
    the run). Written into a tun with a vnet header, the kernel takes it as
    the segments it carries (what GRO would have made of them); the merged IP
    packet must fit 65535 bytes (see :func:`merge_limit`).
    """
    raw = bytes(run)
    total = len(raw)
    count = -(-total // step) if step > 0 else 0
    last = total - (count - 1) * step
    if count < 2 or step < 41:
        return None
    if raw[0] == 0x45:
        if raw[9] != _TCP or raw[6] & 0x3F or raw[7]:
            return None
        l4, len_at, len_base = 20, 2, 0
        same = [0, 1, 6, 7, 8, 9, *range(12, 20)]
    elif raw[0] >> 4 == 6:
        if raw[6] != _TCP:
            return None
        l4, len_at, len_base = 40, 4, 40
        same = [*range(0, 4), *range(6, 40)]
    else:
        return None
    if step < l4 + 20:
        return None
    hdr = l4 + (raw[l4 + 12] >> 4) * 4
    if hdr < l4 + 20 or step <= hdr or last <= hdr:
        return None
    same += [*range(l4, l4 + 4), *range(l4 + 8, l4 + 13), l4 + 14, l4 + 15, *range(l4 + 18, hdr)]
    for k in same:
        if raw[k::step] != raw[k : k + 1] * count:
            return None
    flags = raw[l4 + 13 :: step]
    if flags[:-1] != bytes((_ACK,)) * (count - 1) or flags[-1] not in (_ACK, _ACK_PSH):
        return None
    full = count - 1 if last != step else count
    want = (step - len_base).to_bytes(2, "big")
    for b in (0, 1):
        if raw[len_at + b : len_at + b + step * full : step] != want[b : b + 1] * full:
            return None
    tail = (count - 1) * step
    if int.from_bytes(raw[tail + len_at : tail + len_at + 2], "big") != last - len_base:
        return None
    mss = step - hdr
    seq0 = int.from_bytes(raw[l4 + 4 : l4 + 8], "big")
    seqs = struct.pack(f"!{count}I", *[(seq0 + i * mss) & 0xFFFFFFFF for i in range(count)])
    for b in range(4):
        if raw[l4 + 4 + b :: step] != seqs[b::4]:
            return None
    src, dst = (raw[12:16], raw[16:20]) if l4 == 20 else (raw[8:24], raw[24:40])
    pseudo = word_sum(src) + word_sum(dst) + _TCP
    tcp_lens = (count - 1) * (step - l4) + last - l4
    # every packet's words: IPv4 header (0 if its checksum is right) + TCP part, which
    # with its pseudo-header sums to 0 if its checksum is right
    check = (total_sum(raw) if not step & 1 else sum(piece_sums(raw, step))) + count * pseudo + tcp_lens
    if l4 == 40:  # the IPv6 headers' words count too: fixed part + payload length each
        check -= count * (word_sum(raw[:40]) - (step - 40)) + tcp_lens
    if check % 0xFFFF:
        return None
    head = bytearray(raw[:hdr])
    tcp_len = hdr - l4 + total - count * hdr
    if l4 == 20:
        if 20 + tcp_len > 0xFFFF:
            return None
        struct.pack_into("!H", head, 2, 20 + tcp_len)
        head[10:12] = b"\0\0"
        struct.pack_into("!H", head, 10, checksum_field(word_sum(head[:20])))
        kind = _GSO_TCPV4
    else:
        if tcp_len > 0xFFFF:
            return None
        struct.pack_into("!H", head, 4, tcp_len)
        kind = _GSO_TCPV6
    head[l4 + 13] = flags[-1]
    struct.pack_into("!H", head, l4 + 16, fold(pseudo + tcp_len))  # the pseudo-header sum
    front = _VNET.pack(_NEEDS_CSUM, kind, hdr, mss, l4, 16) + head
    np = numpy_module()
    if np is None:
        return b"".join([front, *[raw[o + hdr : o + step] for o in range(0, total, step)]])
    # the payloads gathered by one strided copy into the packet's buffer
    out = np.empty(len(front) + tcp_len - (hdr - l4), np.uint8)
    out[: len(front)] = np.frombuffer(front, np.uint8)
    src = np.frombuffer(raw, np.uint8)
    at = len(front)
    if full:
        out[at : at + full * mss].reshape(full, mss)[:] = src[: full * step].reshape(full, step)[:, hdr:]
    if full < count:
        out[at + full * mss :] = src[full * step + hdr :]
    return memoryview(out)
