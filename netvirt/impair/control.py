"""``netvirt link LAB ENDPOINT ...``: the lab's owner serves link control on a unix socket.

Theory of operation: the datapaths of a lab's impaired links belong to the
process that built the lab (``run``, ``up``, ``up --detach``), so a command
from another shell must ask that process. It listens on
``/run/netvirt/<lab>/control.sock`` (a ``SOCK_STREAM`` unix socket, mode
0600: root only, like the rest of the state record); each request is one
line of JSON, ``{"endpoint": "a:eth0", "op": "down"|"up"|"reset"|"show"|"set",
"keys": {...}, "both": false}``, answered by one line of JSON
(``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "...", "exit": N}``).
The server resolves endpoints through a lookup the owner gives it (the
topology's ``link()``), so this module knows nothing of topologies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netvirt.errors import EnvironmentProblem, NetvirtError, UsageError

if TYPE_CHECKING:
    from .link import LinkEnd

__all__ = ["CONTROL_NAME", "ControlServer", "request"]

CONTROL_NAME = "control.sock"
_OPS = ("down", "up", "reset", "show", "set")


class ControlServer:
    """Serves link control for one lab until closed."""

    def __init__(self, path: Path, lookup: Callable[[str], LinkEnd]) -> None:
        self.path = path
        self.lookup = lookup
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            os.chmod(self.path, 0o600)
            sock.listen(8)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._serve, sock=sock)

    async def aclose(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    reply = {"ok": True, "result": await self.handle(json.loads(line))}
                except NetvirtError as exc:
                    reply = {"ok": False, "error": str(exc), "exit": exc.exit_code}
                except (ValueError, KeyError, TypeError) as exc:
                    reply = {"ok": False, "error": f"bad request: {exc}", "exit": 2}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def handle(self, req: dict[str, Any]) -> Any:
        op = req["op"]
        if op not in _OPS:
            raise UsageError(f"unknown link operation {op!r}: use {', '.join(_OPS)}")
        end = self.lookup(str(req["endpoint"]))
        both = bool(req.get("both", False))
        if op == "down":
            await end.down()
        elif op == "up":
            await end.up()
        elif op == "reset":
            await end.reset(both=both)
        elif op == "set":
            keys = req.get("keys") or {}
            if not keys:
                raise UsageError("set needs at least one condition, e.g. --delay 20ms")
            await end.impair(both=both, **keys)
        return end.link.stats()


def request(state_dir: Path, req: dict[str, Any], *, timeout: float = 10.0) -> Any:
    """Send one request to the lab's owner (blocking: the CLI side)."""
    path = state_dir / CONTROL_NAME
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise EnvironmentProblem(
                f"no process serves lab {state_dir.name!r} (no {path}): link control needs the lab "
                "running (up, up --detach or run --keep)") from None
        sock.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise EnvironmentProblem(f"lab {state_dir.name!r}: its process closed the control socket")
            buf += chunk
    finally:
        sock.close()
    reply = json.loads(buf)
    if not reply.get("ok"):
        err: NetvirtError = UsageError(reply["error"]) if reply.get("exit") == 2 else \
            EnvironmentProblem(reply["error"])
        raise err
    return reply.get("result")
