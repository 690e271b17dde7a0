"""The parent's side of a link's datapath process: start, requests, stop.

See :mod:`netvirt.impair.datapath` for why the datapath is a process. Each
request is one JSON datagram on a SOCK_SEQPACKET socketpair, answered in
order; requests are sub-millisecond, so they are plain blocking calls under a
lock (``stats()`` is synchronous in the API), with a timeout. The process is
started with ``sys.executable`` and the path of *this* netvirt package, so
it runs the same code as its parent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from netvirt.errors import EnvironmentProblem

from .conditions import Conditions
from .datapath import conditions_to_wire

__all__ = ["DatapathProcess"]

_ROOT = str(Path(__file__).resolve().parent.parent.parent)
_TIMEOUT = 10.0


class DatapathProcess:
    """A running datapath for two tap fds (which stay the caller's: it closes its copies)."""

    def __init__(self, fds: tuple[int, int], *, name: str, realtime: bool = True) -> None:
        self.fds = fds
        self.realtime = realtime
        self.name = name
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def spawn(self) -> None:
        """Start the worker process; then :meth:`wait_ready` (blocking, off the event loop).

        Call this on a thread that outlives the link (the event loop's): the worker's
        ``PR_SET_PDEATHSIG`` fires when the *thread* that forked it exits.
        """
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            code = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
                    "from netvirt.impair._worker import main; sys.exit(main(sys.argv[1:]))")
            args = [str(self.fds[0]), str(self.fds[1]), str(child.fileno()), str(os.getpid()),
                    str(int(self.realtime))]
            self._proc = subprocess.Popen([sys.executable, "-c", code, *args],
                                          pass_fds=(*self.fds, child.fileno()),
                                          stdin=subprocess.DEVNULL, close_fds=True)
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        parent.settimeout(_TIMEOUT)
        self._sock = parent

    def wait_ready(self) -> None:
        self.pid = int(self._reply())

    def request(self, op: str, **args: Any) -> Any:
        with self._lock:
            if self._sock is None:
                raise EnvironmentProblem(f"link {self.name}: its datapath is stopped ({op})")
            try:
                self._sock.send(json.dumps({"op": op, **args}).encode())
            except OSError as exc:
                raise self._died(op) from exc
            return self._reply(op)

    def _reply(self, op: str = "start") -> Any:
        assert self._sock is not None
        try:
            data = self._sock.recv(1 << 20)
        except OSError as exc:
            raise self._died(op) from exc
        if not data:
            raise self._died(op)
        reply = json.loads(data)
        if not reply.get("ok"):
            raise EnvironmentProblem(f"link {self.name}: datapath request {op}: {reply.get('error')}")
        return reply.get("result")

    def _died(self, op: str) -> EnvironmentProblem:
        code = self._proc.poll() if self._proc else None
        return EnvironmentProblem(f"link {self.name}: its datapath process is gone (exit status "
                                  f"{code}) during {op}; tear the lab down and build it again")

    def configure(self, side: int, cond: Conditions | None) -> None:
        self.request("configure", side=side, conditions=conditions_to_wire(cond))

    def set_carrier(self, on: bool) -> None:
        self.request("carrier", on=on)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("stats")
        return result

    def stop(self) -> None:
        """Stop the worker (ask, then wait; kill if it does not go). Safe twice."""
        sock, self._sock = self._sock, None
        proc, self._proc = self._proc, None
        if sock is not None:
            try:
                sock.send(b'{"op": "stop"}')
                sock.recv(64)
            except OSError:
                pass
            sock.close()
        if proc is not None:
            try:
                proc.wait(2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
