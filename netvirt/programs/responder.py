"""``responder``: answer ARP, NDP and ICMP/ICMPv6 echo like a live host would.

Which addresses it answers for: the ``ip`` param (one address or a list);
without it, the interface's own addresses on a tap or macvtap, and on a tun
*any* destination (a tun only receives what the kernel routes into it, so
"answer everything routed here" is what makes ``ping`` through it work). With
no address at all it answers every echo, ARP and NDP request except address
probes (ARP from 0.0.0.0, gratuitous ARP, IPv6 DAD), which would make the
host's own addresses fail.

With ``probe: ADDR`` (IPv4, ether framing) it also acts as a guest that
reaches out: it resolves ADDR by ARP and sends it an ICMP echo request every
``PROBE_INTERVAL`` seconds, counting ``probe_sent`` and ``probe_replies``, so
a scenario can assert that two guests reach each other (SETUPS.md S3c).

Its MAC (ether framing): the ``mac`` param, else the device's MAC when the
builder gives one (macvtap), else ``02:6e:`` followed by the low four bytes
of its first address (locally administered, stable across runs).
"""

from __future__ import annotations

import asyncio
import os
import struct
from collections.abc import Container
from typing import ClassVar

from ..packetio import PacketPort
from ..wire.packets import (
    ANY_ADDRESS,
    VNET_HDR_LEN,
    VNET_ZERO_HDR,
    arp_reply,
    arp_request,
    ether_frame,
    icmp_echo_reply_ip,
    icmp_echo_request,
    icmpv6_echo_reply_ip,
    ndp_advert,
    pack_mac,
)
from ._checks import SCHEMAS, ip_list
from ._params import IPAddress, parse_ip
from ._program import Program, ProgramContext

__all__ = ["Responder"]

_DEFAULT_MAC = bytes.fromhex("026e76000001")


