"""Run a scenario's checks against a live topology and report PASS/FAIL.

Each runner takes the typed parameters that validation made
(``netvirt.scenario.model``: ``PingStep``, ``ConnectStep``, ...). A failed
check raises :class:`~netvirt.errors.StepFailed`. The probes they use
(netvirt's own ping, TCP/UDP echo) are in ``probes.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from netvirt.devices.bridge import Bridge
from netvirt.errors import NetvirtError, StepFailed
from netvirt.scenario.model import (
    ConnectStep,
    CountersStep,
    ExecStep,
    FdbStep,
    ImpairStep,
    LinkStep,
    PingStep,
    StepSpec,
    ThroughputStep,
    WaitStep,
)
from netvirt.topology.builder import Topology
from netvirt.topology.link_steps import ping_step, run_impair, run_link, run_throughput
from netvirt.topology.probes import tcp_echo_once, tcp_roundtrip, udp_echo, udp_roundtrip


@dataclass
class StepResult:
    index: int
    kind: str
    title: str
    ok: bool
    detail: str
    seconds: float
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def run_steps(topo: Topology, steps: tuple[StepSpec, ...] | None = None, *,
                    on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
    """Run every step in order (a failed step does not stop the next ones).

    A program that died (before or during the steps) is a failed result of its
    own, after the step during which it was seen: a lab whose program is dead
    never passes.
    """
    results: list[StepResult] = []
    reported: set[str] = set()

    def add(result: StepResult) -> None:
        if on_result is not None:
            on_result(result)
        results.append(result)

    def program_deaths() -> None:
        for key, exc in topo.program_errors.items():
            if key not in reported:
                reported.add(key)
                add(StepResult(len(results) + 1, "program", f"program on {key}", False,
                               f"stopped: {type(exc).__name__}: {exc}", 0.0))

    program_deaths()
    for step in topo.scenario.steps if steps is None else steps:
        add(await run_step(topo, step, len(results) + 1))
        program_deaths()
    return results


async def run_step(topo: Topology, step: StepSpec, index: int = 1) -> StepResult:
    """Run one step; with ``retry``, again every ``every`` s until it passes or ``for`` s are spent."""
    fn = _RUNNERS[step.kind]
    title = _title(step)
    t0 = time.perf_counter()
    attempts = 0
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            detail = await fn(topo, step.params)
            ok = True
        except StepFailed as exc:
            ok, detail = False, str(exc)
        except TimeoutError as exc:  # often with an empty str(): say what ran out
            limit = getattr(step.params, "timeout", None)
            ok, detail = False, (str(exc) if str(exc) else f"timed out after {limit:g} s"
                                 if isinstance(limit, (int, float)) else "timed out")
        except (OSError, NetvirtError, KeyError) as exc:  # a failed check, not an aborted run
            ok, detail = False, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        retry = step.retry
        if ok or retry is None:
            break
        left = retry.seconds - (time.perf_counter() - t0)
        if left <= 0:
            break
        await asyncio.sleep(max(0.0, min(retry.every - (time.perf_counter() - started), left)))
    seconds = time.perf_counter() - t0
    if step.retry is not None:
        detail += (f" (after {attempts} attempts)" if ok else
                   f" (still failing after {attempts} attempts in {seconds:.1f} s)") if attempts > 1 else ""
    return StepResult(index, step.kind, title, ok, detail, seconds, attempts)


#: seconds a step's regex may take on the output
REGEX_SECONDS = 2.0


async def _search(pattern: str, text: str) -> bool:
    """``re.search`` semantics, bounded in time.

    Python's ``re`` holds the interpreter (and so the event loop and its signal
    handlers) for as long as a pattern backtracks: ``^(a+)+$`` on "aaa...!" never
    ends. The ``regex`` engine (re-compatible syntax) avoids most such blow-ups
    and stops any match after ``timeout``: then the step fails, saying why.
    """
    import regex

    try:
        return regex.search(pattern, text, timeout=REGEX_SECONDS) is not None
    except TimeoutError:
        raise StepFailed(f"the stdout regex /{pattern}/ took over {REGEX_SECONDS:g} s on "
                         f"{len(text)} characters (catastrophic backtracking?)") from None


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
        case LinkStep():
            return f"link {p.endpoint} {p.state}"
        case ImpairStep():
            return f"impair {p.endpoint}" + (" (both)" if p.both else "")
        case ThroughputStep():
            return f"throughput {p.proto} {p.src} -> {p.to} {p.seconds:g} s"
    return step.kind


# -- ping, connect ---------------------------------------------------------
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
            srv = asyncio.ensure_future(tcp_echo_once(loop, lsock))
            talk = tcp_roundtrip(loop, csock, (addr, port), payload)
        else:
            srv = asyncio.ensure_future(udp_echo(loop, lsock))
            talk = udp_roundtrip(loop, csock, (addr, port), payload)
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


# -- exec, counters, fdb, wait ---------------------------------------------
async def _exec(topo: Topology, p: ExecStep) -> str:
    res = await topo.node(p.node).exec(p.cmd, timeout=p.timeout)
    if res.returncode != p.exit:
        err = (res.stderr or res.stdout).strip().splitlines()[-1:] or [""]
        raise StepFailed(f"exit {res.returncode}, expected {p.exit}: {err[0][:200]}")
    if p.stdout and not await _search(p.stdout, res.stdout):
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
    "ping": ping_step, "connect": _connect, "exec": _exec, "counters": _counters,
    "fdb": _fdb, "wait": _wait, "link": run_link, "impair": run_impair, "throughput": run_throughput,
}
