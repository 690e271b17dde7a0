"""Splitting a lab over machines (pure: no I/O).

:func:`plan` takes a validated scenario and its :class:`Layout` and gives a
:class:`Plan`: where each node lives (``place``), each machine's share (a
sub-scenario of its nodes and the links between them, under the share's own
lab name), and the links that cross machines, each carried by one VXLAN pair
with its own VNI between the two machines' underlay addresses.

Placement (nodes without ``machine:``): ``netvirt.scenario.placement``.

MTU: VXLAN adds 50 bytes over IPv4 (70 over IPv6) to the inner IP MTU. A
crossing link end whose MTU is unset gets ``underlay MTU - overhead`` (the
smaller underlay of its two machines), so inner packets always fit; an MTU
that was set and does not fit is a located error before anything is created.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from netvirt.errors import Problem, ScenarioError
from netvirt.multi._model import Endpoint, IPAddress, LinkSpec, Scenario, StepSpec
from netvirt.multi.machines import Layout, MachineSpec
from netvirt.scenario.placement import place as _place

DEFAULT_UNDERLAY_MTU = 1500
MAX_CROSSING = 4096
#: netvirt's UDP port for the VXLANs of crossing links: not IANA's 4789, so a lab never
#: meets the host's own VXLAN (flannel, EVPN); below Linux's ephemeral range
#: (32768-60999), so no client socket holds it by chance
VXLAN_PORT = 14789


def overhead(underlay: IPAddress | str) -> int:
    """Bytes VXLAN adds to an inner frame's IP MTU: outer IP + UDP + VXLAN + inner Ethernet."""
    return 50 if ipaddress.ip_address(underlay).version == 4 else 70


@dataclass(frozen=True)
class VxlanEnd:
    """One end of a crossing link: a VXLAN device in ``endpoint``'s node on ``machine``."""

    endpoint: Endpoint
    machine: str
    peer_machine: str
    vni: int
    local: IPAddress
    remote: IPAddress
    mtu: int
    link: str  # the link's place, e.g. links[3]
    port: int = VXLAN_PORT


@dataclass(frozen=True)
class CrossLink:
    index: int  # in scenario.links
    link: LinkSpec
    vni: int
    a: VxlanEnd
    b: VxlanEnd


@dataclass(frozen=True)
class Share:
    """What one machine builds: ``scenario`` (named ``lab``) plus its VXLAN ends.

    The share keeps the interfaces of crossing ends (kind veth, no link): the
    machine creates a VXLAN device for each instead of a veth.
    """

    machine: MachineSpec
    lab: str
    scenario: Scenario
    vxlans: tuple[VxlanEnd, ...]


@dataclass(frozen=True)
class Plan:
    lab: str
    scenario: Scenario
    machines: Mapping[str, MachineSpec]
    placement: Mapping[str, str]  # node -> machine
    shares: Mapping[str, Share]  # machine -> share (machines with nodes only)
    crossing: tuple[CrossLink, ...]

    def machine_of(self, node: str) -> str:
        return self.placement[node]

    def step_machine(self, step: StepSpec) -> str | None:
        """The machine a step runs on (that of its node), or None for the driver (``wait``)."""
        node = step_node(step)
        return self.placement[node] if node is not None else None


def share_name(lab: str, machine: MachineSpec) -> str:
    """The lab name of a machine's share: distinct per machine, so shares on machines
    that share one filesystem and one kernel (the test setup) never collide."""
    return f"{lab}-{machine.share_suffix}"


def vni_base(lab: str) -> int:
    """The first VNI of a lab: a block of 4096 picked by the lab's name, so two labs on
    the same machines rarely meet (if they do, the VXLAN's creation says so)."""
    return (zlib.crc32(lab.encode()) % 4095 + 1) * MAX_CROSSING


def step_param(step: StepSpec, *keys: str) -> Any:
    """The first of ``keys`` that a step's parameters have (a mapping or typed step spec)."""
    p: Any = step.params
    for key in keys:
        value = p.get(key) if isinstance(p, Mapping) else getattr(p, key, None)
        if value is not None:
            return value
    return None


def step_node(step: StepSpec) -> str | None:
    """The node a step acts from, or None for steps that need no node (``wait``)."""
    for keys in (("from", "src"), ("node",), ("device",), ("bridge",), ("endpoint",)):
        value = step_param(step, *keys)
        if value is None:
            continue
        if isinstance(value, Endpoint):
            return value.node
        text = str(value)
        return text.partition(":")[0] if keys[0] in ("device", "bridge", "endpoint") else text
    return None


