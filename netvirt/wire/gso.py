"""GSO super-packets of tun offload: cut them into packets, merge packets into them.

Pure code like :mod:`netvirt.packets` (``struct`` and slicing, no I/O, no
scapy), for the tunnels' offload paths: a tun opened with IFF_VNET_HDR +
TSO hands out TCP super-packets of up to 64 KiB behind a ``virtio_net_hdr``
(``'<BBHHHH'``: flags, gso_type, hdr_len, gso_size, csum_start,
csum_offset); :func:`gso_segment` does what the kernel's software GSO does
with one when it must go out as plain packets, :func:`udp_merge` does what
UDP GRO does, in the other direction, so a run of datagrams enters a tun in
one write, and :func:`vnet_plausible` is the cheap check of a vnet-headed
packet that came from the wire. Like the parsers of :mod:`netvirt.packets`
these never raise on bad input: they return None.
"""

from __future__ import annotations

import struct
from typing import Final

from .packets import VNET_HDR_LEN, Buffer, checksum, ip_plausible, vnet_to_plain

__all__ = [
    "GSO_MIN_TCP_MSS",
    "UDP_MAX_SEGMENTS",
    "VNET_GSO_ECN",
    "VNET_GSO_NONE",
    "VNET_GSO_TCPV4",
    "VNET_GSO_TCPV6",
    "VNET_GSO_UDP",
    "VNET_GSO_UDP_L4",
    "gso_segment",
    "udp_merge",
    "vnet_plausible",
]

#: ``virtio_net_hdr.gso_type`` values (``VNET_GSO_ECN`` is a flag on the TCP types).
VNET_GSO_NONE: Final = 0
VNET_GSO_TCPV4: Final = 1
VNET_GSO_UDP: Final = 3
VNET_GSO_TCPV6: Final = 4
VNET_GSO_UDP_L4: Final = 5
VNET_GSO_ECN: Final = 0x80
#: The smallest TCP MSS Linux sends (``net.ipv4.tcp_min_snd_mss``).
GSO_MIN_TCP_MSS: Final = 48
#: Segments of one UDP GSO packet (the kernel's ``UDP_MAX_SEGMENTS`` before Linux 6.9).
UDP_MAX_SEGMENTS: Final = 64

_GSO_TYPES = frozenset((0, 1, 3, 4, 5))
_VNET = struct.Struct("<BBHHHH")
_NEEDS_CSUM = 1
_PROTO_TCP, _PROTO_UDP = 6, 17


def vnet_plausible(packet: Buffer) -> bool:
    """True if ``packet`` is a ``virtio_net_hdr`` a tun could have written plus a plausible
    IP packet: flags at most NEEDS_CSUM|DATA_VALID, a GSO type a tun uses (NONE,
    TCPV4, UDP, TCPV6, UDP_L4, with or without ECN). The kernel checks the rest."""
    return (len(packet) >= VNET_HDR_LEN + 20 and packet[0] <= 3
            and packet[1] & ~VNET_GSO_ECN in _GSO_TYPES
            and ip_plausible(memoryview(packet)[VNET_HDR_LEN:]))


