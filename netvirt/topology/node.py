"""A live node: one network namespace plus what runs and lives in it."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netvirt.devices import Device
from netvirt.netns import Namespace
from netvirt.procs.launch import Journal, Process
from netvirt.procs.spec import Ready
from netvirt.procs.view import NodeView

if TYPE_CHECKING:
    from netvirt.procs.lab import LabProcesses


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def exec_argv(netns: str | None, argv: list[str], *, lab: str | None = None,
               node: str | None = None) -> list[str]:
    """The command line that runs ``argv`` inside a lab's node as its processes run
    (the ``exec`` verb; see ``netvirt.procs.verb``), or inside ``netns``."""
    if lab is None or node is None:
        return list(argv) if netns is None else ["ip", "netns", "exec", netns, *argv]
    from netvirt.procs.verb import exec_verb_argv
    from netvirt.topology.journal import lab_dir

    return exec_verb_argv(lab, node, netns, argv, lab_dir(lab))


class Node:
    """One node of a live topology (see ``Topology.node``)."""

    def __init__(self, name: str, ns: Namespace, *, view: NodeView | None = None,
                 journal: Journal | None = None, procs: LabProcesses | None = None) -> None:
        self.name = name
        self.ns = ns
        self.devices: dict[str, Device] = {}
        self.view = view or NodeView(ns.name)  # how processes and exec enter the node
        self.jobs: list[Process] = []  # what exec'd commands left running, stopped by teardown
        self._journal = journal
        self._procs = procs

    @property
    def processes(self) -> dict[str, Process]:
        """This node's processes by name (the scenario's and those of :meth:`start`)."""
        if self._procs is None:
            return {}
        return {name: p for (node, name), p in self._procs.procs.items() if node == self.name}

    async def start(self, cmd: str | list[str], *, name: str | None = None,
                    ready: Ready | Mapping[str, Any] | None = None, env: Mapping[str, Any] | None = None,
                    cwd: str | None = None, stop: Mapping[str, Any] | None = None) -> Process:
        """Start a process in this node as the scenario's ``processes:`` do, and wait until
        ``ready`` holds (e.g. ``{"tcp": 8080}``); ProcessError with its last log lines if not.
        Teardown stops it; ``await proc.stop()`` stops it sooner."""
        from netvirt.procs.spec import ProcessSpec, parse_ready, parse_stop

        if self._procs is None:
            raise RuntimeError(f"node {self.name} belongs to no topology: use netvirt.procs.Process")
        name = name or f"p{len(self.processes) + 1}"
        spec = ProcessSpec(name, cmd if isinstance(cmd, str) else tuple(cmd),
                           {k: str(v) for k, v in (env or {}).items()}, cwd,
                           ready if isinstance(ready, Ready) or ready is None else parse_ready(ready),
                           parse_stop(stop))
        return await self._procs.start(self.name, spec)

    def __repr__(self) -> str:
        return f"<Node {self.name} netns={self.ns.label}>"

    @property
    def netns(self) -> str | None:
        """The namespace name (None for a node in the host namespace)."""
        return self.ns.name

    def device(self, ifname: str) -> Device:
        return self.devices[ifname]

    async def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                     proto: int = 0) -> socket.socket:
        """A non-blocking socket inside this node's namespace."""
        return await self.ns.socket(family, type, proto)

    async def exec(self, cmd: str | list[str], *, timeout: float | None = 60.0,
                   input: bytes | None = None, env: dict[str, Any] | None = None) -> ExecResult:
        """Run a command in this node (a string goes through ``sh -c``), as the ``exec`` verb does.

        On timeout or cancellation it is killed with all it forked; jobs it leaves
        in the background run until teardown (``self.jobs``).
        """
        from netvirt.procs import run_command

        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        res = await run_command(self.view, argv, timeout=timeout, input=input,
                                env={k: str(v) for k, v in (env or {}).items()},
                                journal=self._journal, jobs=self.jobs, name=f"{self.name}.exec")
        return ExecResult(res.returncode, res.stdout, res.stderr)

    async def stop_jobs(self) -> None:
        """Stop what exec'd commands left running in the background."""
        from netvirt.procs import stop_jobs

        await stop_jobs(self.jobs)
        await self.view.close()

    async def sysctl(self, key: str, value: str | int | None = None) -> str:
        return await self.ns.sysctl(key, value)