def step_peer_node(step: StepSpec) -> str | None:
    """For a step that also needs a node at the far end (``connect``: the listener)."""
    server = step_param(step, "server")
    return str(server) if server is not None else None


def place(scenario: Scenario, layout: Layout | None = None) -> dict[str, str]:
    """node -> machine (``netvirt.scenario.placement``); ``layout`` only for its machine names."""
    return _place(scenario)


# -- the split ----------------------------------------------------------------------
def plan(scenario: Scenario, layout: Layout, underlay_mtus: Mapping[str, int] | None = None) -> Plan:
    """Split ``scenario`` over ``layout``'s machines (see the module docstring).

    ``underlay_mtus`` (machine -> MTU) overrides what ``machines:`` says, e.g. the
    MTUs the machines reported; else ``mtu`` of the machine, else 1500.
    Raises ScenarioError (every problem at once) when a link cannot fit its MTU.
    """
    placement = place(scenario)
    machines = layout.machines
    source = scenario.source

    def ul_mtu(m: str) -> int:
        if underlay_mtus and m in underlay_mtus:
            return underlay_mtus[m]
        return machines[m].mtu or DEFAULT_UNDERLAY_MTU

    base = vni_base(scenario.name)
    problems: list[Problem] = []
    crossing: list[CrossLink] = []
    local_links: dict[str, list[LinkSpec]] = {m: [] for m in machines}
    for index, link in enumerate(scenario.links):
        ma, mb = placement[link.a.node], placement[link.b.node]
        if ma == mb:
            local_links[ma].append(link)
            continue
        if len(crossing) >= MAX_CROSSING:
            problems.append(Problem(link.place, f"at most {MAX_CROSSING} links may cross machines",
                                    layout.lines.get(link.place), source))
            break
        vni = base + len(crossing)
        ua, ub = machines[ma].underlay, machines[mb].underlay
        oh = overhead(ua)
        limit = min(ul_mtu(ma), ul_mtu(mb))
        small = ma if ul_mtu(ma) <= ul_mtu(mb) else mb
        ia, ib = scenario.interface(link.a), scenario.interface(link.b)
        fit = limit - oh
        mtu_a = ia.mtu or ib.mtu or fit
        mtu_b = ib.mtu or ia.mtu or fit
        for ep, mtu in ((link.a, mtu_a), (link.b, mtu_b)):
            if mtu + oh > limit:
                problems.append(Problem(
                    link.place,
                    f"link {link.a} -- {link.b} crosses from machine {ma} to {mb} over VXLAN: "
                    f"MTU {mtu} of {ep} + {oh} bytes of VXLAN over IPv{ua.version} = {mtu + oh} > "
                    f"underlay MTU {limit} of {small}; set the link's mtu to at most {fit} (or leave "
                    f"it unset: netvirt then fits it) or raise the underlay MTU",
                    layout.lines.get(link.place), source))
                break
        end_a = VxlanEnd(link.a, ma, mb, vni, ua, ub, mtu_a, link.place)
        end_b = VxlanEnd(link.b, mb, ma, vni, ub, ua, mtu_b, link.place)
        crossing.append(CrossLink(index, link, vni, end_a, end_b))
    for iface in scenario.interfaces():
        if iface.parent is not None and placement[iface.parent.node] != placement[iface.node]:
            raise AssertionError("place() keeps macvlan groups together")  # pragma: no cover
    if problems:
        raise ScenarioError(problems)
    shares: dict[str, Share] = {}
    for m, spec in machines.items():
        nodes = {n: s for n, s in scenario.nodes.items() if placement[n] == m}
        if not nodes:
            continue
        name = share_name(scenario.name, spec)
        sub = replace(scenario, name=name, nodes=nodes, links=tuple(local_links[m]), steps=())
        ends = tuple(e for c in crossing for e in (c.a, c.b) if e.machine == m)
        shares[m] = Share(spec, name, sub, ends)
    return Plan(scenario.name, scenario, machines, placement, shares, tuple(crossing))


__all__ = ["DEFAULT_UNDERLAY_MTU", "VXLAN_PORT", "CrossLink", "Plan", "Share", "VxlanEnd", "overhead", "place",
           "plan", "share_name", "step_node", "step_param", "step_peer_node", "vni_base"]
