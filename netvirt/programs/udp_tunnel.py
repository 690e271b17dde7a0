"""``udp-tunnel``: one IP packet per UDP datagram to a peer and back (the VPN principle).

Params: ``local`` (``IP:PORT`` to bind in the node, on the underlay),
``remote`` (``IP:PORT`` of the peer; ``[v6]:PORT`` for IPv6) and
``offload`` (``auto``, the default, or ``false``; see below). The socket is
not connected: every datagram is received and those not from ``remote``
(address and port) are counted in ``rx_foreign`` and dropped, as are those
that are not a plausible IP packet (``malformed``).

Wire format: the standard one (SPEC.md section 2). Every datagram carries
one ordinary IP packet with correct checksums, never bigger than the
underlay carries unfragmented (the path MTU to ``remote`` minus 28 bytes of
IPv4 + UDP header, 48 for IPv6: ``limit``), so any peer that speaks it (a
0.1.0 netvirt without offload, a few lines of C, another VPN's plain mode)
interoperates, and the underlay sees no IP fragment as long as the tun's MTU
is at most ``limit`` (1472 on a 1500 underlay; 1400 leaves room). TCP never
needs fragments even with a bigger tun MTU: it is cut to ``limit`` (TCP takes
smaller segments). Any other packet above ``limit`` is sent anyway, the
underlay fragments it, and it is counted in ``too_big``.

On a tap (Ethernet framing) the program carries one Ethernet frame per
datagram instead (an L2 tunnel: both ends must be taps).

The fast path (theory of operation; figures from ``python -m
benchmarks.tunnel``, BENCHMARKS.md):

* Offload is netvirt's business with its own kernel, never a wire format. With
  ``offload: auto`` (the default) the program switches on its tun's vnet
  header and TSO4/TSO6 (and USO where the kernel has it, Linux >= 6.2)
  itself when the tun is its own (single queue, opened without offload, not
  persistent): :func:`netvirt.devices._tuntap.enable_offload`, which re-
  attaches the fd with IFF_VNET_HDR in place. A tun that the scenario opened
  with ``offload: true`` is used as it is. ``offload: false`` keeps the tun
  as it was opened (one MTU-sized packet per read).
* Device -> wire: the kernel hands out TCP super-packets of up to 64 KiB. They
  are cut into segments in userspace (:func:`netvirt.wire.tso.segment`:
  headers packed per segment, checksums from one sum per payload, payloads
  never copied), and each run of segments leaves in one ``sendmsg`` with
  ``UDP_SEGMENT`` (UDP GSO, Linux 4.18): the kernel carries the run as one
  buffer down to the veth or NIC, which puts one datagram per segment on the
  wire. Runs of equal-size small packets (a 64-byte UDP flood) leave the
  same way.
* Wire -> device: the socket sets ``UDP_GRO`` (Linux 5.0), so a run that
  arrives whole (a veth keeps it whole) is read with one ``recvmsg``. On a
  tun with a vnet header, a run of TCP segments of one flow is merged back
  into one super-packet (``NEEDS_CSUM``, ``TCPV4``/``TCPV6``:
  :func:`netvirt.wire.tso.coalesce_tcp`, after checking every segment's
  checksum in one sum) and a run of UDP datagrams of one flow into one
  ``UDP_L4`` packet: one ``write`` each, and the kernel's TCP takes the
  super-packet as GRO would have made it. Consecutive reads of one segment
  size are gathered first (a 64 KiB super-packet needs two sends: an IP
  packet carries at most 65535 bytes), and a run is cut after each PSH, as
  GRO cuts it.
* A segment size the kernel refuses (``EINVAL``/``EMSGSIZE``) turns UDP GSO off
  for that size and larger (one send each); a merged write the kernel refuses
  before it ever took one turns merging off.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sys
from typing import Any, ClassVar

from ..packetio import MAX_PACKET
from ..wire.packets import Buffer, ip_plausible
from ..wire.tso import Run
from ._checks import SCHEMAS
from ._params import parse_endpoint
from ._program import ProgramContext
from ._tunnel import TunnelProgram
from ._tunnel_wire import plan_sends, plan_writes

__all__ = ["UdpTunnel"]

SOL_UDP = 17
UDP_SEGMENT = 103  # linux/udp.h; not in Python 3.11's socket module
UDP_GRO = 104
_IP_MTU, _IPV6_MTU = 14, 24
_GSO_REFUSED = (errno.EINVAL, errno.EMSGSIZE, errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP)
_GRO_SPACE = socket.CMSG_SPACE(4)


class UdpTunnel(TunnelProgram):
    """Counters: ``tun_rx``, ``tun_tx``, ``udp_rx``, ``udp_tx``, ``rx_foreign``,
    ``malformed``, ``dropped``, ``gso_tx``, ``gso_rx``, ``segmented``, ``too_big``,
    ``max_len`` (see :mod:`netvirt.programs._tunnel`)."""

    schema = SCHEMAS["udp-tunnel"]
    wire: ClassVar[str] = "udp"
    counter_names: ClassVar[tuple[str, ...]] = TunnelProgram.tunnel_counters("udp")
    #: Use UDP GSO on send and UDP GRO on receive (see the module doc); set it
    #: False on an instance before :meth:`run` to measure the plain path.
    udp_gso: bool = True

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        local, lport = parse_endpoint(ctx.params["local"])
        remote, rport = parse_endpoint(ctx.params["remote"])
        self.local: tuple[str, int] = (str(local), lport)
        self.remote: tuple[str, int] = (str(remote), rport)
        self._family = socket.AF_INET if local.version == 4 else socket.AF_INET6
        self._overhead = 28 if local.version == 4 else 48  # outer IP + UDP headers
        self.max_wire = 65507 if local.version == 4 else 65527  # one UDP GSO send at most
        self.auto_offload = ctx.params.get("offload", "auto") == "auto"
        self._ether = self.port.framing == "ether"
        self._gso_below = self.max_wire + 1  # segment sizes the kernel accepts: below this
        self._gro = False
        self._merge = True  # until the kernel refuses a merged write it never took
        self._merged_once = False
        #: Offload flags this program switched on itself (0: none).
        self.offload_flags = 0
        self._rx_view = memoryview(bytearray(4 * MAX_PACKET))  # room to gather GRO reads
        self._written = 0

    # -- set-up -------------------------------------------------------------------------
    async def prepare(self) -> None:
        port = self.port
        if (not self.auto_offload or port.vnet_hdr or self._ether or len(self.ports) != 1
                or port.closed):
            return
        from ..devices import _tuntap  # here: validation imports programs, never pyroute2

        try:
            self.offload_flags = await asyncio.to_thread(_tuntap.enable_offload, port.fileno())
        except OSError:  # an old kernel, a shared or persistent tun: stay plain
            self.offload_flags = 0
            return
        port.vnet_hdr = True

    async def open_underlay(self) -> socket.socket:
        sock = await self.open_bound(self._family, socket.SOCK_DGRAM, 0, self.local)
        self.limit = await self._path_limit() + (14 if self._ether else 0)
        if self.udp_gso:
            try:
                sock.setsockopt(SOL_UDP, UDP_GRO, 1)
                self._gro = True
            except OSError:
                self._gro = False
        else:
            self._gso_below = 0
        return sock

    async def _path_limit(self) -> int:
        """The largest inner packet the route to the peer carries unfragmented."""
        mtu = 1500
        with contextlib.suppress(OSError):
            probe = await self.ctx.open_socket(self._family, socket.SOCK_DGRAM, 0)
            with probe:
                probe.connect(self.remote)
                if self._family == socket.AF_INET:
                    mtu = probe.getsockopt(socket.IPPROTO_IP, _IP_MTU)
                else:
                    mtu = probe.getsockopt(socket.IPPROTO_IPV6, _IPV6_MTU)
        return max(68, mtu - self._overhead)

    # -- device -> wire -----------------------------------------------------------------
    def _on_device(self, port: Any) -> None:
        if not self._ether:
            super()._on_device(port)
            return
        sock = self._sock
        if sock is None:
            return
        try:
            frames = port.read_nowait(self.BATCH)
        except OSError as exc:
            self._fail(exc, "read from the device")
            return
        if frames:
            self.counters["tun_rx"] += len(frames)
            plan = plan_sends(frames, port.vnet_hdr, self.limit, ether=True)
            self._count_plan(plan)
            self.transmit(sock, plan.runs)

    def encapsulate(self, sock: socket.socket, packet: Buffer) -> bool:
        sock.sendto(packet, self.remote)
        return True

    def transmit(self, sock: socket.socket, runs: list[Run]) -> None:
        """Send each run in as few ``sendmsg`` calls as UDP GSO allows."""
        remote, sendmsg = self.remote, sock.sendmsg
        sent = total = 0
        for run in runs:
            step, count = run.step, run.n
            total += count
            group = min(64, self.max_wire // step) if 0 < step < self._gso_below else 1
            a = 0
            while a < count:
                b = min(count, a + max(1, group))
                chunk = run.chunk(a, b)
                try:
                    if b - a > 1:
                        sendmsg(chunk, [(SOL_UDP, UDP_SEGMENT, step.to_bytes(2, sys.byteorder))],
                                0, remote)
                    else:
                        sendmsg(chunk, (), 0, remote)
                    sent += b - a
                except OSError as exc:
                    if b - a > 1 and exc.errno in _GSO_REFUSED:
                        self._gso_below = min(self._gso_below, step)  # one send each from now
                        group = 1
                        continue
                a = b
        self.counters["udp_tx"] += sent
        self.counters["dropped"] += total - sent

    # -- wire -> device -----------------------------------------------------------------
    def _on_socket(self) -> None:
        if not self._gro:
            super()._on_socket()
            return
        sock = self._sock
        if sock is None:
            return
        counters, view = self.counters, self._rx_view
        recv, space, (host, rport) = sock.recvmsg_into, _GRO_SPACE, self.remote
        port, ether = self.port, self._ether
        # runs of one segment size that continue each other are written as one: a 64 KiB
        # super-packet needs two sends (IP length), and its halves merge back here
        gather = port.vnet_hdr and self._merge and not ether
        start = end = step = 0  # view[start:end]: datagrams of ``step`` bytes, none short
        received = 0
        self._written = 0
        try:
            for _ in range(self.BATCH):
                if end + MAX_PACKET > len(view):
                    if end > start:
                        self._flush(view[start:end], step)
                    start = end = 0
                try:
                    size, ancdata, _flags, source = recv([view[end:]], space)
                except (BlockingIOError, InterruptedError):
                    break
                segment = size
                for level, kind, value in ancdata:
                    if level == SOL_UDP and kind == UDP_GRO:
                        segment = int.from_bytes(value[:4], sys.byteorder) or size
                count = -(-size // segment) if size and segment else 1
                received += count
                if source[1] != rport or source[0] != host:
                    counters["rx_foreign"] += count
                    continue
                if not gather or not size:
                    self._flush(view[end : end + size], segment)  # (an empty one: malformed)
                    continue
                if end > start and segment != step and not size == segment < step:
                    self._flush(view[start:end], step)  # (a shorter single one may end it)
                    start = end
                if end == start:
                    step = segment
                end += size
                if size % step or end - start >= 0xFFFF:  # a short last one ends a run
                    self._flush(view[start:end], step)
                    start = end
            if end > start:
                self._flush(view[start:end], step)
        except OSError as exc:
            self._fail(exc, "receive from the underlay")
        finally:
            counters["udp_rx"] += received
            counters["tun_tx"] += self._written

    def _flush(self, data: memoryview, segment: int) -> None:
        """Write the datagrams in ``data`` into the device (merged where they can be)."""
        port, counters = self.port, self.counters
        plan = plan_writes(data, segment, port.vnet_hdr, self._merge, self._ether)
        counters["malformed"] += plan.malformed
        for packet, carried in plan.packets:
            if port.write_nowait(packet):
                self._written += carried
                if carried > 1:
                    self._merged_once = True
                    counters["gso_rx"] += 1
            else:
                if carried > 1 and not self._merged_once:
                    # the kernel never took a merged write (no UDP_L4 on tun before
                    # Linux 6.2): stop merging
                    self._merge = False
                counters["dropped"] += carried

    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        if source[1] != self.remote[1] or source[0] != self.remote[0]:
            self.counters["rx_foreign"] += 1
            return None
        if not (len(data) >= 14 if self._ether else ip_plausible(data)):
            self.counters["malformed"] += 1
            return None
        return data