class Responder(Program):
    """Counters: ``rx``, ``tx``, ``arp_replies``, ``ndp_replies``, ``echo_replies``, ``ignored``
    (and ``probe_sent``, ``probe_replies`` with ``probe``)."""

    schema = SCHEMAS["responder"]
    counter_names: ClassVar[tuple[str, ...]] = (
        "rx", "tx", "arp_replies", "ndp_replies", "echo_replies", "ignored",
    )
    PROBE_INTERVAL: ClassVar[float] = 0.1

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        ether = ctx.port.framing == "ether"
        addrs: list[IPAddress]
        if "ip" in ctx.params:
            addrs = [parse_ip(v) for v in ip_list(ctx.params["ip"])]
        else:
            addrs = [iface.ip for iface in ctx.addresses] if ether else []
        self.addresses = addrs
        v4 = {a.packed for a in addrs if a.version == 4}
        v6 = {a.packed for a in addrs if a.version == 6}
        self._any = not addrs
        self._v4: Container[bytes] = ANY_ADDRESS if self._any else v4
        self._v6: Container[bytes] = ANY_ADDRESS if self._any else v6
        # Source of replies to multicast pings: prefer a link-local address.
        self._src6 = min(v6, key=lambda a: (a[:2] != b"\xfe\x80", a), default=None)
        if "mac" in ctx.params:
            self.mac = pack_mac(ctx.params["mac"])
        elif ctx.device_mac:
            self.mac = pack_mac(ctx.device_mac)
        elif addrs:
            self.mac = b"\x02\x6e" + addrs[0].packed[-4:]
        else:
            self.mac = _DEFAULT_MAC
        self._probe = parse_ip(ctx.params["probe"]) if "probe" in ctx.params else None
        self._probe_mac: bytes | None = None
        self._probe_id = int.from_bytes(os.urandom(2), "big")
        if self._probe is not None:
            self.counters.update(probe_sent=0, probe_replies=0)

    async def _probe_loop(self) -> None:
        """Resolve the probe address by ARP, then ping it (as a guest would)."""
        assert self._probe is not None
        mine = next((a for a in self.addresses if a.version == 4), None)
        if mine is None or self.port.framing != "ether":
            return
        seq = 0
        while True:
            if self._probe_mac is None:
                frame = arp_request(self.mac, mine, self._probe)
            else:
                seq = (seq + 1) & 0xFFFF
                packet = icmp_echo_request(mine, self._probe, self._probe_id, seq, b"netvirt-probe")
                frame = ether_frame(self._probe_mac, self.mac, 0x0800, packet)
                self.counters["probe_sent"] += 1
            self.port.write_nowait(VNET_ZERO_HDR + frame if self.port.vnet_hdr else frame)
            await asyncio.sleep(self.PROBE_INTERVAL)

    def _probe_answer(self, frame: bytes) -> None:
        """Note an ARP reply from the probe address, count its echo replies."""
        assert self._probe is not None
        if frame[12:14] == b"\x08\x06" and len(frame) >= 42 and frame[20:22] == b"\x00\x02":
            if frame[28:32] == self._probe.packed:
                self._probe_mac = frame[22:28]
        elif frame[12:14] == b"\x08\x00" and len(frame) >= 42 and frame[23] == 1:
            icmp = 14 + (frame[14] & 0x0F) * 4
            if (frame[26:30] == self._probe.packed and len(frame) >= icmp + 8 and frame[icmp] == 0
                    and struct.unpack_from("!H", frame, icmp + 4)[0] == self._probe_id):
                self.counters["probe_replies"] += 1

    async def run(self) -> None:
        if self._probe is None:
            return await self.serve_ports(self._serve)
        prober = asyncio.ensure_future(self._probe_loop())
        try:
            await self.serve_ports(self._serve)
        finally:
            prober.cancel()
            await asyncio.gather(prober, return_exceptions=True)

    async def _serve(self, port: PacketPort) -> None:
        counters = self.counters
        answer = self._answer_ether if port.framing == "ether" else self._answer_ip
        vnet = port.vnet_hdr
        while True:
            packets = await port.read_batch()
            counters["rx"] += len(packets)
            for packet in packets:
                if vnet:
                    packet = packet[VNET_HDR_LEN:]
                reply = answer(packet) if packet else None
                if reply is None and self._probe is not None and port.framing == "ether":
                    self._probe_answer(packet)
                if reply is None:
                    counters["ignored"] += 1
                    continue
                if port.write_nowait(VNET_ZERO_HDR + reply if vnet else reply):
                    counters["tx"] += 1

    # -- answers (pure: packet in, reply or None out) -------------------------
    def _answer_ip(self, packet: bytes) -> bytes | None:
        if len(packet) < 20:  # nothing to answer (a bare Ethernet header, a runt)
            return None
        version = packet[0] >> 4
        if version == 4:
            dst = packet[16:20]
            if dst in self._v4:
                reply = icmp_echo_reply_ip(packet)
            else:
                return None  # includes broadcast echo, which Linux ignores too
        elif version == 6:
            dst = packet[24:40]
            if dst in self._v6:
                reply = icmpv6_echo_reply_ip(packet)
            elif dst[:1] == b"\xff" and self._src6 is not None:
                reply = icmpv6_echo_reply_ip(packet, src=self._src6)
            else:
                return None
        else:
            return None
        if reply is not None:
            self.counters["echo_replies"] += 1
        return reply

    def _answer_ether(self, frame: bytes) -> bytes | None:
        if len(frame) < 14 or (frame[0:6] != self.mac and not frame[0] & 1) or frame[6] & 1:
            return None
        ethertype = frame[12:14]
        if ethertype == b"\x08\x06":
            reply = arp_reply(frame, self._v4, self.mac)
            if reply is not None:
                self.counters["arp_replies"] += 1
            return reply
        if ethertype == b"\x86\xdd" and len(frame) > 54 and frame[20] == 58 and frame[54] == 135:
            reply = ndp_advert(frame, self._v6, self.mac)
            if reply is not None:
                self.counters["ndp_replies"] += 1
            return reply
        if ethertype not in (b"\x08\x00", b"\x86\xdd"):
            return None
        ip_reply = self._answer_ip(frame[14:])
        if ip_reply is None:
            return None
        return frame[6:12] + self.mac + ethertype + ip_reply
