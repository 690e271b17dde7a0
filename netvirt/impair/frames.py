"""Ethernet frames behind a ``virtio_net_hdr``, as a tap with offload hands them out.

The engine's view of a packet (see :class:`netvirt.impair.engine.Frames`):
its length on the wire, counted per segment for a GSO super-packet (each
segment carries its own Ethernet + IP + TCP headers, as the kernel's
``qdisc_pkt_len_init`` counts them); its segments, when a decision is
taken per wire packet (loss, duplicate, corrupt, reorder: then one 64 KiB
super-packet becomes up to 45 ordinary frames, as netem segments before
corrupting); and a corrupted copy, whose checksum is completed first so that
the flipped bit is seen by the receiver, as netem does with
``skb_checksum_help``. Pure ``struct`` and slicing: no scapy.
"""

from __future__ import annotations

import struct
from random import Random

from netvirt.gso import gso_segment
from netvirt.packets import VNET_HDR_LEN, VNET_ZERO_HDR, vnet_to_plain

__all__ = ["TapFrames"]

_ETH = 14
_VNET = struct.Struct("<BBHHHH")


def _headers(frame: memoryview) -> int:
    """Length of the Ethernet + IP + L4 headers of a GSO frame (0 if not parsed)."""
    if len(frame) < _ETH + 40:
        return 0
    ethertype = frame[12] << 8 | frame[13]
    if ethertype == 0x0800:
        l4 = _ETH + (frame[_ETH] & 15) * 4
        proto = frame[_ETH + 9]
    elif ethertype == 0x86DD:
        l4 = _ETH + 40
        proto = frame[_ETH + 6]
    else:
        return 0
    if proto == 6 and len(frame) >= l4 + 20:
        return l4 + (frame[l4 + 12] >> 4) * 4
    if proto == 17:
        return l4 + 8
    return 0


class TapFrames:
    """Frames read from / written to a tap opened with IFF_VNET_HDR (+ TSO)."""

    def wire_len(self, pkt: bytes) -> int:
        n = len(pkt) - VNET_HDR_LEN
        if pkt[1] == 0:  # no GSO
            return n
        gso_size = pkt[4] | pkt[5] << 8
        hdr = _headers(memoryview(pkt)[VNET_HDR_LEN:])
        if not hdr or not gso_size:
            return n
        segs = max(1, -(-(n - hdr) // gso_size))
        return n + (segs - 1) * hdr

    def segment(self, pkt: bytes) -> list[bytes]:
        if pkt[1] == 0:
            return [pkt]
        eth = pkt[VNET_HDR_LEN:VNET_HDR_LEN + _ETH]
        segs = gso_segment(pkt[:VNET_HDR_LEN] + pkt[VNET_HDR_LEN + _ETH:])
        if segs is None:  # not ours to cut: it travels whole
            return [pkt]
        head = VNET_ZERO_HDR + eth
        return [head + s for s in segs]

    def corrupt(self, pkt: bytes, rng: Random) -> bytes:
        plain = vnet_to_plain(pkt)  # the checksum completed, so the receiver can see the flip
        if plain is None:
            return pkt
        body = bytearray(plain)
        if not body:
            return pkt
        body[rng.randrange(len(body))] ^= 1 << rng.randrange(8)
        return VNET_ZERO_HDR + bytes(body)