def udp_merge(run: Buffer, step: int) -> bytes | None:
    """One ``UDP_L4`` GSO super-packet, vnet header first, carrying a run of datagrams.

    ``run`` is (a piece of) what a ``UDP_GRO`` socket read returns: 2 to
    ``UDP_MAX_SEGMENTS`` datagrams of ``step`` bytes each, the last maybe
    shorter. Each is an IP packet, plain or behind a vnet header without GSO.
    They must all be UDP datagrams of one flow (same addresses, ports,
    TOS/traffic class, TTL/hop limit, DF), IPv4 without options or fragments
    or IPv6 without extension headers. This is the
    inverse of :func:`gso_segment` for UDP (what the kernel's UDP GRO does):
    written into a tun with IFF_VNET_HDR (Linux >= 6.2 takes ``UDP_L4``), the
    kernel cuts it back into the same datagrams (IPv4 identification and
    checksums aside) for the cost of one write. None when they do not qualify.

    The header checks run over all datagrams at once, one strided slice per
    header byte (``run[k::step]``), so the cost barely grows with their number.
    """
    raw = bytes(run)
    total = len(raw)
    count = -(-total // step)
    last = total - (count - 1) * step
    if not 2 <= count <= UDP_MAX_SEGMENTS or step < 28:
        return None
    h = VNET_HDR_LEN if raw[0] < 0x10 else 0
    if h and (raw[0] > _NEEDS_CSUM or raw[1]):
        return None
    if raw[h] == 0x45:
        if raw[h + 9] != _PROTO_UDP or raw[h + 6] & 0xBF or raw[h + 7]:
            return None
        l4, length, length_base = h + 20, h + 2, h
        same = [*range(h + 0, h + 2), *range(h + 6, h + 10), *range(h + 12, h + 24)]
    elif raw[h] >> 4 == 6:
        if raw[h + 6] != _PROTO_UDP:
            return None
        l4, length, length_base = h + 40, h + 4, h + 40
        same = [*range(h + 0, h + 4), *range(h + 6, h + 44)]
    else:
        return None
    if last < l4 + 8 or step < l4 + 8:
        return None
    # the length fields: one value for the full datagrams, the last one's own
    ends = (raw[length : length + 2], raw[l4 + 4 : l4 + 6])
    if int.from_bytes(ends[0], "big") != step - length_base or \
            int.from_bytes(ends[1], "big") != step - l4:
        return None
    tail = (count - 1) * step
    if int.from_bytes(raw[tail + length : tail + length + 2], "big") != last - length_base or \
            int.from_bytes(raw[tail + l4 + 4 : tail + l4 + 6], "big") != last - l4:
        return None
    if h:
        same += [0, 1]
    full = count - 1 if last != step else count
    for k in same:
        if raw[k::step] != raw[k : k + 1] * count:
            return None
    for k in (length, length + 1, l4 + 4, l4 + 5):
        if raw[k : k + step * full : step] != raw[k : k + 1] * full:
            return None
    body = b"".join([raw[o + l4 + 8 : o + step] for o in range(0, total, step)])
    udp_len = 8 + len(body)
    head = bytearray(raw[h : l4 + 8])
    ip_len = l4 - h
    if ip_len == 20:
        struct.pack_into("!H", head, 2, 20 + udp_len)
        head[10:12] = b"\0\0"
        struct.pack_into("!H", head, 10, checksum(memoryview(head)[:20]))
        src, dst = head[12:16], head[16:20]
    else:
        struct.pack_into("!H", head, 4, udp_len)
        src, dst = head[8:24], head[24:40]
    struct.pack_into("!H", head, ip_len + 4, udp_len)
    partial = (int.from_bytes(src, "big") + int.from_bytes(dst, "big") + _PROTO_UDP
               + udp_len) % 0xFFFF
    struct.pack_into("!H", head, ip_len + 6, partial or 0xFFFF)  # the pseudo-header sum
    vnet = _VNET.pack(_NEEDS_CSUM, VNET_GSO_UDP_L4, ip_len + 8, step - l4 - 8,
                      ip_len, 6)
    return vnet + head + body


def gso_segment(packet: Buffer) -> list[bytes] | None:
    """Plain IP packets (full checksums, no vnet header) from a vnet-headed packet.

    What the kernel's software GSO does, for the GSO types a tun hands out:
    ``TCPV4``/``TCPV6`` (ECN bit included) and ``UDP_L4``. The payload after
    the IP + TCP/UDP headers is cut into ``gso_size`` pieces; each segment
    gets its own IP length (IPv4: identification + i and a header checksum),
    TCP sequence number (FIN and PSH only on the last segment, CWR only on the
    first) or UDP length, and a complete L4 checksum. A packet without GSO
    gives ``[vnet_to_plain(packet)]``. None for what cannot be segmented: a
    truncated or inconsistent packet, IPv6 extension headers, UFO (``UDP``),
    and what no kernel hands out, so that one datagram from the wire can never
    become thousands of packets: a TCP ``gso_size`` below 48 (TCP's smallest
    MSS, ``net.ipv4.tcp_min_snd_mss``: at most ~1400 segments) or more than
    ``UDP_MAX_SEGMENTS`` (64) UDP segments.
    """
    if len(packet) < VNET_HDR_LEN + 20:
        return None
    _flags, gso_type, _hl, gso_size, _cs, _co = _VNET.unpack_from(packet)
    kind = gso_type & ~VNET_GSO_ECN
    if kind == VNET_GSO_NONE:
        plain = vnet_to_plain(packet)
        return None if plain is None else [bytes(plain)]
    if kind not in (VNET_GSO_TCPV4, VNET_GSO_TCPV6, VNET_GSO_UDP_L4):
        return None
    if gso_size < (1 if kind == VNET_GSO_UDP_L4 else GSO_MIN_TCP_MSS):
        return None
    ip = memoryview(packet)[VNET_HDR_LEN:]
    version = ip[0] >> 4
    if version == 4:
        l4, total, proto = (ip[0] & 15) * 4, ip[2] << 8 | ip[3], ip[9]
        src, dst = ip[12:16], ip[16:20]
        if l4 < 20:
            return None
    elif version == 6:
        l4, total, proto = 40, 40 + (ip[4] << 8 | ip[5]), ip[6]
        src, dst = ip[8:24], ip[24:40]
    else:
        return None
    if total > len(ip) or proto != (_PROTO_UDP if kind == VNET_GSO_UDP_L4 else _PROTO_TCP):
        return None
    hdr = l4 + 8  # UDP
    if proto == _PROTO_TCP:
        hdr = l4 + (ip[l4 + 12] >> 4) * 4 if l4 + 20 <= total else total + 1
    if hdr > total or (proto == _PROTO_TCP and hdr < l4 + 20):
        return None
    head, payload = ip[:hdr], ip[hdr:total]
    seq = int.from_bytes(head[l4 + 4 : l4 + 8], "big")
    ident = head[4] << 8 | head[5]
    pseudo = int.from_bytes(src, "big") + int.from_bytes(dst, "big") + proto
    out: list[bytes] = []
    count = (len(payload) + gso_size - 1) // gso_size or 1
    if proto == _PROTO_UDP and count > UDP_MAX_SEGMENTS:
        return None
    for i in range(count):
        chunk = payload[i * gso_size : (i + 1) * gso_size]
        h = bytearray(head)
        l4_len = hdr - l4 + len(chunk)
        if version == 4:
            struct.pack_into("!HH", h, 2, hdr + len(chunk), (ident + i) & 0xFFFF)
            h[10:12] = b"\0\0"
            struct.pack_into("!H", h, 10, checksum(memoryview(h)[:l4]))
        else:
            struct.pack_into("!H", h, 4, hdr - 40 + len(chunk))
        if proto == _PROTO_TCP:
            struct.pack_into("!I", h, l4 + 4, (seq + i * gso_size) & 0xFFFFFFFF)
            if i < count - 1:
                h[l4 + 13] &= ~0x09  # FIN, PSH: last segment only
            if i:
                h[l4 + 13] &= ~0x80  # CWR: first segment only
            at = l4 + 16
        else:
            struct.pack_into("!H", h, l4 + 4, l4_len)
            at = l4 + 6
        h[at : at + 2] = b"\0\0"
        h += chunk
        csum = checksum(memoryview(h)[l4:], pseudo + l4_len)
        struct.pack_into("!H", h, at, csum if csum or proto == _PROTO_TCP else 0xFFFF)
        out.append(bytes(h))
    return out
