"""The live side of SPEC.md section 9 for a Topology: node views, loopback addresses, processes.

The builder calls these; the work itself is in ``netvirt.procs`` (launcher,
views, ready checks, stop). Order in a build: each node's view is prepared
with its namespace (files, /etc/hosts, private dirs: plain files under the
lab's state directory, nothing mounted); ``lo`` gets its addresses with the
node's local devices; processes start after the programs, in file order,
each ready before the next; teardown stops them first, in reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netvirt.errors import EnvironmentProblem
from netvirt.procs.view import hosts_file
from netvirt.scenario.model import NodeSpec, Scenario

if TYPE_CHECKING:
    from netvirt.netns import Namespace
    from netvirt.procs.lab import LabProcesses


def lab_hosts(scenario: Scenario) -> bytes:
    """The /etc/hosts of the lab's nodes: every node by its first address."""
    entries = [(n, str(a) if (a := s.first_address()) is not None else None)
               for n, s in scenario.nodes.items()]
    return hosts_file(entries)


def node_files(scenario: Scenario, spec: NodeSpec) -> dict[str, bytes]:
    """The files the node sees under /etc from its ``files:`` (the lab's /etc/hosts comes
    as one shared file, see ``lab_hosts``)."""
    out = {}
    for rel, f in spec.files.items():
        try:
            out[rel] = f.read()
        except OSError as exc:
            raise EnvironmentProblem(f"{scenario.source or '<scenario>'}: {f.place}: cannot read "
                                     f"{f.source}: {exc.strerror}") from exc
    return out


async def add_loopback_addresses(ns: Namespace, spec: NodeSpec) -> None:
    lo = spec.interfaces.get("lo")
    if lo is None or not lo.addresses:
        return

    def add(nl: object) -> None:
        index = nl.ifindex("lo")  # type: ignore[attr-defined]
        for a in lo.addresses:
            nl.addr_add(index, a)  # type: ignore[attr-defined]

    await ns.nl(add)


async def start_processes(procs: LabProcesses, scenario: Scenario, step: object = None) -> None:
    """Start the processes: each node's in file order (each ready before the next), the nodes
    at the same time, as the routers of a real lab boot together. ProcessError (with its last
    log lines) on the first failure; the others are then cancelled (and stopped by teardown)."""
    import asyncio

    async def node_processes(node: str, spec: NodeSpec) -> None:
        for p in spec.processes:
            if callable(step):
                step(f"process {node}.{p.name}")
            await procs.start(node, p)

    try:
        async with asyncio.TaskGroup() as tg:
            for node, spec in scenario.nodes.items():
                if spec.processes:
                    tg.create_task(node_processes(node, spec))
    except BaseExceptionGroup as group:
        first: BaseException = group
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


__all__ = ["add_loopback_addresses", "lab_hosts", "node_files", "start_processes"]
