"""Run a scenario's checks against a live topology and report PASS/FAIL.

Each runner takes the typed parameters that validation made
(``netvirt.scenario.model``: ``PingStep``, ``ConnectStep``, ...). A failed
check raises :class:`~netvirt.errors.StepFailed`. The ping is
netvirt's own: a raw ICMP/ICMPv6 socket opened inside the ``from`` node,
driven by the event loop, so no ``ping`` binary is needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from netvirt.devices.bridge import Bridge
from netvirt.errors import NetvirtError, StepFailed
from netvirt.packets import checksum
from netvirt.scenario.model import (
    ConnectStep,
    CountersStep,
    ExecStep,
    FdbStep,
    PingStep,
    StepSpec,
    WaitStep,
)
from netvirt.topology.builder import Topology


@dataclass
class StepResult:
    index: int
    kind: str
    title: str
    ok: bool
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_steps(topo: Topology, steps: tuple[StepSpec, ...] | None = None, *,
                    on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run every step in order (a failed step does not stop the next ones)."""
    results = []
    for i, step in enumerate(topo.scenario.steps if steps is None else steps, 1):
        result = await run_step(topo, step, i)
        if on_result is not None:
            on_result(result)
        results.append(result)
    return results


async def run_step(topo: Topology, step: StepSpec, index: int = 1) -> StepResult:
    fn = _RUNNERS[step.kind]
    title = _title(step)
    t0 = time.perf_counter()
    try:
        detail = await fn(topo, step.params)
        ok = True
    except StepFailed as exc:
        ok, detail = False, str(exc)
    except (OSError, NetvirtError, KeyError) as exc:  # a failed check, not an aborted run
        ok, detail = False, f"{type(exc).__name__}: {exc}"
    return StepResult(index, step.kind, title, ok, detail, time.perf_counter() - t0)


def _title(step: StepSpec) -> str:
    p = step.params
    match p:
        case PingStep():
            return f"ping {p.src} -> {p.to} x{p.count}" + (
                " (expect failure)" if p.expect == "failure" else "")
        case ConnectStep():
            return f"{p.proto} {p.src} -> {p.to} {p.bytes} B" + (
                " (expect failure)" if p.expect == "failure" else "")
        case ExecStep():
            return f"exec {p.node}: {p.cmd}"
        case CountersStep():
            return f"counters {p.device}"
        case FdbStep():
            return f"fdb {p.bridge} {p.mac} on {p.port}"
        case WaitStep():
            return f"wait {p.seconds} s"
    return step.kind


