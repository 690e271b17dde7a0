"""``udp-tunnel``: one IP packet per UDP datagram to a peer and back (the VPN principle).

Params: ``local`` (``IP:PORT`` to bind in the node, on the underlay) and
``remote`` (``IP:PORT`` of the peer; ``[v6]:PORT`` for IPv6). The socket is
not connected: every datagram is received and those not from ``remote``
(address and port) are counted in ``rx_foreign`` and dropped, as are those
that are not a plausible IP packet (``malformed``).

Wire format: one IP packet per UDP datagram. With ``offload`` on the tun,
a datagram may instead start with the tun's 10-byte ``virtio_net_hdr``
and carry a GSO super-packet of up to 64 KiB (or a packet whose checksum is
left to the receiver): its first byte is below 0x10, an IP packet's is 0x4_
or 0x6_, so a receiver always knows which it got. Such a datagram is larger
than the underlay MTU and is fragmented by the sender's IP layer and
reassembled by the receiver's. The peer writes it as is into its own tun if
that has offload too; otherwise it completes the checksum or cuts the
super-packet into MTU-sized packets in Python (correct, but slow: give both
ends the same ``offload`` setting). A netvirt older than this format counts
such datagrams as ``malformed``.

Theory of operation (beyond :class:`~netvirt.programs.base.TunnelProgram`;
figures from ``python -m benchmarks.tunnel``, 2 vCPUs, BENCHMARKS.md):

* TCP: with ``offload`` on both tuns a read is a super-packet of up to 64 KiB
  and it crosses as one datagram, so the per-packet costs (a read, a send, a
  receive, a write, Python in between) are paid once per ~45 segments, and
  the Python in the path does no per-byte work: ~6.9 Gbit/s against ~2.5
  without offload and ~1.5 for OpenVPN, 1.7 CPU s/GB of tunnel processes
  against 4.2 and 7.2. The kernel's UDP checksum over each 64 KiB datagram is
  then the largest single cost in the profile.
* Small packets: runs of equal-size packets read in one wake-up (a 64-byte
  UDP flood, full-MTU TCP segments) leave in one ``sendmsg`` with
  ``UDP_SEGMENT`` (UDP GSO, Linux 4.18): the kernel carries them as one
  buffer down to the veth or NIC, which puts one datagram per segment on the
  wire, so a receiver sees exactly what one ``sendto`` each would have sent.
  The socket sets ``UDP_GRO`` (Linux 5.0), so such a run that arrives whole
  (a veth keeps it whole) is read with one ``recvmsg`` and split at the
  segment size the kernel reports. On a device with a vnet header a run of
  one UDP flow is then merged back into one ``UDP_L4`` GSO packet
  (:func:`~netvirt.gso.udp_merge`) and written with one ``write``; the
  kernel cuts it up again on delivery. Together: 12 -> 3.5 CPU us per
  forwarded 64-byte packet and 79 -> 274 kpps received. A segment size the
  kernel refuses (``EINVAL``/``EMSGSIZE``: segment plus headers above the
  route MTU) turns GSO off for that size and larger (one ``sendto`` each); a
  merged write the kernel refuses before it ever took one (Linux < 6.2 has no
  ``UDP_L4`` on tun) turns merging off.
* Not done: packing several packets into one datagram (a wire format of our
  own; UDP GSO/GRO gives the same syscall savings on the standard one);
  ``send`` on a connected socket (0.2 us cheaper than ``sendto`` per call, but
  the kernel would then drop foreign datagrams before ``rx_foreign`` counts
  them, and GSO already makes sends rare).
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from ..errors import Problem
from ..gso import UDP_MAX_SEGMENTS, udp_merge, vnet_plausible
from ..packets import Buffer, ip_plausible
from .base import IPAddress, ProgramContext, TunnelProgram, parse_endpoint

__all__ = ["UdpTunnel"]

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h; not in Python 3.11's socket module
UDP_GRO = 104
_GSO_REFUSED = (errno.EINVAL, errno.EMSGSIZE, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP)


class UdpTunnel(TunnelProgram):
    """Counters: ``tun_rx``, ``tun_tx``, ``udp_rx``, ``udp_tx``, ``rx_foreign``,
    ``malformed``, ``dropped``, ``gso_tx``, ``gso_rx``, ``segmented``, ``max_len``
    (see :class:`~netvirt.programs.base.TunnelProgram`)."""

    name: ClassVar[str] = "udp-tunnel"
    wire: ClassVar[str] = "udp"
    WIRE_VNET: ClassVar[bool] = True
    counter_names: ClassVar[tuple[str, ...]] = TunnelProgram.tunnel_counters("udp")
    allowed_params: ClassVar[frozenset[str]] = frozenset({"local", "remote"})
    required_params: ClassVar[frozenset[str]] = frozenset({"local", "remote"})
    #: Use UDP GSO on send and UDP GRO on receive (see the module doc); set it
    #: False on an instance before :meth:`run` to measure the plain path.
    udp_gso: bool = True

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
        self.max_wire = 65507 if local.version == 4 else 65527  # 64 KiB - IP/UDP headers
        self._gso_below = self.max_wire + 1  # segment sizes the kernel accepts: below this
        self._gro = False
        self._merge = True  # until the kernel refuses a UDP_L4 GSO write (Linux < 6.2)
        self._merged_once = False

    async def open_underlay(self) -> socket.socket:
        sock = await self.open_bound(self._family, socket.SOCK_DGRAM, 0, self.local)
        if self.udp_gso:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro = True
            except OSError:
                self._gro = False
        else:
            self._gso_below = 0
        return sock

    def encapsulate(self, sock: socket.socket, packet: Buffer) -> bool:
        sock.sendto(packet, self.remote)
        return True

    def transmit(self, sock: socket.socket, packets: list[Buffer]) -> None:
        """Send runs of equal-size packets (plus one shorter last) as one GSO send each."""
        n = len(packets)
        if n < 2 or not self._gso_below:
            super().transmit(sock, packets)
            return
        remote, sendto, sendmsg = self.remote, sock.sendto, sock.sendmsg
        max_wire = self.max_wire
        i = sent = 0
        while i < n:
            size = len(packets[i])
            j = i + 1
            if 0 < size < self._gso_below:
                limit = min(n, i + UDP_MAX_SEGMENTS, i + max_wire // size)
                while j < limit and len(packets[j]) == size:
                    j += 1
                if j < limit and 0 < len(packets[j]) < size:
                    j += 1
            try:
                if j - i > 1:
                    sendmsg(packets[i:j], [(SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))],
                            0, remote)
                else:
                    sendto(packets[i], remote)
                sent += j - i
            except OSError as exc:
                if j - i > 1 and exc.errno in _GSO_REFUSED:
                    self._gso_below = size  # never again as a segment: one send each
                    continue
            i = j
        self.counters["udp_tx"] += sent
        self.counters["dropped"] += n - sent

    def _on_socket(self) -> None:
        if not self._gro:
            super()._on_socket()
            return
        sock = self._sock
        if sock is None:
            return
        counters, view, bufs, deliver = self.counters, self._view, [self._buf], self.deliver
        recv, space, host, port = sock.recvmsg_into, _GRO_SPACE, *self.remote
        received = written = 0
        try:
            for _ in range(self.BATCH):
                try:
                    size, ancdata, _flags, source = recv(bufs, space)
                except (BlockingIOError, InterruptedError):
                    break
                segment = size
                for level, kind, value in ancdata:
                    if level == SOL_UDP and kind == UDP_GRO:
                        segment = int.from_bytes(value[:4], sys.byteorder) or size
                count = -(-size // segment) if size else 1
                segment = segment or 1  # an empty datagram: one malformed "segment"
                received += count
                if source[1] != port or source[0] != host:
                    counters["rx_foreign"] += count
                    continue
                data = view[:size]
                piece = segment * UDP_MAX_SEGMENTS if self._merge and self.port.vnet_hdr else 0
                for start in range(0, size or 1, piece or size or 1):
                    run = data[start : start + piece] if piece else data
                    if piece and len(run) > segment:
                        merged = udp_merge(run, segment)  # one flow: one write
                        if merged is not None and self._write_merged(merged, run, segment):
                            written += 1
                            continue
                    for offset in range(0, len(run) or 1, segment):
                        inner = run[offset : offset + segment]
                        if not (ip_plausible(inner) if not inner or inner[0] >= 0x10
                                else vnet_plausible(inner)):
                            counters["malformed"] += 1
                        else:
                            written += deliver(inner)
        except OSError as exc:
            self._fail(exc, "receive from the underlay")
        finally:
            counters["udp_rx"] += received
            counters["tun_tx"] += written

    def _write_merged(self, packet: bytes, run: memoryview, segment: int) -> bool:
        """Write a run merged by :func:`~netvirt.gso.udp_merge`. False: write it
        datagram by datagram instead (the kernel refused it; if it never took one,
        it predates UDP_L4 GSO on tun (Linux 6.2): stop merging)."""
        try:
            os.write(self.port.fileno(), packet)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                self._merge = self._merged_once
                return False
            if exc.errno not in (errno.EAGAIN, errno.EIO, errno.ENOBUFS, errno.EINTR):
                raise
            self.counters["dropped"] += -(-len(run) // segment)
            return True
        self._merged_once = True
        self.counters["gso_rx"] += 1
        return True

    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        if source[1] != self._remote_port or source[0] != self._remote_host:
            self.counters["rx_foreign"] += 1
            return None
        if not (ip_plausible(data) if len(data) < 1 or data[0] >= 0x10 else vnet_plausible(data)):
            self.counters["malformed"] += 1
            return None
        return data


_GRO_SPACE = socket.CMSG_SPACE(4)
