"""The scenario model: inert, typed, frozen data that describes a lab.

A :class:`Scenario` is what the loader produces from a file after validation
(``netvirt.topology.load``). Nothing here does I/O or touches the kernel; the
builder turns a Scenario into a live ``Topology``.

Conventions:

* Every spec carries ``place``: its key path in the scenario
  (``nodes.left.interfaces.tun0``), so later errors can say where it came from.
  Interfaces that no ``interfaces:`` entry declares (bare veth ends named only
  by a link) have the link endpoint's path as place (``links[0][1]``).
* ``InterfaceSpec.mtu`` is the effective MTU: the interface's own ``mtu`` or,
  for a veth end without one, the ``mtu`` of its link.
* Mappings are plain dicts so that ``dataclasses.asdict`` and ``copy`` work;
  treat them as read-only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "Endpoint",
    "InterfaceSpec",
    "LinkSpec",
    "NodeSpec",
    "ProgramSpec",
    "RouteSpec",
    "Scenario",
    "StepSpec",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, order=True)
class Endpoint:
    """One interface of one node, written ``node:ifname``."""

    node: str
    ifname: str

    def __str__(self) -> str:
        return f"{self.node}:{self.ifname}"

    @classmethod
    def parse(cls, text: str, default_node: str | None = None) -> Endpoint:
        """Parse ``NODE:IFNAME`` (or ``IFNAME`` when ``default_node`` is given).

        Raises ``ValueError`` on anything else; the validator reports it nicely.
        """
        node, sep, ifname = text.partition(":")
        if not sep:
            if default_node is None:
                raise ValueError(f"{text!r} is not NODE:IFNAME")
            node, ifname = default_node, text
        if not node or not ifname or ":" in ifname:
            raise ValueError(f"{text!r} is not NODE:IFNAME")
        return cls(node, ifname)


@dataclass(frozen=True)
class ProgramSpec:
    """A userspace program served on a tun, tap or macvtap fd.

    ``name`` is a built-in program (``sink``, ``responder``, ...) or ``python``
    for user code, in which case ``params["python"]`` is ``"module:callable"``.
    ``params`` holds every key of the ``program:`` mapping except ``name``.
    """

    name: str
    params: Mapping[str, Any]
    place: str = ""


@dataclass(frozen=True)
class InterfaceSpec:
    """One netdev in one node. Fields that do not apply to ``kind`` keep their defaults."""

    node: str
    name: str
    kind: str  # veth | bridge | tun | tap | macvlan | macvtap
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None
    mac: str | None = None  # lowercase aa:bb:cc:dd:ee:ff
    up: bool = True
    master: str | None = None  # a bridge in the same node
    # bridge
    stp: bool = False
    ageing_time: float | None = None  # seconds
    forward_delay: float | None = None  # seconds
    # tun / tap
    queues: int = 1
    offload: bool = False
    persist: bool = False
    owner: int | None = None  # uid
    group: int | None = None  # gid
    # macvlan / macvtap
    parent: Endpoint | None = None
    mode: str = "bridge"
    # tun / tap / macvtap
    program: ProgramSpec | None = None
    place: str = ""

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.node, self.name)


@dataclass(frozen=True)
class RouteSpec:
    """A route in a node: ``to`` via a gateway ``via``, out of ``dev``, or both."""

    to: IPNetwork
    via: IPAddress | None = None
    dev: str | None = None
    place: str = ""


@dataclass(frozen=True)
class NodeSpec:
    """One node: a network namespace ``nv-<lab>-<node>``, or the machine's own
    namespace when ``host`` is true (the only way a scenario touches it)."""

    name: str
    interfaces: Mapping[str, InterfaceSpec]
    routes: tuple[RouteSpec, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    host: bool = False
    place: str = ""


@dataclass(frozen=True)
class LinkSpec:
    """A veth pair joining endpoints ``a`` and ``b``."""

    a: Endpoint
    b: Endpoint
    mtu: int | None = None
    place: str = ""


@dataclass(frozen=True)
class StepSpec:
    """One check run by ``netvirt run``; ``params`` are normalised (see validate docs)."""

    kind: str  # ping | connect | exec | counters | fdb | wait
    params: Mapping[str, Any]
    place: str = ""
    line: int | None = None


@dataclass(frozen=True)
class Scenario:
    """A whole validated lab description."""

    name: str
    description: str
    nodes: Mapping[str, NodeSpec]
    links: tuple[LinkSpec, ...] = ()
    steps: tuple[StepSpec, ...] = ()
    source: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    def with_name(self, name: str) -> Scenario:
        """The same scenario under another lab name (e.g. a unique one per test)."""
        from netvirt.topology.state import check_lab_name

        return replace(self, name=check_lab_name(name))

    def interface(self, ep: Endpoint) -> InterfaceSpec:
        """The interface at ``ep``; ``KeyError`` naming it when there is none."""
        node = self.nodes.get(ep.node)
        if node is None or ep.ifname not in node.interfaces:
            raise KeyError(f"scenario {self.name!r} has no interface {ep}")
        return node.interfaces[ep.ifname]

    def interfaces(self) -> list[InterfaceSpec]:
        """Every interface of every node, nodes and interfaces in file order."""
        return [i for n in self.nodes.values() for i in n.interfaces.values()]
