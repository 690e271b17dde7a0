"""What every program shares: its context and the ``Program`` base.

Theory of operation: a program runs inside netvirt's own process, on the
event loop, against the :class:`~netvirt.packetio.PacketPort` of a tun, tap
or macvtap (``ctx.port``; a multi-queue device has one port per queue, all in
``ctx.ports``, and every program serves all of them). The builder constructs it from a :class:`ProgramContext`
(no I/O in the constructor: params are checked and parsed there, and bad ones
raise :class:`~netvirt.errors.ScenarioError`), then runs :meth:`Program.run`
as a task until teardown cancels it. Sockets a program needs (a tunnel's
underlay) come from ``ctx.open_socket``, which opens them inside the node's
namespace from a worker thread, so the loop thread never switches namespace;
the program closes them when ``run`` ends. The device's fd belongs to the
device, never to the program.

Counters are plain ints in a dict that ``status`` and the ``counters`` step
read; a program names them all up front so they show as 0 before traffic.

Failures: junk input never ends a program (parsers return None, and the
built-ins are fuzzed for it). Anything else that ends :meth:`Program.run`
with an exception is kept on the program: :attr:`Program.error` holds it,
it is logged on the ``netvirt.programs`` logger, and callbacks registered
with :meth:`Program.on_error` are called with the program and the error.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import KernelError, NetvirtError, Problem, ScenarioError
from ..packetio import PacketPort
from ._checks import Schema
from ._params import check_keys

__all__ = ["OpenSocket", "Program", "ProgramContext"]

OpenSocket = Callable[[int, int, int], Awaitable[socket.socket]]
log = logging.getLogger("netvirt.programs")


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
    #: The scenario file, for the place in error messages ("" outside a scenario).
    source: str = ""
    #: The program's counters; user handlers may add and update entries.
    counters: dict[str, int] = field(default_factory=dict)
    #: Every queue of the device (a multi-queue tun/tap has several; the kernel
    #: spreads flows over them). Empty: the queues ``port`` belongs to.
    ports: list[PacketPort] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = list(self.port.queues or [self.port])


class Program(ABC):
    """A userspace program on a device's packet fd. Subclasses set ``name``."""

    name: ClassVar[str]
    #: Counters present (at 0) from the start.
    counter_names: ClassVar[tuple[str, ...]] = ()
    #: Param keys this program accepts (``name`` is always allowed).
    allowed_params: ClassVar[frozenset[str]] = frozenset()
    required_params: ClassVar[frozenset[str]] = frozenset()
    #: Device framings the program serves: "ip" (a tun), "ether" (a tap or macvtap).
    framings: ClassVar[tuple[str, ...]] = ("ip", "ether")
    #: A built-in's params and framings, checked by validation without this class
    #: (:mod:`netvirt.programs._checks`); a class that sets it takes the four above from it.
    schema: ClassVar[Schema | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        schema = cls.__dict__.get("schema")
        if schema is not None:
            cls.name, cls.framings = schema.name, schema.framings
            cls.allowed_params, cls.required_params = schema.allowed, schema.required

    def __init__(self, ctx: ProgramContext) -> None:
        problems = self.check_params(ctx.params, ctx.place)
        problems += self.check_device("tun" if ctx.port.framing == "ip" else "tap", ctx.place)
        if problems:
            raise ScenarioError(problems)
        self.ctx = ctx
        self.port = ctx.port
        self.counters: dict[str, int] = ctx.counters
        for counter in self.counter_names:
            self.counters.setdefault(counter, 0)
        self.ports: list[PacketPort] = ctx.ports
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._failure: BaseException | None = None
        self._error_callbacks: list[Callable[[Program, BaseException], object]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} on {self.ctx.device_name or '?'}>"

    # -- validation ---------------------------------------------------------
    @classmethod
    def check_params(cls, params: Mapping[str, Any], place: str) -> list[Problem]:
        """Problems with ``params`` (pure: no I/O, never raises).

        The default checks the class's :attr:`schema`, or without one its keys
        against ``allowed_params``/``required_params``; subclasses may extend it.
        """
        if cls.schema is not None:
            return cls.schema.check(params, place)
        return check_keys(params, cls.allowed_params, cls.required_params, place,
                          what=f"program {getattr(cls, 'name', cls.__name__)!r}")

    @classmethod
    def check_device(cls, kind: str, place: str) -> list[Problem]:
        """Problems with running this program on a device of ``kind`` (pure).

        Validation should call it with the interface's kind; the constructor
        calls it with the port's framing, so a mismatch fails the build at the
        latest, with the place."""
        framing = "ip" if kind == "tun" else "ether"
        if framing in cls.framings:
            return []
        what = "IP packets: put it on a tun" if framing == "ether" else "Ethernet frames"
        return [Problem(place, f"program {getattr(cls, 'name', cls.__name__)!r} carries {what}, "
                               f"not on a {kind}")]

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
            self._task.add_done_callback(self._finished)
            if not self.signals_ready:
                self.mark_ready()
        return self._task

    def _finished(self, task: asyncio.Task[None]) -> None:
        exc = None if task.cancelled() else task.exception()
        if exc is None:
            return
        self._failure = exc
        if not self._error_callbacks:  # else whoever registered reports it (a topology does)
            log.error("program %r failed: %s: %s", self, type(exc).__name__, exc, exc_info=exc)
        for callback in list(self._error_callbacks):
            try:
                callback(self, exc)
            except Exception:  # a reporter's bug must not hide the program's error
                log.exception("error callback of %r failed", self)

    def on_error(self, callback: Callable[[Program, BaseException], object]) -> None:
        """Call ``callback(program, exc)`` when :meth:`run` ends with an exception
        (at once if it already has)."""
        self._error_callbacks.append(callback)
        if self._failure is not None:
            callback(self, self._failure)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def error(self) -> BaseException | None:
        """The exception that ended :meth:`run`, if it failed (None while it runs,
        after a clean end or a cancellation)."""
        return self._failure

    async def serve_ports(self, serve: Callable[[PacketPort], Awaitable[None]]) -> None:
        """Run ``serve(port)`` for every queue of the device until cancelled (or one fails)."""
        if len(self.ports) == 1:
            await serve(self.ports[0])
            return
        tasks = [asyncio.ensure_future(serve(port)) for port in self.ports]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

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


