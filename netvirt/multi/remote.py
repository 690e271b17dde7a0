"""One machine as the driver sees it: an SSH connection (asyncssh) and the agent on it.

What is honoured from the user's SSH setup: asyncssh reads ``~/.ssh/config``
(``Host``/``Match`` blocks with ``HostName``, ``User``, ``Port``, ``IdentityFile``,
``IdentitiesOnly``, ``UserKnownHostsFile``, ``ProxyJump``, ``ProxyCommand``,
``ConnectTimeout``, ``ServerAliveInterval``, ``SetEnv``/``SendEnv``, ``Include``...),
the default keys ``~/.ssh/id_*`` and a running ssh-agent (``SSH_AUTH_SOCK``), and
verifies host keys against ``~/.ssh/known_hosts`` (an unknown host is refused:
asyncssh has no ``StrictHostKeyChecking=accept-new``; run ``ssh HOST`` once, or
``ssh-keyscan``). ``ssh:`` in ``machines:`` is ``[user@]host[:port]``; what it does
not say comes from the config.

Errors: a machine that cannot be reached, refuses the key, has no netvirt, or runs
another version is a :class:`MachineError` (exit 3) naming the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shlex
from collections.abc import Sequence
from typing import Any

from netvirt import __version__
from netvirt.errors import EnvironmentProblem, MachineError, NetvirtError
from netvirt.multi import wire
from netvirt.multi.machines import MachineSpec

CONNECT_TIMEOUT = 15.0


def parse_ssh(target: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` (``[v6]:port`` too) -> (user, host, port)."""
    user, at, hostport = target.rpartition("@")
    port: int | None = None
    host = hostport
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif hostport.count(":") == 1:
        host, _, p = hostport.partition(":")
        port = int(p)
    return (user if at else None), host, port


