"""What every program shares: its context, the ``Program`` base, param checks.

Theory of operation: a program runs inside netvirt's own process, on the
event loop, against one :class:`~netvirt.packetio.PacketPort` (one queue of a
tun, tap or macvtap). The builder constructs it from a :class:`ProgramContext`
(no I/O in the constructor: params are checked and parsed there, and bad ones
raise :class:`~netvirt.errors.ScenarioError`), then runs :meth:`Program.run`
as a task until teardown cancels it. Sockets a program needs (a tunnel's
underlay) come from ``ctx.open_socket``, which opens them inside the node's
namespace from a worker thread, so the loop thread never switches namespace;
the program closes them when ``run`` ends. The device's fd belongs to the
device, never to the program.

Counters are plain ints in a dict that ``status`` and the ``counters`` step
read; a program names them all up front so they show as 0 before traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import KernelError, NetvirtError, Problem, ScenarioError
from ..gso import gso_segment
from ..packetio import MAX_PACKET, PacketPort
from ..packets import VNET_HDR_LEN, VNET_ZERO_HDR, Buffer, vnet_to_plain

__all__ = [
    "IPAddress",
    "OpenSocket",
    "Program",
    "ProgramContext",
    "TunnelProgram",
    "check_keys",
    "parse_endpoint",
    "parse_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_SO_SNDBUFFORCE, _SO_RCVBUFFORCE = 32, 33  # asm-generic/socket.h; not in Python 3.11
OpenSocket = Callable[[int, int, int], Awaitable[socket.socket]]


@dataclass
class ProgramContext:
    """Everything a program gets from the device it runs on."""

    #: The device's packet fd ("ip" framing for tun, "ether" for tap/macvtap).
    port: PacketPort
    #: The scenario's program mapping minus ``name``.
    params: dict[str, Any]
    #: The interface's own addresses.
    addresses: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]
    #: ``(family, type, proto)`` -> a non-blocking socket inside the node's namespace.
    open_socket: OpenSocket
    device_name: str = ""
    #: Scenario key path for error messages, e.g. ``nodes.left.interfaces.tun0.program``.
    place: str = ""
    #: The device's MAC when the program must answer with it: set it for a
    #: macvtap (the kernel hands its fd only frames sent to that MAC); leave it
    #: empty for a tap, where the program is a guest with a MAC of its own.
    device_mac: str = ""
    #: The program's counters; user handlers may add and update entries.
    counters: dict[str, int] = field(default_factory=dict)


class Program(ABC):
    """A userspace program on a device's packet fd. Subclasses set ``name``."""

    name: ClassVar[str]
    #: Counters present (at 0) from the start.
    counter_names: ClassVar[tuple[str, ...]] = ()
    #: Param keys this program accepts (``name`` is always allowed).
    allowed_params: ClassVar[frozenset[str]] = frozenset()
    required_params: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, ctx: ProgramContext) -> None:
        problems = self.check_params(ctx.params, ctx.place)
        if problems:
            raise ScenarioError(problems)
        self.ctx = ctx
        self.port = ctx.port
        self.counters: dict[str, int] = ctx.counters
        for counter in self.counter_names:
            self.counters.setdefault(counter, 0)
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.ctx.device_name or '?'}>"

    # -- validation ---------------------------------------------------------
    @classmethod
    def check_params(cls, params: Mapping[str, Any], place: str) -> list[Problem]:
        """Problems with ``params`` (pure: no I/O, never raises).

        The default checks keys against ``allowed_params``/``required_params``;
        subclasses extend it with value checks.
        """
        return check_keys(params, cls.allowed_params, cls.required_params, place,
                          what=f"program {getattr(cls, 'name', cls.__name__)!r}")

    # -- running --------------------------------------------------------------
    @abstractmethod
    async def run(self) -> None:
        """Serve the device until cancelled; close what it opened on the way out."""

    #: True when :meth:`run` calls :meth:`mark_ready` itself after its setup
    #: (e.g. binding a socket); otherwise the program is ready once started.
    signals_ready: ClassVar[bool] = False

    def mark_ready(self) -> None:
        """Tell :meth:`wait_ready` that the program now handles traffic."""
        self._ready.set()

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait until the program handles traffic; raise what ended it if it died first."""
        task = self.start()
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({ready, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if task.done():
            try:
                task.result()  # raises the program's error
            except NetvirtError:
                raise
            except Exception as exc:  # user code: say which program failed, and how
                raise NetvirtError(f"program on {self.ctx.device_name or '?'} failed as it started: "
                                   f"{type(exc).__name__}: {exc}") from exc
        if not self._ready.is_set():
            raise KernelError(errno.ETIMEDOUT, "start program", device=self.ctx.device_name or None,
                              detail=f"{self!r} did not become ready in {timeout} s")

    def start(self) -> asyncio.Task[None]:
        """Run :meth:`run` as a task (once) and return it."""
        if self._task is None:
            label = f"netvirt-{self.name}-{self.ctx.device_name or 'dev'}"
            self._task = asyncio.get_running_loop().create_task(self.run(), name=label)
            if not self.signals_ready:
                self.mark_ready()
        return self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended :meth:`run`, if it failed."""
        task = self._task
        if task is None or not task.done() or task.cancelled():
            return None
        return task.exception()

    async def stop(self) -> None:
        """Cancel the task and wait for it to finish. Safe to call twice.

        A failure of the program is not raised here (teardown must complete);
        read it from :attr:`error`.
        """
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait({task})


