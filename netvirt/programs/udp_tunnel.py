"""``udp-tunnel``: one IP packet per UDP datagram to a peer and back (the VPN principle).

Params: ``local`` (``IP:PORT`` to bind in the node, on the underlay) and
``remote`` (``IP:PORT`` of the peer; ``[v6]:PORT`` for IPv6). The socket is
not connected: every datagram is received and those not from ``remote``
(address and port) are counted in ``rx_foreign`` and dropped, as are those
that are not a plausible IP packet (``malformed``). The overlay carries plain
IP packets: on a device with a vnet header the header is stripped (a partial
checksum completed) on the way out and a zero one added on the way in; GSO
super-packets are dropped, so leave ``offload`` off on a tunnel's tun.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import Problem
from ..packets import ip_plausible
from .base import IPAddress, ProgramContext, TunnelProgram, parse_endpoint

__all__ = ["UdpTunnel"]


class UdpTunnel(TunnelProgram):
    """Counters: ``tun_rx``, ``tun_tx``, ``udp_rx``, ``udp_tx``, ``rx_foreign``,
    ``malformed``, ``dropped``."""

    name: ClassVar[str] = "udp-tunnel"
    wire: ClassVar[str] = "udp"
    counter_names: ClassVar[tuple[str, ...]] = TunnelProgram.tunnel_counters("udp")
    allowed_params: ClassVar[frozenset[str]] = frozenset({"local", "remote"})
    required_params: ClassVar[frozenset[str]] = frozenset({"local", "remote"})

    @classmethod
    def check_params(cls, params: Mapping[str, Any], place: str) -> list[Problem]:
        problems = super().check_params(params, place)
        parsed: dict[str, IPAddress] = {}
        for key in ("local", "remote"):
            if key not in params:
                continue
            try:
                parsed[key] = parse_endpoint(params[key])[0]
            except ValueError as exc:
                problems.append(Problem(f"{place}.{key}", str(exc)))
                continue
            if parsed[key].is_multicast or key == "remote" and parsed[key].is_unspecified:
                problems.append(Problem(f"{place}.{key}", f"{parsed[key]} is not a host address"))
        if len(parsed) == 2 and parsed["local"].version != parsed["remote"].version:
            problems.append(Problem(f"{place}.remote",
                                    "local and remote must both be IPv4 or both IPv6"))
        return problems

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        local, lport = parse_endpoint(ctx.params["local"])
        remote, rport = parse_endpoint(ctx.params["remote"])
        self.local: tuple[str, int] = (str(local), lport)
        self.remote: tuple[str, int] = (str(remote), rport)
        self._family = socket.AF_INET if local.version == 4 else socket.AF_INET6
        self._remote_host, self._remote_port = self.remote

    async def open_underlay(self) -> socket.socket:
        return await self.open_bound(self._family, socket.SOCK_DGRAM, 0, self.local)

    def encapsulate(self, sock: socket.socket, packet: bytes | bytearray | memoryview) -> bool:
        sock.sendto(packet, self.remote)
        return True

    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        if source[1] != self._remote_port or source[0] != self._remote_host:
            self.counters["rx_foreign"] += 1
            return None
        if not ip_plausible(data):
            self.counters["malformed"] += 1
            return None
        return data

