"""Wait until a started process is ready, or fail with why and its last log lines.

Checks, each polled every ``ready.every`` s until ``ready.timeout``:
``exec`` a command in the node exits 0 (as the ``exec`` step runs it); ``tcp``
a socket listens on the port in the node's namespace (read from its
``/proc/net/tcp*``: nothing connects, so the daemon logs nothing); ``udp`` a
socket is bound to the port; ``log`` the process's log matches a regex
(matched off the event loop's thread: a pathological regex cannot freeze
signals); ``file`` a path exists as the node sees it (its private dirs). A
process of which nothing runs any more fails at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections.abc import Callable
from typing import Any

from netvirt.procs.launch import Process, ProcessError
from netvirt.procs.spec import Ready

_TCP_LISTEN, _UDP_UNCONN = "0A", "07"


def bound_ports(text: str, want_state: str | None) -> set[int]:
    """Local ports in a ``/proc/net/{tcp,udp}[6]`` table, of sockets in ``want_state`` (hex) if given."""
    ports: set[int] = set()
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 4:
            continue
        with contextlib.suppress(ValueError, IndexError):
            if want_state is None or f[3] == want_state:
                ports.add(int(f[1].rsplit(":", 1)[1], 16))
    return ports


def _ports_here(proto: str) -> set[int]:
    state = _TCP_LISTEN if proto == "tcp" else None
    out: set[int] = set()
    for table in (proto, proto + "6"):
        with contextlib.suppress(OSError), open(f"/proc/thread-self/net/{table}") as f:
            out |= bound_ports(f.read(), state)
    return out


def failure(proc: Process, what: str, lines: int = 10) -> ProcessError:
    tail = proc.tail(lines)
    shown = ("; last log lines:\n    " + "\n    ".join(tail)) if tail else (
        f" (log {proc.log} is empty)" if proc.log else "")
    return ProcessError(f"{proc.name}: {what}{shown}")


def exit_reason(proc: Process) -> str:
    code = proc.returncode
    if code is None:
        return "stopped running"
    if code < 0:
        import signal

        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


async def wait_ready(proc: Process, ready: Ready | None) -> float:
    """Wait for ``ready`` (None: only that it did not fail at once). Seconds it took."""
    t0 = time.monotonic()
    if ready is None:
        return 0.0
    check = await _checker(proc, ready)
    try:
        deadline = t0 + ready.timeout
        while True:
            if not proc.alive:
                raise failure(proc, f"{exit_reason(proc)} before it was ready ({ready.describe()})")
            if await check():
                return time.monotonic() - t0
            if time.monotonic() > deadline:
                raise failure(proc, f"not ready within {ready.timeout:g} s ({ready.describe()} never held)")
            await asyncio.sleep(ready.every)
    finally:
        close = getattr(check, "close", None)
        if close is not None:
            await close()


class _PortCheck:
    def __init__(self, proc: Process, proto: str, port: int) -> None:
        self.proc, self.proto, self.port = proc, proto, port
        self.ns: Any = None

    async def __call__(self) -> bool:
        if self.proc.view.netns is None:
            return self.port in _ports_here(self.proto)
        if self.ns is None:
            from netvirt.netns import Namespace

            self.ns = await Namespace.borrow(self.proc.view.netns)
        ports = await self.ns.call(_ports_here, self.proto)
        return self.port in ports

    async def close(self) -> None:
        if self.ns is not None:
            await self.ns.close()


class _LogCheck:
    def __init__(self, proc: Process, pattern: str) -> None:
        self.proc = proc
        self.regex = re.compile(pattern, re.MULTILINE)
        self.offset = 0
        self.carry = b""

    async def __call__(self) -> bool:
        if self.proc.log is None:
            return False
        try:
            with open(self.proc.log, "rb") as f:
                f.seek(self.offset)
                data = f.read(1 << 20)
        except OSError:
            return False
        self.offset += len(data)
        text = (self.carry + data).decode(errors="replace")
        self.carry = (self.carry + data)[-4096:]  # a match may straddle two reads
        return bool(text) and await asyncio.to_thread(lambda: self.regex.search(text) is not None)


async def _checker(proc: Process, ready: Ready) -> Callable[[], Any]:
    if ready.kind in ("tcp", "udp"):
        return _PortCheck(proc, ready.kind, int(ready.value))
    if ready.kind == "log":
        return _LogCheck(proc, str(ready.value))
    if ready.kind == "file":
        path = proc.view.host_path(str(ready.value))

        async def exists() -> bool:
            return os.path.exists(path)

        return exists

    async def command() -> bool:
        from netvirt.procs.command import run_command

        res = await run_command(proc.view, ["sh", "-c", str(ready.value)], timeout=max(ready.timeout, 1.0),
                                name=f"{proc.name}.ready")
        return res.returncode == 0

    return command


__all__ = ["bound_ports", "exit_reason", "failure", "wait_ready"]