class TunnelProgram(Program):
    """Shared fast path of the socket tunnels (``udp-tunnel``, ``ipip-tunnel``).

    Theory of operation: both the device fd and the underlay socket are
    watched with ``loop.add_reader``; each wake-up drains up to ``BATCH``
    packets with non-blocking calls until ``EAGAIN`` (one read per wake-up,
    as asyncio's datagram transport does, is 3-4x slower: BASELINES.md
    section 6). Sends never wait: a full queue (``EAGAIN``/``ENOBUFS``) or
    any other send error drops the packet and counts it in ``dropped``.
    Received datagrams pass :meth:`decapsulate` (source and sanity checks)
    before they reach the device, so garbage is counted, never fatal. Only
    an error on the fd or socket themselves (``EBADF``...) ends :meth:`run`,
    as a :class:`~netvirt.errors.KernelError`.

    Offload (a device opened with ``offload``: IFF_VNET_HDR + TSO): every
    read starts with a ``virtio_net_hdr`` and may be a GSO super-packet of up
    to 64 KiB, one read instead of ~45. An all-zero header is stripped and
    the plain packet goes out. Any other packet (GSO, or a checksum left to
    "hardware") goes out *with* its header when the wire can carry it
    (``WIRE_VNET``, the UDP tunnel: the datagram's first byte, the header's
    flags, is below 0x10 where an IP packet's is 0x4_ or 0x6_, so every
    datagram says which it is) and fits one datagram (the underlay IP layer
    fragments and reassembles it); otherwise it is made plain in Python
    (checksum completed, GSO cut into segments: :func:`~netvirt.gso.gso_segment`).
    On the way in, a device with a vnet header gets a header-carrying
    datagram as is (the kernel segments it only if it must forward it) and a
    plain packet behind a zero header; a device without one gets the plain
    form. So the two ends need not agree on ``offload``: only the fast case
    (header on the wire, no Python per byte) needs it on both.

    Counters: ``tun_rx``/``tun_tx`` (packets read from / written to the
    device; a super-packet is one), ``<wire>_rx``/``<wire>_tx`` (datagrams
    received / sent), ``rx_foreign`` (not from the remote), ``malformed``,
    ``dropped``, ``gso_tx`` (super-packets sent whole), ``gso_rx``
    (super-packets written whole: from the peer, or merged from a run of
    datagrams by the UDP tunnel), ``segmented`` (super-packets cut in Python),
    ``max_len`` (longest packet read from the device, vnet header excluded).
    """

    BATCH: ClassVar[int] = 64
    SOCKET_BUFFER: ClassVar[int] = 4 << 20
    signals_ready = True  # ready once the underlay socket is bound and watched
    #: Prefix of the underlay counters: "udp" or "ipip".
    wire: ClassVar[str]
    #: Whether a datagram may carry a device's vnet header (see the class doc).
    WIRE_VNET: ClassVar[bool] = False
    #: Largest payload of one underlay send (a bigger super-packet is segmented).
    max_wire: int = 65507

    @staticmethod
    def tunnel_counters(wire: str) -> tuple[str, ...]:
        return ("tun_rx", "tun_tx", f"{wire}_rx", f"{wire}_tx", "rx_foreign", "malformed",
                "dropped", "gso_tx", "gso_rx", "segmented", "max_len")

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
        """Send one device packet to the peer; False if it is not sendable (a drop).

        May raise OSError (counted as a drop)."""

    @abstractmethod
    def decapsulate(self, data: memoryview, source: Any) -> memoryview | None:
        """The packet to write into the device, or None (the method counts why)."""

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        sock = await self.open_underlay()
        try:
            self._sock, self._done = sock, loop.create_future()
            sock_fd, dev_fd = sock.fileno(), self.port.fileno()
            loop.add_reader(sock_fd, self._on_socket)
            try:
                loop.add_reader(dev_fd, self._on_device)
                self.mark_ready()
                try:
                    await self._done
                finally:
                    loop.remove_reader(dev_fd)
            finally:
                loop.remove_reader(sock_fd)
        finally:
            self._sock = None
            sock.close()

    def _fail(self, exc: OSError, op: str) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_exception(self._error(exc, op))

    # -- device -> wire ---------------------------------------------------------------
    def _on_device(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            packets = self.port.read_nowait(self.BATCH)
        except OSError as exc:
            self._fail(exc, "read from the device")
            return
        if not packets:
            return
        counters = self.counters
        counters["tun_rx"] += len(packets)
        longest = max(map(len, packets))
        wire: list[Buffer] = packets  # type: ignore[assignment]  # (list is invariant)
        if self.port.vnet_hdr:
            longest -= VNET_HDR_LEN
            wire = self._for_wire(packets)
        if longest > counters["max_len"]:
            counters["max_len"] = longest
        self.transmit(sock, wire)

    def _for_wire(self, packets: list[bytes]) -> list[Buffer]:
        """Device packets with vnet headers -> what goes on the wire (see the class doc)."""
        out: list[Buffer] = []
        counters, wire_vnet, max_wire = self.counters, self.WIRE_VNET, self.max_wire
        for packet in packets:
            if packet[:VNET_HDR_LEN] == VNET_ZERO_HDR:
                out.append(memoryview(packet)[VNET_HDR_LEN:])
            elif wire_vnet and len(packet) <= max_wire:
                out.append(packet)
                if packet[1]:
                    counters["gso_tx"] += 1
            elif not packet[1]:
                plain = vnet_to_plain(packet)
                if plain is None:
                    counters["dropped"] += 1
                else:
                    out.append(plain)
            else:
                segments = gso_segment(packet)
                if segments is None:
                    counters["dropped"] += 1
                else:
                    counters["segmented"] += 1
                    out.extend(segments)
        return out

    def transmit(self, sock: socket.socket, packets: list[Buffer]) -> None:
        """Send a batch (one :meth:`encapsulate` each); count sends and drops."""
        sent, send = 0, self.encapsulate
        for packet in packets:
            try:
                if send(sock, packet):
                    sent += 1
            except OSError:
                pass
        self.counters[self._tx_key] += sent
        self.counters["dropped"] += len(packets) - sent

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

    def deliver(self, inner: memoryview) -> int:
        """Write a decapsulated packet (maybe vnet-headed) into the device; packets written.

        The caller counts the result in ``tun_tx``; drops and conversions are counted here.
        """
        port, counters = self.port, self.counters
        if inner[0] >= 0x10:  # a plain IP packet
            if port.write_nowait(VNET_ZERO_HDR + inner if port.vnet_hdr else inner):
                return 1
            counters["dropped"] += 1
            return 0
        if port.vnet_hdr:  # a vnet header from the peer's device: the kernel takes it as is
            if port.write_nowait(inner):
                if inner[1]:
                    counters["gso_rx"] += 1
                return 1
            counters["dropped"] += 1
            return 0
        segments = gso_segment(inner)
        if segments is None:
            counters["malformed"] += 1
            return 0
        if inner[1]:
            counters["segmented"] += 1
        written = 0
        for segment in segments:
            if port.write_nowait(segment):
                written += 1
            else:
                counters["dropped"] += 1
        return written


# -- param helpers -------------------------------------------------------------
def check_keys(params: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str],
               place: str, *, what: str = "program") -> list[Problem]:
    """Unknown and missing keys of ``params`` (``name`` is always allowed)."""
    problems: list[Problem] = []
    allowed_set = set(allowed) | {"name"}
    known = ", ".join(sorted(set(allowed))) or "none"
    for key in params:
        if key not in allowed_set:
            problems.append(Problem(_join(place, str(key)),
                                    f"unknown key for {what} (allowed: {known})"))
    for key in sorted(required):
        if key not in params:
            problems.append(Problem(_join(place, key), f"{what} needs {key!r}"))
    return problems


def parse_ip(value: object) -> IPAddress:
    """An IP address from text (``"10.0.0.2"`` or ``"10.0.0.2/24"``); ValueError if bad."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address as text, got {type(value).__name__}")
    text = value.strip()
    if "/" in text:
        return ipaddress.ip_interface(text).ip
    return ipaddress.ip_address(text)


def parse_endpoint(value: object) -> tuple[IPAddress, int]:
    """``"IP:PORT"`` or ``"[IPv6]:PORT"`` -> (address, port); ValueError if bad."""
    if not isinstance(value, str):
        raise ValueError(f"expected IP:PORT as text, got {type(value).__name__}")
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected IP:PORT (e.g. 172.16.1.11:6000), got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 endpoint as [ADDRESS]:PORT, got {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return ipaddress.ip_address(host), port


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key
