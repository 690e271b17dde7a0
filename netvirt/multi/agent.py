"""The machine side: ``netvirt agent``, one machine's share, driven over an SSH channel.

The driver starts ``<command> agent`` on each machine over SSH and speaks JSON
lines with it (``wire.py``) on the channel's stdin and stdout; the agent's
stderr is the machine's log, which the driver shows on failure.

Requests (one answer each, in order):

``hello {underlay}``  netvirt's version, this process's pid, the MTU of the
                      interface that holds the underlay address (an error if
                      none does: the ``machines:`` entry points elsewhere)
``build {share, scenario, vxlans}``  build the share (``ShareTopology``) under
                      its own lab name, with the state record and journal of
                      any local lab (``/run/netvirt/<share>``)
``step {step, index}``  run one step here; its result
``teardown``          tear the share down and end

The share lives as long as the channel: when stdin ends (the driver exited,
was killed, or the connection was lost), on SIGTERM (``netvirt down SHARE`` on
this machine), SIGINT or SIGHUP, the agent tears the share down and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
import time
from typing import Any

from netvirt import __version__
from netvirt._aio import complete
from netvirt.errors import EnvironmentProblem, NetvirtError
from netvirt.multi import wire


class Agent:
    def __init__(self) -> None:
        self.topo: Any = None
        self.done = False
        self.listeners: dict[int, tuple[Any, asyncio.Future[Any]]] = {}

    async def handle(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        fn = getattr(self, f"op_{op}", None)
        if fn is None:
            raise EnvironmentProblem(f"agent: unknown request {op!r} (driver and machine differ?)")
        result: dict[str, Any] = await fn(msg)
        return result

    async def op_hello(self, msg: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"version": __version__, "pid": os.getpid()}
        if msg.get("underlay"):
            out["mtu"] = await underlay_mtu(msg["underlay"])
        return out

    async def op_build(self, msg: dict[str, Any]) -> dict[str, Any]:
        from netvirt.multi.share import ShareTopology

        if self.topo is not None:
            raise EnvironmentProblem("agent: this agent has built its share already")
        scenario = wire.decode(msg["scenario"])
        vxlans = wire.decode(msg["vxlans"])
        self.topo = ShareTopology(scenario, vxlans)
        t0 = time.perf_counter()
        await self.topo.build()
        self.topo.mark_ready()
        return {"lab": self.topo.lab, "seconds": time.perf_counter() - t0,
                "nodes": len(scenario.nodes), "vxlans": len(vxlans)}

    async def op_step(self, msg: dict[str, Any]) -> dict[str, Any]:
        from netvirt.multi._live import run_step

        if self.topo is None:
            raise EnvironmentProblem("agent: no share is built here")
        step = wire.decode(msg["step"])
        result = await run_step(self.topo, step, int(msg.get("index", 1)))
        return {"result": result.as_dict()}

    # a connect step whose listener is here and whose sender is on another machine
    async def op_listen(self, msg: dict[str, Any]) -> dict[str, Any]:
        import socket

        from netvirt.multi._live import echo_probes

        tcp_echo_once, _, udp_echo, _ = echo_probes()
        node = self._topo().node(msg["node"])
        fam = socket.AF_INET6 if ":" in msg["address"] else socket.AF_INET
        tcp = msg["proto"] == "tcp"
        sock = await node.socket(fam, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((msg["address"], int(msg["port"])))
            if tcp:
                sock.listen(4)
        except OSError:
            sock.close()
            raise
        loop = asyncio.get_running_loop()
        echo = tcp_echo_once(loop, sock) if tcp else udp_echo(loop, sock)
        token = len(self.listeners) + 1
        self.listeners[token] = (sock, asyncio.ensure_future(echo))
        return {"token": token}

    async def op_unlisten(self, msg: dict[str, Any]) -> dict[str, Any]:
        sock, task = self.listeners.pop(int(msg["token"]))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        sock.close()
        return {}

    async def op_talk(self, msg: dict[str, Any]) -> dict[str, Any]:
        import socket

        from netvirt.multi._live import echo_probes

        _, tcp_roundtrip, _, udp_roundtrip = echo_probes()
        node = self._topo().node(msg["node"])
        addr, port = msg["address"], int(msg["port"])
        fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
        tcp = msg["proto"] == "tcp"
        sock = await node.socket(fam, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM)
        payload = os.urandom(int(msg["bytes"]))
        loop = asyncio.get_running_loop()
        try:
            talk = tcp_roundtrip if tcp else udp_roundtrip
            echoed = await asyncio.wait_for(talk(loop, sock, (addr, port), payload), float(msg["timeout"]))
        except (TimeoutError, OSError) as exc:
            return {"intact": False, "detail": f"{type(exc).__name__}: {exc}" if str(exc) else "timed out"}
        finally:
            sock.close()
        if echoed == payload:
            return {"intact": True, "detail": f"{len(echoed)}/{len(payload)} bytes echoed intact"}
        return {"intact": False, "detail": f"echo differs: got {len(echoed)} of {len(payload)} bytes"}

    def _topo(self) -> Any:
        if self.topo is None:
            raise EnvironmentProblem("agent: no share is built here")
        return self.topo

    async def op_teardown(self, msg: dict[str, Any]) -> dict[str, Any]:
        await self.teardown()
        self.done = True
        return {}

    async def teardown(self) -> None:
        for token in list(self.listeners):
            await self.op_unlisten({"token": token})
        topo, self.topo = self.topo, None
        if topo is not None:
            await complete(topo.teardown())


async def underlay_mtu(address: str) -> int:
    """The MTU of this namespace's interface that holds ``address``."""
    from netvirt.netns import Namespace

    want = ipaddress.ip_address(address)
    host = await Namespace.host()
    try:
        def find() -> tuple[int | None, list[str]]:
            nl = host.netlink
            seen = []
            for index, cidr in nl.addrs():
                ip = ipaddress.ip_interface(cidr).ip
                seen.append(str(ip))
                if ip == want:
                    return nl.link(index).mtu, seen
            return None, seen

        mtu, seen = await host.call(find)
    finally:
        await host.close()
    if mtu is None:
        raise EnvironmentProblem(
            f"underlay address {address} is not an address of this machine (it has: "
            f"{', '.join(a for a in seen if not a.startswith(('127.', '::1', 'fe80'))) or 'none'}); "
            "fix machines.<name>.underlay")
    return mtu


