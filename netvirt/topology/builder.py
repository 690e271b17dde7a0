"""The live topology: builds a Scenario into namespaces and devices, then tears it down.

Build order (each phase runs its items concurrently, each namespace's work on
its own strand, see ``netvirt.netns``): namespaces -> sysctls and the kinds of phase
"local" (masters first) -> veth links -> kinds of phase "child" -> routes -> programs.
The lab's own namespaces and its plain veth links take the bulk path instead of the
strands (``bulk.py``): the namespaces with local work first, then the others while
their links are made.
Which phase and which driver class build a kind comes from ``netvirt.kinds``. Every
object is journalled before it is created (``journal.py``) and registered for cleanup
the moment it exists.
On any failure, Ctrl-C, SIGTERM or cancellation the build unwinds: programs
stop, fds close, namespaces are removed (which removes every device inside),
links in the host namespace are deleted by their lab tag, and the first
error is re-raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netvirt._aio import complete, unwind
from netvirt.devices import Device, Macvtap, Veth
from netvirt.devices.base import fresh_ifindex
from netvirt.errors import EnvironmentProblem
from netvirt.kinds import KINDS
from netvirt.netns import Namespace, netns_path, remove_many, require_root
from netvirt.procs.lab import LabProcesses
from netvirt.procs.launch import ProcessError
from netvirt.procs.stop import close_lab_cgroup, open_lab_cgroup
from netvirt.scenario.model import InterfaceSpec, LinkSpec, NodeSpec, Scenario, lab_alias, netns_name
from netvirt.topology.bulk import Crew
from netvirt.topology.journal import (
    STATE_ROOT,
    DownReport,
    LabState,
    find_holders,
    remove_journalled_netns,
    sweep_host_links,
)
from netvirt.topology.node import Node
from netvirt.topology.processes import add_loopback_addresses, lab_hosts, node_files, start_processes

if TYPE_CHECKING:  # programs and the datapath are imported by the labs that use them
    from netvirt.impair import ImpairedLink, LinkEnd
    from netvirt.impair.control import ControlServer
    from netvirt.programs import Program

#: kinds built in a node's local phase, masters (bridges) first: others may name them
_LOCAL = sorted((k for k in KINDS.values() if k.phase == "local"), key=lambda k: not k.master)
_CHILD = [k for k in KINDS.values() if k.phase == "child"]
_LOCAL_KINDS = frozenset(k.name for k in _LOCAL)

ProgressFn = Callable[[int, int, str], None]
#: test hook: called before each build step with (step number, description)
StepHook = Callable[[int, str], None]


def stable_mac(*parts: str) -> str:
    """A locally administered unicast MAC derived from ``parts`` (same lab, same MAC).

    Bridges get one: a bridge whose MAC was set keeps it as ports come and go,
    and the kernel then skips rescanning every port for the lowest MAC at each
    new port (``br_stp_recalculate_bridge_id``), which made a 1000-port build
    quadratic.
    """
    import hashlib

    digest = bytearray(hashlib.sha256("/".join(parts).encode()).digest()[:6])
    digest[0] = (digest[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def _raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _local_work(spec: NodeSpec) -> bool:
    """Whether a node has work of the local phase: a local kind (bridge, tun, tap),
    sysctls or loopback addresses (see ``Topology._make_local``)."""
    lo = spec.interfaces.get("lo")
    return bool(spec.sysctls or (lo is not None and lo.addresses)
                or any(i.kind in _LOCAL_KINDS for i in spec.interfaces.values()))


def _ipv6(iface: InterfaceSpec) -> bool:
    """Whether a veth end of a lab gets an IPv6 link-local address: if it says so
    (``ipv6_linklocal``), else only if it has an IPv6 address.

    An IPv4-only end with one sends DAD, MLD and router solicitations at link-up, which
    a bridge floods to every port: a 1000-host star made a million frames while it was
    built (and took 5 s instead of 2), and every capture starts with that noise.
    """
    if iface.ipv6_linklocal is not None:
        return iface.ipv6_linklocal
    return any(a.version == 6 for a in iface.addresses)


async def _together(work: list[Coroutine[Any, Any, Any]]) -> None:
    """Run ``work`` concurrently; on failure cancel the rest, raise the first error."""
    try:
        async with asyncio.TaskGroup() as tg:
            for coro in work:
                tg.create_task(coro)
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None


def _first_leaf(group: BaseExceptionGroup[Any]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


class Topology:
    """A scenario made real. ``async with Topology(scenario) as topo: ...``"""

    def __init__(self, scenario: Scenario, *, progress: ProgressFn | None = None,
                 state_root: Any = None, step_hook: StepHook | None = None) -> None:
        self.scenario = scenario
        self.lab = scenario.name
        self.nodes: dict[str, Node] = {}
        self.programs: dict[tuple[str, str], Program] = {}
        #: "node:ifname" -> what killed the program on that device (see _program_failed)
        self.program_errors: dict[str, BaseException] = {}
        self._tasks: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._devices: list[Device] = []
        #: links served by the datapath, by each of their two endpoints ("a:eth0")
        self.impaired: dict[str, ImpairedLink] = {}
        self._control: ControlServer | None = None
        self._state = LabState(self.lab, root=state_root or STATE_ROOT)
        self._progress = progress
        self._hook = step_hook
        self._steps = 0
        self._total = 0
        self._built = False
        self._torn_down = False
        self._cgroup: Any = None
        self.processes: LabProcesses | None = None  # the lab's processes (SPEC.md section 9)
        self._hosts: Any = None  # the lab's /etc/hosts, hard-linked into every node's view
        self._crew: Crew | None = None  # the bulk path's workers, during the build (bulk.py)

    def __repr__(self) -> str:
        return f"<Topology {self.lab} nodes={len(self.nodes)}>"

    # -- access ----------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """The lab's state record, ``/run/netvirt/<lab>/`` (its journal, counters, logs)."""
        return self._state.dir

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def device(self, node: str, ifname: str) -> Device:
        """The live device ``ifname`` of ``node`` (narrow with ``isinstance`` for kind methods)."""
        return self.nodes[node].devices[ifname]

    def link(self, endpoint: str) -> LinkEnd:
        """The link of ``endpoint`` (``"a:eth0"``), seen from that end (SPEC.md section 7):
        ``impair()``, ``reset()``, ``down()``, ``up()``, ``stats()``."""
        from netvirt.topology.links import find_link

        return find_link(self.impaired, [spec for spec in self.scenario.links if not spec.served],
                         endpoint)

    def program(self, node: str, ifname: str) -> Program:
        """The program running on ``node:ifname`` (its ``counters``, ``wait_ready()``...)."""
        return self.programs[(node, ifname)]

    # -- lifecycle -------------------------------------------------------
    async def __aenter__(self) -> Topology:
        await self.build()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.teardown()

    async def build(self) -> None:
        require_root("building a topology")
        _raise_fd_limit()
        s = self.scenario
        # one step per node, per interface (a link builds its two ends in one), per route
        self._total = (len(s.nodes) + sum(len(n.interfaces) for n in s.nodes.values())
                       - len(s.links) + sum(len(n.routes) for n in s.nodes.values()))
        self._state.claim(scenario=s.source, detail={
            "nodes": sorted(s.nodes), "host_nodes": sorted(n for n, spec in s.nodes.items() if spec.host)})
        # the build makes many small objects and no garbage cycles: a collection every 700
        # allocations walked them all again and again (3% of a 200-node build)
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            self._cgroup = open_lab_cgroup(self.lab, self._state.record)  # every process of the lab
            self.processes = LabProcesses(self._state.dir, journal=self._state.record,
                                          cgroup_parent=self._cgroup)
            await self._make_nodes_and_links()
            await self._phase(self._make_children, list(s.nodes.values()))
            await self._phase(self._make_routes, list(s.nodes.values()))
            await self._settle_all()
            self._close_crew()
            await self._start_programs()
            if self.processes is not None:
                await start_processes(self.processes, s, self._step)
            if self.impaired:  # 'netvirt link LAB ...' from any shell asks this process
                from netvirt.impair.control import CONTROL_NAME, ControlServer

                self._control = ControlServer(self._state.dir / CONTROL_NAME, self.link)
                await self._control.start()
        except BaseException as exc:
            await unwind(exc, self.teardown())
            raise
        finally:
            if gc_enabled:
                gc.enable()
        self._built = True

    async def _phase(self, fn: Callable[[Any], Coroutine[Any, Any, None]], items: list[Any]) -> None:
        """Run ``fn`` over ``items`` concurrently; on failure cancel the rest, raise the first error."""
        await _together([fn(item) for item in items])

    def _step(self, what: str) -> None:
        self._steps += 1
        if self._hook is not None:
            self._hook(self._steps, what)
        if self._progress is not None:
            self._progress(min(self._steps, self._total), self._total, what)

    # -- phases ----------------------------------------------------------
    async def _make_nodes_and_links(self) -> None:
        """Nodes, their local devices, and the links (see ``bulk.py``).

        The host's nodes one by one. The lab's namespaces, each journalled before it
        exists, in bulk: first those with local work (bridges and other local kinds,
        sysctls, loopback addresses), whose devices are then made; then the others,
        while the plain veth links are made as their namespaces appear. The links that
        need more (a datapath, a host end) come last, one by one.
        """
        specs = list(self.scenario.nodes.values())
        for spec in specs:
            if spec.host:
                self._step(f"node {spec.name}")
                self._add_node(spec, await Namespace.host())
        own = [spec for spec in specs if not spec.host]
        crew = self._crew = Crew()
        for spec in own:
            self._step(f"node {spec.name}")
            name = netns_name(self.lab, spec.name)
            self._state.record(op="netns", name=name)
            self._add_node(spec, Namespace(name, owned=True))
        crew.expect([self.nodes[spec.name].ns for spec in own])
        local = [spec for spec in specs if spec.host or _local_work(spec)]
        hubs = [self.nodes[spec.name].ns for spec in local if not spec.host]
        tag = lab_alias(self.lab)
        await crew.create(hubs, tag)
        await self._phase(self._make_local, local)
        bulk: list[LinkSpec] = []
        single: list[LinkSpec] = []
        for link in self.scenario.links:
            na, nb = self.nodes[link.a.node], self.nodes[link.b.node]
            plain = not link.served and crew.owns(na.ns) and crew.owns(nb.ns)
            (bulk if plain else single).append(link)
        in_hubs = set(hubs)
        leaves = [self.nodes[spec.name].ns for spec in own if self.nodes[spec.name].ns not in in_hubs]
        await _together([crew.create(leaves, tag), self._make_bulk_links(crew, bulk)])
        for spec in own:
            made = self.nodes[spec.name].ns.name
            assert made is not None
            self._state.record(op="netns-done", name=made, ino=os.stat(netns_path(made)).st_ino)
        await _together([self._make_link(link) for link in single])

    def _add_node(self, spec: NodeSpec, ns: Namespace) -> None:
        assert self.processes is not None
        links = {}
        if self.scenario.hosts and "hosts" not in spec.files:
            if self._hosts is None:
                self._hosts = self.processes.shared_file("hosts", lab_hosts(self.scenario))
            links["hosts"] = self._hosts
        view = self.processes.view(spec.name, ns.name, files=node_files(self.scenario, spec),
                                   private=spec.private, links=links,
                                   eager=bool(spec.files or spec.private or spec.processes))
        self.nodes[spec.name] = Node(spec.name, ns, view=view, journal=self._state.record,
                                     procs=self.processes)

    async def _make_local(self, spec: NodeSpec) -> None:
        node = self.nodes[spec.name]
        await add_loopback_addresses(node.ns, spec)
        for key, value in spec.sysctls.items():
            await node.sysctl(key, value)
        for kind in _LOCAL:
            for iface in spec.interfaces.values():
                if iface.kind == kind.name:
                    common = self._common(node, iface)
                    if kind.master and not common["mac"]:
                        common["mac"] = stable_mac(self.lab, node.name, iface.name)
                    await self._add(node, iface, kind.driver_class().from_spec(iface, **common))

    async def _make_bulk_links(self, crew: Crew, links: list[LinkSpec]) -> None:
        veths: list[Veth] = []
        for link in links:
            self._step(f"link {link.a} -- {link.b}")
            veth = self._veth(link)
            veth.bind_netns(self.nodes[link.a.node].ns)
            veth.peer.bind_netns(self.nodes[link.b.node].ns)
            veths.append(veth)
        try:
            await crew.make_veths(veths)
        finally:  # what exists is torn down with the lab (its namespaces)
            for link, veth in zip(links, veths, strict=True):
                if veth._created:
                    self._devices.append(veth)
                    self.nodes[link.a.node].devices[veth.name] = veth
                    self.nodes[link.b.node].devices[veth.peer.name] = veth.peer

    def _veth(self, link: LinkSpec) -> Veth:
        """The driver of a plain veth link, its ends known to the build as bridge ports."""
        sa, sb = self.scenario.interface(link.a), self.scenario.interface(link.b)
        na, nb = self.nodes[link.a.node], self.nodes[link.b.node]
        veth = Veth(
            sa.name, sb.name, netns=na.ns, peer_netns=nb.ns,
            addresses=sa.addresses, peer_addresses=sb.addresses,
            mtu=sa.mtu or link.mtu, mac=sa.mac, peer_mac=sb.mac,
            master=sa.master, peer_master=sb.master, up=sa.up, peer_up=sb.up,
            alias=lab_alias(self.lab), ipv6_linklocal=_ipv6(sa),
        )
        veth.peer.ipv6_linklocal = _ipv6(sb)
        if sb.mtu and sb.mtu != (sa.mtu or link.mtu):
            veth.peer.mtu = sb.mtu
        self._as_port(veth, na)
        self._as_port(veth.peer, nb)
        return veth

    async def _make_link(self, link: LinkSpec) -> None:
        sa, sb = self.scenario.interface(link.a), self.scenario.interface(link.b)
        na, nb = self.nodes[link.a.node], self.nodes[link.b.node]
        self._step(f"link {link.a} -- {link.b}")
        host_index = 0
        if na.ns.name is None or nb.ns.name is None:
            # journaled first: down knows this link by the index (see _add); the datapath's
            # taps go with their fds, so they are found by their tag alone
            host_index = 0 if link.served else fresh_ifindex()
            self._state.record(op="link", netns=None, ifname=sa.name if na.ns.name is None else sb.name,
                               alias=lab_alias(self.lab), **({"index": host_index} if host_index else {}))
        if link.served:
            from netvirt.topology.links import make_impaired

            served = make_impaired(link, sa, sb, na, nb, lab_alias(self.lab))
            await served.create()
            self.impaired[str(link.a)] = self.impaired[str(link.b)] = served
            na.devices[sa.name], nb.devices[sb.name] = served.taps
            return
        veth = self._veth(link)
        if host_index:
            (veth if na.ns.name is None else veth.peer).index_hint = host_index
        await veth.create()
        self._devices.append(veth)
        na.devices[sa.name] = veth
        nb.devices[sb.name] = veth.peer

    async def _make_children(self, spec: NodeSpec) -> None:
        node = self.nodes[spec.name]
        for kind in _CHILD:
            for iface in spec.interfaces.values():
                if iface.kind != kind.name:
                    continue
                assert iface.parent is not None
                parent_ns = self.nodes[iface.parent.node].ns
                dev = kind.driver_class().from_spec(iface, parent_netns=parent_ns, **self._common(node, iface))
                await self._add(node, iface, dev)

    async def _make_routes(self, spec: NodeSpec) -> None:
        node = self.nodes[spec.name]
        for route in spec.routes:
            self._step(f"route {spec.name} {route.to}")
            dst = str(route.to)  # 0.0.0.0/0 or ::/0 keeps its family
            via = str(route.via) if route.via else None
            dev = route.dev

            def add(nl: Any, dst: str = dst, via: str | None = via, dev: str | None = dev) -> None:
                nl.route_add(dst, via=via, oif=nl.ifindex(dev) if dev else None)

            await node.ns.nl(add)

    async def _settle_all(self) -> None:
        """Wait until every node is ready for traffic: every bridge port enabled, every
        link's queueing active (one dump per poll; see ``Netlink.wait_ports_enabled``)."""
        crew = self._crew
        assert crew is not None  # made with the nodes
        nss = [self.nodes[spec.name].ns for spec in self.scenario.nodes.values() if spec.interfaces]
        work: list[Coroutine[Any, Any, Any]] = [
            ns.nl(lambda nl: nl.wait_ports_enabled()) for ns in nss if not crew.owns(ns)]
        bulk = [ns for ns in nss if crew.owns(ns)]
        if bulk:
            work.append(crew.settle(bulk))
        await _together(work)

    def _close_crew(self) -> None:
        if self._crew is not None:
            self._crew.close()

    async def _start_programs(self) -> None:
        for spec in self.scenario.nodes.values():
            node = self.nodes[spec.name]
            for iface in spec.interfaces.values():
                if iface.program is None:
                    continue
                dev = node.devices[iface.name]
                prog, task = await _start_program(iface, dev, node, self.scenario.source)
                self.programs[(spec.name, iface.name)] = prog
                self._tasks[(spec.name, iface.name)] = task
                key = f"{spec.name}:{iface.name}"

                def failed(p: Program, exc: BaseException, key: str = key) -> None:
                    self._program_failed(key, exc)

                prog.on_error(failed)
        # steps may start right after the build: every program must handle traffic by then
        await asyncio.gather(*(p.wait_ready() for p in self.programs.values()))

    # -- helpers ---------------------------------------------------------
    def _common(self, node: Node, iface: InterfaceSpec) -> dict[str, Any]:
        return {"netns": node.ns, "addresses": iface.addresses, "mtu": iface.mtu, "mac": iface.mac,
                "up": iface.up, "master": iface.master, "alias": lab_alias(self.lab)}

    def _as_port(self, dev: Device, node: Node) -> None:
        """A bridge port made by the build: master's index known, enabled-wait done by _settle_all."""
        dev.wait_port = False
        if dev.master and dev.master in node.devices:
            dev.master_index = node.devices[dev.master].ifindex

    async def _add(self, node: Node, iface: InterfaceSpec, dev: Device) -> None:
        self._step(f"{iface.kind} {node.name}:{iface.name}")
        self._as_port(dev, node)
        if node.ns.name is None:
            # in the machine's own namespace the link is journaled with the ifindex it is
            # created with: a kill -9 between the create and the ifalias leaves a link that
            # down still knows as this lab's, and a link of that name made by anyone else
            # (another index) is never taken for it, even if it carries the lab's tag
            dev.index_hint = fresh_ifindex()
            self._state.record(op="link", netns=None, ifname=iface.name, alias=lab_alias(self.lab),
                               index=dev.index_hint)
        await dev.create()
        self._devices.append(dev)
        node.devices[iface.name] = dev

    def process_failures(self) -> list[str]:
        """Processes that stopped on their own while the lab ran, each with its last log lines."""
        return [str(f) for f in self.processes.failures()] if self.processes is not None else []

    def mark_ready(self) -> None:
        """Tell ``up --detach`` and ``status`` that the lab is built."""
        self._state.info["ready"] = True
        self._state.write_info()

    def _program_failed(self, key: str, exc: BaseException) -> None:
        """A program died: remember it (steps and ``run`` report it), log it, publish it."""
        import sys
        import traceback

        if key in self.program_errors or self._torn_down:
            return
        self.program_errors[key] = exc
        if not self._built:
            return  # the build fails with this error itself
        # stderr: the terminal of `run` and `up`, the lab's up.log for `up --detach`;
        # a traceback only for a program's own bug, not for a located scenario error
        from netvirt.errors import NetvirtError

        text = "" if isinstance(exc, NetvirtError) else "\n" + "".join(traceback.format_exception(exc)).rstrip()
        print(f"netvirt: error: lab {self.lab}: program on {key} stopped: "
              f"{type(exc).__name__}: {exc}{text}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            self.publish_counters()

    def publish_counters(self) -> None:
        """Write program counters (and a program's death) where ``netvirt status`` reads them."""
        import json

        def entry(key: str, p: Program) -> dict[str, Any]:
            err = self.program_errors.get(key)
            return {"program": type(p).name if hasattr(type(p), "name") else "python",
                    "counters": dict(p.counters), "state": "failed" if err else "running",
                    "error": f"{type(err).__name__}: {err}" if err else None}

        data = {f"{n}:{i}": entry(f"{n}:{i}", p) for (n, i), p in self.programs.items()}
        tmp = self._state.dir / "counters.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self._state.dir / "counters.json")
        if self.impaired:
            from netvirt.topology.links import publish_links

            publish_links(self._state.dir, self.impaired)

    # -- teardown --------------------------------------------------------
    async def teardown(self) -> None:
        """Stop programs, close fds, remove namespaces and tagged host links. Safe twice."""
        if self._torn_down:
            return
        self._torn_down = True
        errors: list[BaseException] = []
        self._close_crew()  # its rounds are over: each completes before the build goes on
        if self._control is not None:
            await complete(self._control.aclose())
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(BaseException):
                await task
        for served in {id(v): v for v in self.impaired.values()}.values():
            try:  # the datapath first: its process holds the taps' other fds
                if any(t.netns.name is None for t in served.taps):
                    await served.aclose()
                else:
                    served.release()
            except Exception as exc:
                errors.append(exc)
        try:  # processes go before the namespaces they live in
            if self.processes is not None:
                await self.processes.close()
            await asyncio.gather(*(n.stop_jobs() for n in self.nodes.values()))
            report = await close_lab_cgroup(self._cgroup)
            if report.left:
                errors.append(ProcessError(f"processes {report.left} of lab {self.lab!r} survived SIGKILL"))
        except Exception as exc:
            errors.append(exc)
        for dev in reversed(self._devices):
            try:
                if dev.netns.name is None:  # host namespace: delete what we made there
                    await dev.aclose()
                else:  # in our own namespace: closing fds is enough, the namespace goes
                    dev.release()
            except Exception as exc:  # keep going: everything else must still go
                errors.append(exc)
        # close every namespace's sockets first, then remove all the names in one go:
        # the kernel destroys namespaces released together in one batch (cleanup_net)
        results = await asyncio.gather(*(n.ns.close(remove=False) for n in self.nodes.values()),
                                       return_exceptions=True)
        errors.extend(r for r in results if isinstance(r, BaseException))
        errors.extend(await remove_many([node.ns for node in self.nodes.values()]))
        try:
            if self._state.claimed and "link" in self._state.ops:  # links in the host namespace
                await sweep_host_links(self.lab, self._state.root)
        except Exception as exc:
            errors.append(exc)
        # namespaces that creation left behind although their Namespace object is gone
        if self._state.claimed:  # never another process's record of the same lab name
            try:
                gone = remove_journalled_netns(self.lab, self._state.root)
                held = DownReport(self.lab)
                find_holders(gone, held, kill=False)
                if held.holders:
                    errors.append(EnvironmentProblem(
                        f"lab {self.lab}: " + "; ".join(held.holders) + ", so it and its devices are "
                        f"still alive; stop those processes, or run 'netvirt down {self.lab} --kill-holders'"))
            except Exception as exc:
                errors.append(exc)
            if not errors:  # else keep the record: 'netvirt down' finds the rest from it
                self._state.release()
        if errors:
            raise errors[0]


# -- programs ----------------------------------------------------------------------------
def _relative_to(source: str, target: str) -> str:
    """``file.py:callable`` with a relative file: relative to the scenario file, if it is there."""
    module, sep, attr = target.rpartition(":")
    if sep and module.endswith(".py") and not os.path.isabs(module):
        candidate = os.path.join(os.path.dirname(os.path.abspath(source)), module)
        if os.path.exists(candidate):
            return f"{candidate}:{attr}"
    return target


async def _start_program(iface: InterfaceSpec, dev: Device, node: Node,
                         source: str | None = None) -> tuple[Program, asyncio.Task[None]]:
    """Start the scenario's program on a live tun, tap or macvtap."""
    spec = iface.program
    assert spec is not None
    from netvirt.programs import ProgramContext, UserProgram, get_program

    cls: type[Program] = UserProgram if spec.name == "python" else get_program(spec.name, spec.place)
    device_mac = ""
    if isinstance(dev, Macvtap):  # the kernel hands the fd only frames for the macvtap's MAC
        device_mac = (await dev.info()).mac or ""
    port: Any = dev.port  # type: ignore[attr-defined]
    ctx = ProgramContext(port=port, params=dict(spec.params), addresses=list(iface.addresses),
                         open_socket=node.ns.socket, device_name=f"{node.name}:{iface.name}",
                         place=spec.place, device_mac=device_mac, source=source or "")
    if spec.name == "python" and source:
        ctx.params["python"] = _relative_to(source, str(ctx.params.get("python", "")))
    prog = cls(ctx)
    return prog, prog.start()
