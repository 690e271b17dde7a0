"""``pcap``: write every packet read from the device to a pcap file.

The file is written by :class:`~netvirt.wire.pcap.PcapWriter` (re-exported
here for 0.1.0's ``netvirt.programs.pcap.PcapWriter``). Each batch of packets is
flushed, so the file is readable (``tcpdump -r``, Wireshark, scapy's
``rdpcap``) while the program runs. The link type follows the framing:
``LINKTYPE_RAW`` (101) for a tun's IP packets, ``LINKTYPE_ETHERNET`` (1) for
frames; a vnet header is stripped before writing.
"""

from __future__ import annotations

import os
import time
from typing import ClassVar

from ..errors import KernelError
from ..packetio import PacketPort
from ..wire.packets import VNET_HDR_LEN
from ..wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter, linktype_for
from ._checks import SCHEMAS
from ._program import Program, ProgramContext

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapProgram", "PcapWriter", "linktype_for"]


class PcapProgram(Program):
    """Counter: ``packets`` (packets written to the file)."""

    schema = SCHEMAS["pcap"]
    counter_names: ClassVar[tuple[str, ...]] = ("packets",)

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        self.path = os.fspath(ctx.params["path"])

    async def run(self) -> None:
        port = self.port
        try:
            writer = PcapWriter(self.path, linktype_for(port.framing))
        except OSError as exc:
            raise KernelError(exc.errno or 0, f"pcap: open {self.path!r} for writing",
                              device=self.ctx.device_name or None,
                              detail=exc.strerror or str(exc)) from None
        try:
            await self.serve_ports(lambda p: self._serve(p, writer))
        except OSError as exc:  # reading the device or writing the file (disk full...)
            raise KernelError(exc.errno or 0, f"pcap: capture to {self.path!r}",
                              device=self.ctx.device_name or None,
                              detail=exc.strerror or str(exc)) from None
        finally:
            writer.close()

    async def _serve(self, port: PacketPort, writer: PcapWriter) -> None:
        skip = VNET_HDR_LEN if port.vnet_hdr else 0
        while True:
            packets = await port.read_batch()
            now = time.time()
            for packet in packets:
                writer.write(memoryview(packet)[skip:] if skip else packet, now, flush=False)
            writer.flush()
            self.counters["packets"] += len(packets)
