"""Start a command inside a node, watch it, stop it and everything it forked.

Theory of operation
-------------------
A launch is ``subprocess.Popen`` with ``close_fds=True`` and
``start_new_session=True``: the child gets exactly stdin, stdout and stderr,
whatever the event loop keeps open (uvloop's own ``subprocess_exec`` leaked
the loop's sockets into children), and runs in a session and process group of
its own. The child is ``sh -c GATE`` (``gate.py``): it waits on its stdin (a
pipe) until the parent has written its pid into its cgroup, then execs
``nsenter`` into the node's network namespace and the mount namespace the
node's *anchor* holds (``_enter.py``, started once per node), or ``ip netns
exec`` for a node without a directory, and so becomes the command: same pid,
same start time as journaled. The loop never waits on a child in a thread: a
pidfd (readable: the process exited) is watched with ``add_reader``, which
works the same on asyncio and uvloop.

Each launch gets a cgroup of its own (``cgroup.py``), journaled before it is
made: the process is in it before it can fork, so daemons that double-fork and
``setsid`` (FRR, dnsmasq) stay findable; ``stop`` signals every member through
a pidfd (never a reused pid), waits, then ``cgroup.kill``. Without cgroup v2
the process group stands in (members that left it are not found then).

The *process* is alive while anything of it runs: a daemon whose first
process exits 0 after forking is running, not finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from netvirt._aio import complete
from netvirt.errors import NetvirtError
from netvirt.procs import cgroup, pids
from netvirt.procs.gate import GATE, check_command, read_to_eof
from netvirt.procs.view import NodeView, helper_argv

Journal = Callable[..., None]
_seq = itertools.count(1)


class ProcessError(NetvirtError):
    """A process could not start, exited early, or never became ready."""

    exit_code = 1


def _leaf_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] + f"-{next(_seq)}"


async def _anchor(view: NodeView, journal: Journal | None) -> tuple[int, int] | None:
    """The (pid, start) of the node's mount anchor, started on first use (views with a dir)."""
    if view.dir is None:
        return None
    view.ensure()
    if view.lock is None:
        view.lock = asyncio.Lock()
    async with view.lock:
        if view.anchor_id is None:
            if view.anchor is not None:
                await view.anchor.kill()  # it died: a new one (the node's /etc writes are lost)
            view.anchor = await Process.start(view, ["netvirt-mounts"], name=f"{view.label}.mounts",
                                              journal=journal, hold=True)
            import json

            assert view.dir is not None
            (view.dir / "anchor.json").write_text(json.dumps(
                {"pid": view.anchor.pid, "start": view.anchor.start_time}))
        return view.anchor_id