class Remote:
    """The SSH connection to one machine and the agent running its share."""

    def __init__(self, machine: MachineSpec, *, ssh_config: Sequence[str] | None = None,
                 netns: str | None = None, timeout: float = CONNECT_TIMEOUT) -> None:
        self.machine = machine
        self.name = machine.name
        self._ssh_config = ssh_config
        self._netns = netns  # tests: open the TCP connection inside this namespace
        self._timeout = timeout
        self._conn: Any = None
        self._proc: Any = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._stderr: list[str] = []
        self._stderr_task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        #: resolved when the agent's channel ends (exit, lost connection); never raises
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.closing = False

    def __repr__(self) -> str:
        return f"<Remote {self.name} {self.machine.ssh}>"

    def fail(self, message: str, exit_code: int = 3) -> MachineError:
        return MachineError(self.name, message, exit_code)

    # -- connecting ----------------------------------------------------------------
    async def connect(self) -> None:
        try:
            import asyncssh
        except ModuleNotFoundError:
            raise EnvironmentProblem("labs across machines need asyncssh on the driver: "
                                     "pip install 'netvirt[multi]'") from None

        user, host, port = parse_ssh(self.machine.ssh)
        kw: dict[str, Any] = {"connect_timeout": self._timeout}
        if user:
            kw["username"] = user
        if port:
            kw["port"] = port
        if self._ssh_config is not None:
            kw["config"] = list(self._ssh_config)
        if self._netns is not None:
            kw["sock"] = await self._socket(host, port or 22)
        try:
            self._conn = await asyncssh.connect(host, **kw)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            if "sock" in kw:
                kw["sock"].close()
            raise self.fail(f"cannot reach {self.machine.ssh} over SSH: {_why(exc)}") from None

    async def _socket(self, host: str, port: int) -> Any:
        import socket

        from netvirt.netns import Namespace

        ns = await Namespace.borrow(self._netns)  # type: ignore[arg-type]
        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = await ns.socket(family, socket.SOCK_STREAM)
        finally:
            await ns.close()
        try:
            await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), self._timeout)
        except (OSError, TimeoutError) as exc:
            sock.close()
            raise self.fail(f"cannot reach {self.machine.ssh} over SSH: {_why(exc)}") from None
        return sock

    async def run(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """``<command> ARGS`` on the machine: (exit status, stdout, stderr)."""
        cmd = f"{self.machine.command} {' '.join(shlex.quote(a) for a in args)}"
        try:
            res = await asyncio.wait_for(self._conn.run(cmd, check=False), timeout)
        except (OSError, TimeoutError) as exc:
            raise self.fail(f"running {cmd!r} failed: {_why(exc)}") from None
        except Exception as exc:  # asyncssh.Error and the like
            raise self.fail(f"running {cmd!r} failed: {_why(exc)}") from None
        status = res.exit_status if res.exit_status is not None else 255
        return status, str(res.stdout or ""), str(res.stderr or "")

    async def check_version(self) -> str:
        status, out, err = await self.run("--version", timeout=60)
        if status == 127 or (status and "not found" in err):
            raise self.fail(f"{self.machine.command!r} is not there ({err.strip()[-200:]}); install "
                            f"netvirt {__version__} or set machines.{self.name}.command")
        words = out.split()
        if status != 0 or len(words) < 2 or words[0] != "netvirt":
            raise self.fail(f"'{self.machine.command} --version' gave exit {status}: "
                            f"{(err or out).strip()[-200:]}")
        if words[1] != __version__:
            raise self.fail(f"runs netvirt {words[1]}, this driver {__version__}: install the same "
                            "version on every machine")
        return words[1]

    async def start_agent(self, loop: str = "asyncio") -> None:
        cmd = f"{self.machine.command} --loop {shlex.quote(loop)} agent"
        try:
            self._proc = await self._conn.create_process(cmd, encoding=None)
        except Exception as exc:
            raise self.fail(f"cannot start {cmd!r}: {_why(exc)}") from None
        self._reader = asyncio.ensure_future(self._read())
        self._stderr_task = asyncio.ensure_future(self._read_stderr())

    async def _read(self) -> None:
        why = "the agent's channel ended"
        try:
            while True:
                line = await self._proc.stdout.readline()
                if not line:
                    break
                try:
                    msg = wire.loads(line)
                except ValueError:
                    self._stderr.append(line.decode(errors="replace").rstrip())
                    continue
                fut = self._pending.pop(msg.get("id") or 0, None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
        except Exception as exc:  # the connection broke
            why = f"the SSH connection was lost ({_why(exc)})"
        if not self.closing:
            why = "the SSH connection was lost or the agent died" + self._log_tail()
        if not self.lost.done():
            self.lost.set_result(why)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(self.fail(why))
        self._pending.clear()

    async def _read_stderr(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                line = await self._proc.stderr.readline()
                if not line:
                    return
                self._stderr.append(line.decode(errors="replace").rstrip())
                del self._stderr[:-50]

    def _log_tail(self) -> str:
        tail = [x for x in self._stderr if x.strip()][-3:]
        return (": " + " | ".join(tail)) if tail else ""

    @property
    def running(self) -> bool:
        """The agent runs and its channel is open."""
        return self._proc is not None and not self.lost.done()

    # -- requests --------------------------------------------------------------------
    async def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send one request to the agent; its answer, or the agent's error raised as MachineError."""
        if self._proc is None or self.lost.done():
            raise self.fail(self.lost.result() if self.lost.done() else "no agent is running there")
        ident = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        try:
            self._proc.stdin.write(wire.dumps({"id": ident, "op": op, **fields}))
        except Exception as exc:  # the channel closed under us (agent gone, connection lost)
            self._pending.pop(ident, None)
            raise self.fail(f"the SSH connection was lost or the agent died ({_why(exc)})") from None
        reply = await fut
        if not reply.get("ok"):
            raise self.fail(str(reply.get("error")), int(reply.get("exit") or 1))
        return reply

    # -- closing ----------------------------------------------------------------------
    async def close(self) -> None:
        """End the agent's channel and the connection (the agent tears down on EOF). Safe twice."""
        self.closing = True
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.stdin.write_eof()
            with contextlib.suppress(Exception, asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait_closed(), 30)
        for task in (self._reader, self._stderr_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()
            with contextlib.suppress(Exception):
                await conn.wait_closed()
        if not self.lost.done():
            self.lost.set_result("closed")

    def abort(self) -> None:
        """Drop the connection at once (tests: a lost connection)."""
        if self._conn is not None:
            self._conn.abort()


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "timed out"
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, NetvirtError):
        return text
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else text


__all__ = ["MachineError", "Remote", "parse_ssh"]
