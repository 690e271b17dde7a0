"""A lab's processes: node views, start in order with ready checks, watch, stop in reverse.

The topology builder owns one :class:`LabProcesses`. Layout in the lab's state
directory (``/run/netvirt/<lab>/``)::

    nodes/<node>/          the node's view (see view.py)
    logs/<node>.<name>.log stdout and stderr of each process
    processes.json         what ``status`` shows (rewritten on every change)

A process that exits while the lab runs (or of which nothing runs any more,
for a daemon whose first process exited 0) is a *failure*: the watcher
records it with its last log lines, ``failures()`` lists them, and ``run``
fails with them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netvirt._aio import complete
from netvirt.procs.launch import Journal, Process, ProcessError
from netvirt.procs.ready import exit_reason, failure, wait_ready
from netvirt.procs.spec import ProcessSpec
from netvirt.procs.view import NodeView


@dataclass
class Failure:
    node: str
    name: str
    message: str  # one line: what happened
    tail: list[str]  # its last log lines

    def __str__(self) -> str:
        shown = "".join(f"\n    {line}" for line in self.tail)
        head = f"process {self.node}.{self.name} {self.message}"
        return head + (f"; last log lines:{shown}" if shown else "")


class LabProcesses:
    """Every process of one lab (see the module docstring)."""

    def __init__(self, state_dir: Path, *, journal: Journal | None = None,
                 cgroup_parent: Path | None = None,
                 on_failure: Callable[[Failure], None] | None = None) -> None:
        self.dir = state_dir
        self._journal = journal
        self._cgroup = cgroup_parent
        self.views: dict[str, NodeView] = {}
        self.procs: dict[tuple[str, str], Process] = {}
        self.specs: dict[tuple[str, str], ProcessSpec] = {}
        self._failures: list[Failure] = []
        self._on_failure = on_failure
        self._watcher: asyncio.Task[None] | None = None
        self._stopping = False

    # -- views -----------------------------------------------------------
    def view(self, node: str, netns: str | None, *, files: Mapping[str, bytes] | None = None,
             private: Sequence[str] = (), links: Mapping[str, Path] | None = None,
             eager: bool = True) -> NodeView:
        """The node's view; its directory (files, private dirs) is made now, or with
        ``eager`` False on first use (a node nothing runs in costs no file work at build:
        on this machine's disk each directory costs ~1 ms)."""
        view = NodeView(netns, self.dir / "nodes" / node, private=tuple(private),
                        cgroup_parent=self._cgroup, label=node)
        if eager:
            view.prepare(files or {}, links)
        else:
            view.pending = (dict(files or {}), dict(links or {}))
        self.views[node] = view
        return view

    def shared_file(self, name: str, content: bytes) -> Path:
        """A file written once for the lab that nodes' views hard-link (e.g. /etc/hosts)."""
        path = self.dir / f"{name}.shared"
        if not path.exists():
            path.write_bytes(content)
            os.chmod(path, 0o644)
        return path

    def log_path(self, node: str, name: str) -> Path:
        return self.dir / "logs" / f"{node}.{name}.log"

    # -- starting --------------------------------------------------------
    async def start(self, node: str, spec: ProcessSpec) -> Process:
        """Start one process in ``node`` and wait until it is ready; ProcessError (with its
        last log lines) if it cannot start, exits first, or is not ready in time."""
        view = self.views[node]
        log = self.log_path(node, spec.name)
        log.parent.mkdir(mode=0o755, exist_ok=True)
        proc = await Process.start(view, spec.argv, name=f"{node}.{spec.name}", log=log,
                                   env={**os.environ, **spec.env}, cwd=spec.cwd, journal=self._journal)
        self.procs[(node, spec.name)] = proc
        self.specs[(node, spec.name)] = spec
        self.publish()
        try:
            await wait_ready(proc, spec.ready)
            if spec.ready is None:  # no check: at least it must not fail at once
                await asyncio.sleep(0.05)
                if not proc.alive or (proc.returncode not in (None, 0)):
                    raise failure(proc, f"{exit_reason(proc)} right after it started")
        except BaseException:
            self.publish()
            raise
        self.publish()
        self._ensure_watcher()
        return proc

    async def start_all(self, entries: Sequence[tuple[str, ProcessSpec]]) -> None:
        """Start processes in order (each ready before the next starts)."""
        for node, spec in entries:
            await self.start(node, spec)

    # -- watching --------------------------------------------------------
    def _ensure_watcher(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        reported: set[tuple[str, str]] = set()
        while not self._stopping:
            for key, proc in list(self.procs.items()):
                if key in reported or proc.stopped:
                    continue
                if proc.alive and proc.returncode in (None, 0):
                    continue
                reported.add(key)
                self._fail(Failure(key[0], key[1], exit_reason(proc) if not proc.alive else
                                   f"{exit_reason(proc)} (what it forked still runs)", proc.tail()))
            await asyncio.sleep(0.2)

    def _fail(self, f: Failure) -> None:
        self._failures.append(f)
        self.publish()
        if self._on_failure is not None:
            self._on_failure(f)

    def failures(self) -> list[Failure]:
        """Processes that stopped on their own while the lab ran (checked now, too)."""
        for (node, name), proc in self.procs.items():
            if proc.stopped or any(f.node == node and f.name == name for f in self._failures):
                continue
            if not proc.alive or proc.returncode not in (None, 0):
                self._fail(Failure(node, name, exit_reason(proc), proc.tail()))
        return list(self._failures)

    # -- stopping --------------------------------------------------------
    async def stop(self, node: str, name: str) -> int | None:
        proc = self.procs[(node, name)]
        spec = self.specs[(node, name)]
        code = await proc.stop(spec.stop.signal, spec.stop.timeout)
        self.publish()
        return code

    async def close(self) -> None:
        """Stop every process (in reverse order of start), then the nodes' mount anchors."""
        self._stopping = True
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(BaseException):
                await self._watcher
        errors: list[BaseException] = []
        for node, name in reversed(list(self.procs)):
            try:
                await complete(self.stop(node, name))
            except Exception as exc:
                errors.append(exc)
        for view in self.views.values():
            try:
                await complete(view.close())
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- status ----------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        out = []
        for (node, name), proc in self.procs.items():
            rec = proc.record()
            rec.update(node=node, name=name, cmd=self.specs[(node, name)].title,
                       started=proc.started_at, members=len(proc.members()) if proc.alive else 0)
            out.append(rec)
        return out

    def publish(self) -> None:
        """Write ``processes.json`` for ``netvirt status`` (atomically)."""
        with contextlib.suppress(OSError):
            tmp = self.dir / "processes.json.tmp"
            tmp.write_text(json.dumps({"updated": time.time(), "processes": self.status(),
                                       "failures": [str(f) for f in self._failures]}))
            tmp.replace(self.dir / "processes.json")


def read_status(state_dir: Path) -> dict[str, Any]:
    """``processes.json`` as ``status`` shows it, states rechecked now (the owner may be dead)."""
    try:
        data: dict[str, Any] = json.loads((state_dir / "processes.json").read_text())
    except (OSError, ValueError):
        return {"processes": [], "failures": []}
    from netvirt.procs import cgroup, pids

    for rec in data.get("processes", []):
        if rec.get("state") != "running":
            continue
        group = rec.get("cgroup")
        alive = cgroup.populated(Path(group)) if group else pids.is_same(rec.get("pid", 0), rec.get("start"))
        if not alive:
            rec["state"] = "gone"
    return data


__all__ = ["Failure", "LabProcesses", "ProcessError", "ProcessSpec", "read_status"]