def _error(exc: BaseException) -> dict[str, Any]:
    code = exc.exit_code if isinstance(exc, NetvirtError) else 1
    text = str(exc) or type(exc).__name__
    return {"ok": False, "error": text, "exit": code, "type": type(exc).__name__}


async def serve(reader: asyncio.StreamReader, write: Any) -> int:
    """Answer requests from ``reader`` until teardown or end of input, then tear down."""
    agent = Agent()
    try:
        while not agent.done:
            line = await reader.readline()
            if not line:
                break  # the driver is gone: nobody will ever ask for a teardown
            try:
                msg = wire.loads(line)
            except ValueError as exc:
                write({"id": None, **_error(EnvironmentProblem(f"agent: bad request line: {exc}"))})
                continue
            try:
                reply = {"id": msg.get("id"), "ok": True, **await agent.handle(msg)}
            except (NetvirtError, OSError, ValueError, KeyError, TypeError) as exc:
                reply = {"id": msg.get("id"), **_error(exc)}
            write(reply)
    finally:
        await complete(agent.teardown())
    return 0


def main(loop_name: str = "asyncio") -> int:
    """Entry point of ``netvirt agent``: stdin/stdout are the driver's channel.

    Only protocol lines may reach the channel: the real stdout is kept for them and
    fd 1 becomes stderr, so whatever else prints (user programs, child processes
    that inherit fd 1) goes to the machine's log instead.
    """
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def write(msg: dict[str, Any]) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            out.write(wire.dumps(msg))
            out.flush()

    async def run() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def stop() -> None:
            nonlocal stopping
            if not stopping:  # later signals: let the teardown finish
                stopping = True
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, stop)
        reader = asyncio.StreamReader(limit=64 << 20)
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        try:
            return await serve(reader, write)
        except asyncio.CancelledError:
            if stopping:
                return 130
            raise

    if loop_name == "uvloop":
        import uvloop

        return uvloop.run(run())
    return asyncio.run(run())


__all__ = ["Agent", "main", "serve", "underlay_mtu"]
