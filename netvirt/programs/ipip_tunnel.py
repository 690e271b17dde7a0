"""``ipip-tunnel``: IPv4-in-IPv4 (IP protocol 4) on a raw socket, in userspace.

Params: ``local`` and ``remote``, IPv4 addresses of the underlay. The raw
socket (``IPPROTO_IPIP``, needs CAP_NET_RAW) is bound to ``local``, so it
receives only protocol-4 packets addressed to it, and the kernel writes the
outer header on send (protocol 4, source ``local``). A raw IPv4 socket reads
the whole packet, outer header included: it is checked (source must be
``remote``, else ``rx_foreign``) and stripped, and the inner packet must be a
plausible IPv4 packet (else ``malformed``). Protocol 4 carries only IPv4:
IPv6 packets read from the device are counted in ``dropped``. The wire is
standard IP-in-IP, so on a tun with ``offload`` every packet leaves plain:
checksums left to "hardware" are completed and GSO super-packets cut into
MTU-sized segments in Python (counted in ``segmented``); that works, but
costs more than leaving ``offload`` off.

Theory of operation: every raw socket of a protocol gets a copy of each
matching packet, so two labs' tunnels in one namespace would see each other's
traffic; the source check drops it. A node that also has the kernel's own
``ipip`` module with a ``tunl0`` up would decapsulate the same packets once more.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, ClassVar

from ..wire.packets import Buffer, ip_plausible
from ._checks import SCHEMAS
from ._params import parse_ip
from ._program import ProgramContext
from ._tunnel import TunnelProgram

__all__ = ["IpipTunnel"]

IPPROTO_IPIP = 4


class IpipTunnel(TunnelProgram):
    """Counters: ``tun_rx``, ``tun_tx``, ``ipip_rx``, ``ipip_tx``, ``rx_foreign``,
    ``malformed``, ``dropped``, ``gso_tx`` (always 0), ``gso_rx`` (always 0),
    ``segmented``, ``max_len`` (see :class:`~netvirt.programs.base.TunnelProgram`)."""

    schema = SCHEMAS["ipip-tunnel"]
    wire: ClassVar[str] = "ipip"
    counter_names: ClassVar[tuple[str, ...]] = TunnelProgram.tunnel_counters("ipip")
    #: The kernel's IP layer handles the outer packet's size (PMTU and all).
    limit: int = 65515

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        self.local = str(parse_ip(ctx.params["local"]))
        self.remote = str(parse_ip(ctx.params["remote"]))
        self._remote_addr = (self.remote, 0)
        self._remote_packed = ipaddress.IPv4Address(self.remote).packed

    async def open_underlay(self) -> socket.socket:
        return await self.open_bound(socket.AF_INET, socket.SOCK_RAW, IPPROTO_IPIP,
                                     (self.local, 0))

    def encapsulate(self, sock: socket.socket, packet: Buffer) -> bool:
        if not packet or packet[0] >> 4 != 4:
            return False
        sock.sendto(packet, self._remote_addr)
        return True

    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        size = len(data)
        if size < 20 or data[0] >> 4 != 4 or data[9] != IPPROTO_IPIP:
            self.counters["malformed"] += 1
            return None
        if data[12:16] != self._remote_packed:
            self.counters["rx_foreign"] += 1
            return None
        outer_len = (data[0] & 15) * 4
        total = data[2] << 8 | data[3]
        if not 20 <= outer_len <= total <= size:
            self.counters["malformed"] += 1
            return None
        inner = data[outer_len:total]
        if not ip_plausible(inner) or inner[0] >> 4 != 4:
            self.counters["malformed"] += 1
            return None
        return inner
