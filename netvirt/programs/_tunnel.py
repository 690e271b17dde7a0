"""``TunnelProgram``: the engine the socket tunnels share (``udp-tunnel``, ``ipip-tunnel``).

Theory of operation: every queue fd of the device and the underlay socket
are watched with ``loop.add_reader``; each wake-up drains up to ``BATCH``
packets with non-blocking calls until ``EAGAIN`` (one read per wake-up, as
asyncio's datagram transport does, is 3-4x slower). Sends never wait: a full
queue (``EAGAIN``/``ENOBUFS``) or any other send error drops the packet and
counts it in ``dropped``. What to send and what to write is decided by the
pure functions of :mod:`netvirt.programs._tunnel_wire` (one IP packet per
datagram, each fitting the underlay); received datagrams pass
:meth:`TunnelProgram.decapsulate` (source and sanity checks), so garbage is
counted, never fatal. Only an error on the fd or socket themselves
(``EBADF``...) ends :meth:`~TunnelProgram.run`, as a
:class:`~netvirt.errors.KernelError`.

Counters: ``tun_rx``/``tun_tx`` (packets read from / written to the device;
a super-packet is one), ``<wire>_rx``/``<wire>_tx`` (datagrams received /
sent), ``rx_foreign`` (not from the remote), ``malformed``, ``dropped``,
``gso_tx`` (super-packets read from the device and cut into segments),
``gso_rx`` (super-packets written into the device, merged from a run of
datagrams), ``segmented`` (device packets cut into several wire packets),
``too_big`` (wire packets above what the underlay carries unfragmented: make
the tun MTU smaller), ``max_len`` (longest packet read from the device, vnet
header excluded).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from abc import abstractmethod
from typing import Any, ClassVar

from ..errors import KernelError
from ..packetio import MAX_PACKET, PacketPort
from ..wire.packets import VNET_HDR_LEN, VNET_ZERO_HDR, Buffer
from ..wire.tso import Run
from ._program import Program, ProgramContext
from ._tunnel_wire import Sends, plan_sends

__all__ = ["TunnelProgram"]

_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33  # asm-generic/socket.h; not in Python 3.11


class TunnelProgram(Program):
    """Shared fast path of the socket tunnels (see the module doc)."""

    BATCH: ClassVar[int] = 64
    SOCKET_BUFFER: ClassVar[int] = 4 << 20
    #: Freed heap glibc may keep (a batch of super-packets and their segments: ~9 MiB).
    FREED_HEAP: ClassVar[int] = 16 << 20
    signals_ready = True  # ready once the underlay socket is bound and watched
    #: Prefix of the underlay counters: "udp" or "ipip".
    wire: ClassVar[str]
    #: Largest inner packet the underlay carries unfragmented (set from the path MTU).
    limit: int = 1480

    @staticmethod
    def tunnel_counters(wire: str) -> tuple[str, ...]:
        return ("tun_rx", "tun_tx", f"{wire}_rx", f"{wire}_tx", "rx_foreign", "malformed",
                "dropped", "gso_tx", "gso_rx", "segmented", "too_big", "max_len")

    def __init__(self, ctx: ProgramContext) -> None:
        super().__init__(ctx)
        self._rx_key, self._tx_key = f"{self.wire}_rx", f"{self.wire}_tx"
        self._buf = bytearray(MAX_PACKET)
        self._view = memoryview(self._buf)
        self._sock: socket.socket | None = None
        self._done: asyncio.Future[None] | None = None

    @abstractmethod
    async def open_underlay(self) -> socket.socket:
        """Open and bind the underlay socket (see :meth:`open_bound`)."""

    async def prepare(self) -> None:
        """Set-up before the device is watched (e.g. switch on offload)."""

    async def open_bound(self, family: int, type_: int, proto: int,
                         address: tuple[str, int]) -> socket.socket:
        """A non-blocking socket in the node's namespace bound to ``address``.

        Failures become :class:`~netvirt.errors.KernelError` naming the device."""
        host, port = address
        where = host if type_ == socket.SOCK_RAW else (
            f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        try:
            sock = await self.ctx.open_socket(family, type_, proto)
        except OSError as exc:
            raise self._error(exc, "open the underlay socket",
                              "raw sockets need CAP_NET_RAW" if type_ == socket.SOCK_RAW
                              else "") from None
        try:
            sock.setblocking(False)
            for force, option in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF),
                                  (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
                try:  # FORCE (CAP_NET_ADMIN) ignores net.core.[rw]mem_max
                    sock.setsockopt(socket.SOL_SOCKET, force, self.SOCKET_BUFFER)
                except OSError:
                    with contextlib.suppress(OSError):  # a smaller buffer still works
                        sock.setsockopt(socket.SOL_SOCKET, option, self.SOCKET_BUFFER)
            sock.bind(address)
        except OSError as exc:
            sock.close()
            raise self._error(exc, f"bind {where}",
                              f"is {host} an address of this node?") from None
        return sock

    def _error(self, exc: OSError, op: str, hint: str = "") -> KernelError:
        detail = exc.strerror or str(exc)
        return KernelError(exc.errno or 0, f"{self.name}: {op}",
                           device=self.ctx.device_name or None,
                           detail=f"{detail}; {hint}" if hint else detail)

    @abstractmethod
    def encapsulate(self, sock: socket.socket, packet: Buffer) -> bool:
        """Send one wire packet to the peer; False if it is not sendable (a drop).

        May raise OSError (counted as a drop)."""

    @abstractmethod
    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        """The packet to write into the device, or None (the method counts why)."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        await self.prepare()
        if any(port.vnet_hdr for port in self.ports):
            # super-packets: each batch allocates and frees 64 KiB buffers (see keep_freed_heap)
            from .._sys import keep_freed_heap

            keep_freed_heap(self.FREED_HEAP)
        sock = await self.open_underlay()
        watched: list[int] = []
        try:
            self._sock, self._done = sock, loop.create_future()
            loop.add_reader(sock.fileno(), self._on_socket)
            watched.append(sock.fileno())
            for port in self.ports:
                loop.add_reader(port.fileno(), self._on_device, port)
                watched.append(port.fileno())
            self.mark_ready()
            await self._done
        finally:
            for fd in watched:
                loop.remove_reader(fd)
            self._sock = None
            sock.close()

    def _fail(self, exc: OSError, op: str) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(self._error(exc, op))

    # -- device -> wire ---------------------------------------------------------------
    def _on_device(self, port: PacketPort) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            packets = port.read_nowait(self.BATCH)
        except OSError as exc:
            self._fail(exc, "read from the device")
            return
        if not packets:
            return
        counters = self.counters
        counters["tun_rx"] += len(packets)
        longest = max(map(len, packets)) - (VNET_HDR_LEN if port.vnet_hdr else 0)
        if longest > counters["max_len"]:
            counters["max_len"] = longest
        plan = plan_sends(packets, port.vnet_hdr, self.limit)
        self._count_plan(plan)
        self.transmit(sock, plan.runs)

    def _count_plan(self, plan: Sends) -> None:
        counters = self.counters
        counters["dropped"] += plan.dropped
        counters["gso_tx"] += plan.segmented
        counters["segmented"] += plan.segmented
        counters["too_big"] += plan.too_big

    def transmit(self, sock: socket.socket, runs: list[Run]) -> None:
        """Send runs packet by packet (one :meth:`encapsulate` each); count sends and drops."""
        sent = total = 0
        send = self.encapsulate
        for run in runs:
            for i in range(run.n):
                total += 1
                packet = run.packet(i)
                try:
                    if send(sock, packet):
                        sent += 1
                except OSError:
                    pass
        self.counters[self._tx_key] += sent
        self.counters["dropped"] += total - sent

    # -- wire -> device ---------------------------------------------------------------
    def _on_socket(self) -> None:
        sock = self._sock
        if sock is None:
            return
        view, recv, decap, deliver = self._view, sock.recvfrom_into, self.decapsulate, self.deliver
        received = written = 0
        try:
            for _ in range(self.BATCH):
                try:
                    size, source = recv(self._buf)
                except (BlockingIOError, InterruptedError):
                    break
                received += 1
                inner = decap(view[:size], source)
                if inner is not None:
                    written += deliver(inner)
        except OSError as exc:
            self._fail(exc, "receive from the underlay")
        finally:
            self.counters[self._rx_key] += received
            self.counters["tun_tx"] += written

    def deliver(self, inner: Buffer) -> int:
        """Write one plain IP packet from the wire into the device; packets written."""
        port = self.port
        if port.write_nowait(VNET_ZERO_HDR + inner if port.vnet_hdr else inner):
            return 1
        self.counters["dropped"] += 1
        return 0
