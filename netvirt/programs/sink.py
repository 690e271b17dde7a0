"""``sink``: read every packet, count it by protocol, drop it."""

from __future__ import annotations

from typing import ClassVar

from ..packetio import PacketPort
from ..wire.packets import CLASSES, VNET_HDR_LEN, classify
from ._checks import SCHEMAS
from ._program import Program

__all__ = ["Sink"]


class Sink(Program):
    """Counters: ``rx``, ``rx_bytes`` (IP packet or frame sizes, no vnet header) and
    ``rx_<class>`` for each class of :func:`~netvirt.packets.classify`."""

    schema = SCHEMAS["sink"]
    counter_names: ClassVar[tuple[str, ...]] = ("rx", "rx_bytes", *(f"rx_{c}" for c in CLASSES))

    async def run(self) -> None:
        await self.serve_ports(self._serve)

    async def _serve(self, port: PacketPort) -> None:
        counters = self.counters
        framing, vnet = port.framing, port.vnet_hdr
        keys = {c: f"rx_{c}" for c in CLASSES}
        header = VNET_HDR_LEN if vnet else 0
        while True:
            packets = await port.read_batch()
            counters["rx"] += len(packets)
            counters["rx_bytes"] += sum(map(len, packets)) - header * len(packets)
            for packet in packets:
                counters[keys[classify(packet, framing, vnet_hdr=vnet)]] += 1
