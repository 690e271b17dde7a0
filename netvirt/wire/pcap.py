"""The classic libpcap file format, written with ``struct`` (microsecond timestamps,
little-endian): :class:`PcapWriter`, used by the ``pcap`` program and the
``capture`` verb. Readable by ``tcpdump -r``, Wireshark and scapy's ``rdpcap``
while it is being written (each batch is flushed).
"""

from __future__ import annotations

import os
import struct
import time
from types import TracebackType
from typing import IO

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapWriter", "linktype_for"]

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