class Process:
    """One command started in a node (see :meth:`start`). Stop it with :meth:`stop`."""

    def __init__(self, name: str, argv: Sequence[str], view: NodeView, *, log: Path | None = None,
                 journal: Journal | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.view = view
        self.log = log
        self.pid = 0
        self.start_time: int | None = None
        self.pgid: int | None = None
        self.cgroup: Path | None = None
        self.returncode: int | None = None
        self.stopped = False
        self.started_at = 0.0
        self._journal = journal
        self._popen: subprocess.Popen[bytes] | None = None
        self._exited: asyncio.Future[int] | None = None
        self._pidfd = -1
        self._adhoc = False  # its cgroup's parent is this netvirt process's own, not a lab's

    def __repr__(self) -> str:
        return f"<Process {self.name} pid={self.pid} {self.state}>"

    # -- starting ----------------------------------------------------------
    @classmethod
    async def start(cls, view: NodeView, argv: Sequence[str], *, name: str, log: Path | None = None,
                    stdin: IO[Any] | None = None, stdout: int | IO[Any] | None = None,
                    stderr: int | IO[Any] | None = None, env: Mapping[str, str] | None = None,
                    cwd: str | None = None, journal: Journal | None = None,
                    session: bool = True, hold: bool = False) -> Process:
        """Start ``argv`` in the node ``view`` describes.

        Output goes to ``log`` (appended; stdout and stderr) unless ``stdout``/``stderr``
        are given; ``stdin`` is a file with a name (default /dev/null). Raises
        ProcessError if the command cannot be started (not found, no such cwd).
        """
        if not hold:
            check_command(name, view, argv, env, cwd)
        anchor = None if hold else await _anchor(view, journal)
        proc = cls(name, argv, view, log=log, journal=journal)
        await proc._spawn(stdin=stdin, stdout=stdout, stderr=stderr, env=env, cwd=cwd, session=session,
                          hold=hold, anchor=anchor)
        return proc

    def _record(self, **entry: Any) -> None:
        if self._journal is not None:
            self._journal(**entry)

    def _argv(self, hold: bool, anchor: tuple[int, int] | None, cwd: str | None,
              status_fd: int) -> list[str]:
        if hold:  # the node's mount anchor: _enter.py makes the mounts, then holds them
            return helper_argv(self.view.spec(cgroup=self.cgroup, status_fd=status_fd, hold=True),
                               ["netvirt-mounts"])
        return ["sh", "-c", GATE, "netvirt", *self.view.enter_argv(self.argv, anchor=anchor, cwd=cwd)]

    async def _spawn(self, *, stdin: IO[Any] | None, stdout: Any, stderr: Any,
                     env: Mapping[str, str] | None, cwd: str | None, session: bool, hold: bool,
                     anchor: tuple[int, int] | None) -> None:
        parent = self.view.cgroup_parent
        root = cgroup.root()
        if parent is None and root is not None:
            parent, self._adhoc = root / f"p{os.getpid()}", True
        if parent is not None:
            self.cgroup = parent / _leaf_name(self.name)
        self._record(op="proc", name=self.name, argv=self.argv,
                     cgroup=str(self.cgroup) if self.cgroup else None,
                     log=str(self.log) if self.log else None, netns=self.view.netns)
        if self.cgroup is not None:
            cgroup.make(self.cgroup)
        logf = None
        if self.log is not None and (stdout is None or stderr is None):
            logf = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o640)
        out = stdout if stdout is not None else (logf if logf is not None else subprocess.DEVNULL)
        err = stderr if stderr is not None else (logf if logf is not None else subprocess.DEVNULL)
        child_env = dict(os.environ if env is None else env)
        if not hold:  # what the gate needs: where the command's stdin comes from, and its cwd
            child_env["NETVIRT_IN"] = stdin.name if stdin is not None else "/dev/null"
            child_env["NETVIRT_CWD"] = (cwd or "") if anchor is None else ""  # else nsenter --wd
        r, w = os.pipe()  # hold: the anchor's status (EOF: mounted); else the gate (a line: go)
        try:
            self._popen = subprocess.Popen(
                self._argv(hold, anchor, cwd, w), stdin=subprocess.DEVNULL if hold else r,
                stdout=out, stderr=err, env=child_env, close_fds=True,
                pass_fds=(w,) if hold else (), start_new_session=session)
        except BaseException:
            os.close(r)
            os.close(w)
            if self.cgroup is not None:
                cgroup.remove(self.cgroup)
            raise
        finally:
            if logf is not None:
                os.close(logf)
        self.pid = self._popen.pid
        self.start_time = pids.start_time(self.pid)  # a zombie keeps it until we reap: exact
        self.pgid = self.pid if session else None
        self.started_at = time.time()
        loop = asyncio.get_running_loop()
        self._exited = loop.create_future()
        self._pidfd = os.pidfd_open(self.pid)
        loop.add_reader(self._pidfd, self._on_exit)
        if hold:
            os.close(w)
            self._record(op="proc-pid", name=self.name, pid=self.pid, start=self.start_time, pgid=self.pgid)
            try:
                failure = await read_to_eof(r)
            except BaseException as exc:
                await complete(self.kill())
                raise exc
            finally:
                os.close(r)
            if failure:
                await complete(self.kill())
                why = failure.decode(errors="replace")
                raise ProcessError(f"{self.name}: cannot prepare the node's mounts: {why}")
            return
        # the gate: the child waits on its stdin until it is in its cgroup, so nothing it
        # forks can be outside; if we die first, it reads EOF and exits
        os.close(r)
        try:
            self._record(op="proc-pid", name=self.name, pid=self.pid, start=self.start_time, pgid=self.pgid)
            if self.cgroup is not None:
                (self.cgroup / "cgroup.procs").write_text(str(self.pid))
            with contextlib.suppress(BrokenPipeError):
                os.write(w, b"go\n")
        except BaseException as exc:
            await complete(self.kill())
            raise exc
        finally:
            os.close(w)

    def _on_exit(self) -> None:
        assert self._popen is not None and self._exited is not None
        code = self._popen.poll()
        if code is None:
            return
        asyncio.get_running_loop().remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._pidfd = -1
        self.returncode = code
        self._record(op="proc-exit", name=self.name, code=code)
        if not self._exited.done():
            self._exited.set_result(code)

    # -- watching ----------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the first process (the one started) still runs."""
        return self.returncode is None and self.pid != 0

    @property
    def alive(self) -> bool:
        """Whether anything of this process runs: it or a process it forked (daemons)."""
        if self.running:
            return True
        if self.cgroup is not None:
            return cgroup.populated(self.cgroup)
        return self.pgid is not None and bool(pids.in_group(self.pgid))

    @property
    def state(self) -> str:
        if self.pid == 0:
            return "new"
        if self.stopped:
            return "stopped"
        if self.running:
            return "running"
        if self.alive:
            return "running" if self.returncode == 0 else "failed"  # daemonized (or not)
        return "exited" if self.returncode == 0 else "failed"

    def members(self) -> list[int]:
        """The pids that are part of this process now."""
        if self.cgroup is not None:
            return cgroup.procs(self.cgroup)
        out = pids.in_group(self.pgid) if self.pgid is not None else []
        if self.running and self.pid not in out:
            out.append(self.pid)
        return out

    async def wait(self) -> int:
        """Wait until the first process exits; its exit code (negative: killed by that signal)."""
        assert self._exited is not None, "not started"
        return await asyncio.shield(self._exited)

    async def wait_gone(self, timeout: float | None = None) -> bool:
        """Wait until nothing of this process runs. False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.002
        while self.alive:
            if deadline is not None and time.monotonic() > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
        return True

    def tail(self, lines: int = 10) -> list[str]:
        """The last lines of its log (empty without a log)."""
        if self.log is None:
            return []
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                data = f.read()
        except OSError:
            return []
        return data.decode(errors="replace").splitlines()[-lines:]

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "start": self.start_time, "pgid": self.pgid,
                "cgroup": str(self.cgroup) if self.cgroup else None, "state": self.state,
                "returncode": self.returncode, "log": str(self.log) if self.log else None}

    # -- stopping ----------------------------------------------------------
    def _signal_all(self, sig: int) -> int:
        sent = 0
        if self._pidfd >= 0:  # the first process, pinned since its start (maybe not in its cgroup yet)
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._pidfd, sig)
                sent += 1
        for pid in self.members():
            if pid == self.pid and self._pidfd >= 0:
                continue
            if self.cgroup is not None:
                leaf = self.cgroup
                sent += pids.signal_if(pid, sig, functools.partial(cgroup.contains, leaf))
            elif pid == self.pid:
                sent += pids.signal_process(pid, self.start_time, sig)
            else:
                sent += pids.signal_if(pid, sig, self._in_group)
        return sent

    def _in_group(self, pid: int) -> bool:
        st = pids.stat(pid)
        return st is not None and st.pgid == self.pgid

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        """Stop it and everything it forked: ``sig`` to all, wait up to ``timeout``, then SIGKILL.

        Safe to call twice and after it exited. Returns the first process's exit code.
        """
        if self.pid == 0:
            return None
        if self.alive:
            self.stopped = True
            self._signal_all(sig)
            if not await self.wait_gone(timeout):
                await self.kill()
        await self._finish()
        return self.returncode

    async def kill(self) -> None:
        """SIGKILL it and everything it forked, at once; wait until all are gone."""
        if self.pid == 0:
            return
        if self.alive:
            self.stopped = True
        if self.cgroup is None or not cgroup.kill(self.cgroup):
            self._signal_all(signal.SIGKILL)
        if not await self.wait_gone(10.0):  # D state (a hung NFS mount): say so, leave the record
            raise ProcessError(f"{self.name}: processes {self.members()} did not die after SIGKILL")
        await self._finish()

    async def _finish(self) -> None:
        if self._exited is not None and not self._exited.done():
            await self.wait()  # the pidfd reader reaps it
        if self.cgroup is not None and self.cgroup.is_dir():
            root = cgroup.root()
            cgroup.remove(self.cgroup, up_to=root.parent if self._adhoc and root else None)


__all__ = ["Journal", "Process", "ProcessError"]