# -- ping -----------------------------------------------------------------
async def ping(topo: Topology, src: str, dst: str, *, count: int = 3, timeout: float = 1.0,
               interval: float = 0.02) -> tuple[int, list[float]]:
    """Send ``count`` echo requests from node ``src``; return (replies, rtts)."""
    addr = ipaddress.ip_address(dst)
    v6 = addr.version == 6
    node = topo.node(src)
    sock = await node.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW,
                             socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    loop = asyncio.get_running_loop()
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    sent: dict[int, float] = {}
    rtts: list[float] = []
    got: set[int] = set()
    done = asyncio.Event()

    def on_readable() -> None:
        while True:
            try:
                data = sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            icmp = data if v6 else data[(data[0] & 0x0F) * 4:]
            if len(icmp) < 8:
                continue
            typ, _code, _ck, rid, seq = struct.unpack_from("!BBHHH", icmp)
            if typ == (129 if v6 else 0) and rid == ident and seq in sent and seq not in got:
                got.add(seq)
                rtts.append(time.perf_counter() - sent[seq])
                if len(got) == count:
                    done.set()

    loop.add_reader(sock.fileno(), on_readable)
    try:
        for seq in range(1, count + 1):
            payload = struct.pack("!d", time.time()) + bytes(range(48))
            hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, seq)
            msg = hdr + payload
            if not v6:  # the kernel fills in the ICMPv6 checksum itself
                msg = hdr[:2] + struct.pack("!H", checksum(msg)) + hdr[4:] + payload
            sent[seq] = time.perf_counter()
            try:
                sock.sendto(msg, (dst, 0))
            except OSError as exc:
                if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EAGAIN):
                    raise
            if seq < count:
                await asyncio.sleep(interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return len(got), rtts


async def _ping(topo: Topology, p: PingStep) -> str:
    n, rtts = await ping(topo, p.src, p.to, count=p.count, timeout=p.timeout)
    summary = f"{n}/{p.count} replies"
    if rtts:
        summary += f", rtt avg {1000 * sum(rtts) / len(rtts):.2f} ms"
    if p.expect == "success" and n != p.count:
        raise StepFailed(summary)
    if p.expect == "failure" and n:
        raise StepFailed(f"{summary}; expected none")
    return summary


# -- connect --------------------------------------------------------------
async def _connect(topo: Topology, p: ConnectStep) -> str:
    addr, port, proto = p.address, p.port, p.proto
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    payload = os.urandom(p.bytes)
    server = topo.node(p.server)
    client = topo.node(p.src)
    loop = asyncio.get_running_loop()
    stype = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    lsock = await server.socket(fam, stype)
    csock: socket.socket | None = None
    try:
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        lsock.bind((addr, port))
        csock = await client.socket(fam, stype)
        if proto == "tcp":
            lsock.listen(4)
            srv = asyncio.ensure_future(_tcp_echo_once(loop, lsock))
            talk = _tcp_client(loop, csock, (addr, port), payload)
        else:
            srv = asyncio.ensure_future(_udp_echo(loop, lsock))
            talk = _udp_client(loop, csock, (addr, port), payload)
        try:
            echoed = await asyncio.wait_for(talk, p.timeout)
        finally:
            srv.cancel()
            await asyncio.gather(srv, return_exceptions=True)
        ok = echoed == payload
        detail = f"{len(echoed)}/{len(payload)} bytes echoed intact" if ok else \
            f"echo differs: got {len(echoed)} of {len(payload)} bytes"
    except (TimeoutError, OSError) as exc:
        ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else "timed out"
    finally:
        lsock.close()
        if csock is not None:
            csock.close()
    if p.expect == "success" and not ok:
        raise StepFailed(detail)
    if p.expect == "failure" and ok:
        raise StepFailed(f"{detail}; expected no connection")
    return detail if ok else f"failed as expected ({detail})"


async def _tcp_echo_once(loop: asyncio.AbstractEventLoop, lsock: socket.socket) -> None:
    conn, _ = await loop.sock_accept(lsock)
    conn.setblocking(False)
    try:
        while data := await loop.sock_recv(conn, 65536):
            await loop.sock_sendall(conn, data)
    finally:
        conn.close()


async def _tcp_client(loop: asyncio.AbstractEventLoop, sock: socket.socket, dst: tuple[str, int],
                      payload: bytes) -> bytes:
    await loop.sock_connect(sock, dst)
    send = asyncio.ensure_future(loop.sock_sendall(sock, payload))
    try:
        buf = bytearray()
        while len(buf) < len(payload):
            data = await loop.sock_recv(sock, 65536)
            if not data:
                break
            buf += data
        await send
    finally:
        if not send.done():  # timed out: stop writing before the socket is closed
            send.cancel()
            await asyncio.gather(send, return_exceptions=True)
    return bytes(buf)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` is readable (uvloop has no sock_recvfrom: use add_reader)."""
    fut: asyncio.Future[None] = loop.create_future()
    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


async def _udp_echo(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    while True:
        await _readable(loop, sock)
        try:
            data, peer = sock.recvfrom(65536)
        except BlockingIOError:
            continue
        sock.sendto(data, peer)


async def _udp_client(loop: asyncio.AbstractEventLoop, sock: socket.socket, dst: tuple[str, int],
                      payload: bytes) -> bytes:
    chunks = [payload[i:i + 1200] for i in range(0, len(payload), 1200)] or [b""]
    sock.connect(dst)
    out = bytearray()
    for chunk in chunks:  # one at a time: UDP has no retransmission, keep the test exact
        for _attempt in range(3):
            sock.send(chunk)
            try:
                await asyncio.wait_for(_readable(loop, sock), 0.5)
                out += sock.recv(65536)
                break
            except (TimeoutError, BlockingIOError):
                continue
        else:
            break
    return bytes(out)


# -- exec, counters, fdb, wait ---------------------------------------------
async def _exec(topo: Topology, p: ExecStep) -> str:
    res = await topo.node(p.node).exec(p.cmd, timeout=p.timeout)
    if res.returncode != p.exit:
        err = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        raise StepFailed(f"exit {res.returncode}, expected {p.exit}: {err[0][:200]}")
    if p.stdout and not re.search(p.stdout, res.stdout):
        raise StepFailed(f"stdout does not match /{p.stdout}/: {res.stdout.strip()[:200]!r}")
    return f"exit {res.returncode}"


async def _counters(topo: Topology, p: CountersStep) -> str:
    ep = p.device
    prog = topo.program(ep.node, ep.ifname)
    deadline = time.monotonic() + p.timeout
    while True:
        c = dict(prog.counters)
        bad = [f"{k}={c.get(k, 0)} (want {v})" for k, v in p.equals.items() if c.get(k, 0) != v]
        bad += [f"{k}={c.get(k, 0)} (want >= {v})" for k, v in p.at_least.items() if c.get(k, 0) < v]
        if not bad or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    shown = ", ".join(f"{k}={c.get(k, 0)}" for k in {**p.equals, **p.at_least})
    if bad:
        raise StepFailed("; ".join(bad))
    return shown


async def _fdb(topo: Topology, p: FdbStep) -> str:
    br = topo.device(p.bridge.node, p.bridge.ifname)
    if not isinstance(br, Bridge):
        raise StepFailed(f"{p.bridge} is not a bridge")
    port = await br.learned(p.mac)
    if port != p.port:
        raise StepFailed(f"{p.mac} learned on {port or 'no port'}, expected {p.port}")
    return f"{p.mac} on {port}"


async def _wait(topo: Topology, p: WaitStep) -> str:
    await asyncio.sleep(p.seconds)
    return f"waited {p.seconds} s"


_RUNNERS: dict[str, Callable[[Topology, Any], Awaitable[str]]] = {
    "ping": _ping, "connect": _connect, "exec": _exec, "counters": _counters,
    "fdb": _fdb, "wait": _wait,
}
