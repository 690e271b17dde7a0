"""``pcap``: write every packet read from the device to a pcap file.

Also :class:`PcapWriter`, the classic libpcap file format written with
``struct`` (the ``capture`` verb uses it too). Each batch of packets is
flushed, so the file is readable (``tcpdump -r``, Wireshark, scapy's
``rdpcap``) while the program runs. The link type follows the framing:
``LINKTYPE_RAW`` (101) for a tun's IP packets, ``LINKTYPE_ETHERNET`` (1) for
frames; a vnet header is stripped before writing.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Any, ClassVar

from ..errors import KernelError, Problem
from ..packets import VNET_HDR_LEN
from .base import Program, ProgramContext

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapProgram", "PcapWriter", "linktype_for"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_FILE_HEADER = struct.Struct("<IHHiIII")
_RECORD_HEADER = struct.Struct("<IIII")
_MAGIC_USEC = 0xA1B2C3D4


def linktype_for(framing: str) -> int:
    """The pcap link type for a port's framing ("ip" or "ether")."""
    return LINKTYPE_ETHERNET if framing == "ether" else LINKTYPE_RAW


class PcapWriter:
    """A classic pcap file (microsecond timestamps, little-endian).

    Opens (truncates) ``path`` and writes the file header on construction.
    ``close()`` is safe to call twice; usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], linktype: int,
                 snaplen: int = 262144) -> None:
        self.path = os.fspath(path)
        self.linktype = linktype
        self.snaplen = snaplen
        self.packets = 0
        self._file: IO[bytes] | None = open(self.path, "wb")  # noqa: SIM115 (closed by close())
        self._file.write(_FILE_HEADER.pack(_MAGIC_USEC, 2, 4, 0, 0, snaplen, linktype))
        self._file.flush()

    def write(self, packet: bytes | bytearray | memoryview, ts: float | None = None, *,
              flush: bool = True) -> None:
        """Append one packet (``ts``: seconds since the epoch, default now)."""
        if self._file is None:
            raise ValueError(f"pcap file {self.path} is closed")
        if ts is None:
            ts = time.time()
        sec = int(ts)
        usec = min(int(round((ts - sec) * 1_000_000)), 999_999)
        size = len(packet)
        kept = min(size, self.snaplen)
        self._file.write(_RECORD_HEADER.pack(sec, usec, kept, size))
        self._file.write(packet[:kept] if kept < size else packet)
        self.packets += 1
        if flush:
            self._file.flush()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        """Flush and close. Safe to call twice."""
        file, self._file = self._file, None
        if file is not None:
            file.close()

    @property
    def closed(self) -> bool:
        return self._file is None

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class PcapProgram(Program):
    """Counter: ``packets`` (packets written to the file)."""

    name: ClassVar[str] = "pcap"
    counter_names: ClassVar[tuple[str, ...]] = ("packets",)
    allowed_params: ClassVar[frozenset[str]] = frozenset({"path"})
    required_params: ClassVar[frozenset[str]] = frozenset({"path"})

    @classmethod
    def check_params(cls, params: Mapping[str, Any], place: str) -> list[Problem]:
        problems = super().check_params(params, place)
        path = params.get("path", "x")
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            problems.append(Problem(f"{place}.path", "expected a file path such as lab.pcap"))
        return problems

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
        skip = VNET_HDR_LEN if port.vnet_hdr else 0
        try:
            while True:
                packets = await port.read_batch()
                now = time.time()
                for packet in packets:
                    writer.write(memoryview(packet)[skip:] if skip else packet, now, flush=False)
                writer.flush()
                self.counters["packets"] += len(packets)
        except OSError as exc:  # reading the device or writing the file (disk full...)
            raise KernelError(exc.errno or 0, f"pcap: capture to {self.path!r}",
                              device=self.ctx.device_name or None,
                              detail=exc.strerror or str(exc)) from None
        finally:
            writer.close()
