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
* Steps carry typed parameters (``PingStep``, ``ConnectStep``, ...): validation
  checks them once, the step runners read attributes, never string keys.
* The names a lab gives the kernel (``netns_name``, ``lab_alias``) and the lab
  name rule (``check_lab_name``) are pure, so they live here too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from netvirt.errors import UsageError
from netvirt.impair.conditions import Conditions
from netvirt.impair.expect import Bound
from netvirt.procs.spec import ProcessSpec

__all__ = [
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "STEP_TYPES",
    "ConnectStep",
    "CountersStep",
    "Endpoint",
    "ExecStep",
    "FdbStep",
    "FileSpec",
    "ImpairStep",
    "InterfaceSpec",
    "LinkStep",
    "LinkSpec",
    "MachineSpec",
    "NodeSpec",
    "ProgramSpec",
    "RouteSpec",
    "PingStep",
    "ProcessSpec",
    "Retry",
    "Scenario",
    "StepParams",
    "StepSpec",
    "ThroughputStep",
    "WaitStep",
]

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_lab_name(lab: str) -> str:
    """``lab`` if it is a valid lab name, else UsageError.

    Every path under the state root is built from a lab name: an unchecked
    one ("", ".", "/x") would point ``down`` at another directory.
    """
    from netvirt.scenario.checker import name_problem

    problem = name_problem(lab, "lab name")
    if problem:
        raise UsageError(problem)
    return lab


def netns_name(lab: str, node: str) -> str:
    """The network namespace of ``node`` in lab ``lab``."""
    return f"nv-{lab}-{node}"


def lab_alias(lab: str) -> str:
    """The ifalias tag of the links a lab makes in the host namespace."""
    return f"netvirt:{lab}"


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
    ``params`` holds every key of the ``program:`` mapping except ``name``, checked
    against the program's schema at validation (``netvirt.programs.parse_program``).
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
    # veth: an IPv6 link-local address (None: only if the end has an IPv6 address)
    ipv6_linklocal: bool | None = None
    # bridge
    stp: bool = False
    ageing_time: float | None = None  # seconds
    forward_delay: float | None = None  # seconds
    # off in a lab: no querier, so snooped groups expire after 260 s; and each port's
    # enable re-armed every port's query timer (quadratic in a big star's build)
    multicast_snooping: bool = False
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
class FileSpec:
    """A file the node's processes and ``exec`` see under ``/etc/<path>``: its
    ``content`` (inline, or read at validation from ``source``, the file it came from,
    resolved from the scenario's directory)."""

    path: str  # relative to /etc, e.g. frr/frr.conf
    content: bytes | None = None
    source: str | None = None
    place: str = ""

    def read(self) -> bytes:
        if self.content is not None:
            return self.content
        assert self.source is not None
        with open(self.source, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class NodeSpec:
    """One node: a network namespace ``nv-<lab>-<node>``, or the machine's own
    namespace when ``host`` is true (the only way a scenario touches it).

    ``files``, ``private`` and ``processes`` are SPEC.md section 9: files under
    its /etc, per-node directories over these paths, processes started after the
    build (``netvirt.procs.spec.ProcessSpec``, pure data too)."""

    name: str
    interfaces: Mapping[str, InterfaceSpec]
    routes: tuple[RouteSpec, ...] = ()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    host: bool = False
    place: str = ""
    machine: str | None = None  # the machine it is on (``machine:``); None: netvirt places it
    files: Mapping[str, FileSpec] = field(default_factory=dict)
    private: tuple[str, ...] = ()
    processes: tuple[ProcessSpec, ...] = ()

    def first_address(self) -> IPAddress | None:
        """The address ``/etc/hosts`` names this node by: its first, in file order."""
        for iface in self.interfaces.values():
            for a in iface.addresses:
                return a.ip
        return None


@dataclass(frozen=True)
class LinkSpec:
    """A link joining endpoints ``a`` and ``b``: a veth pair, or, when it carries
    ``impair`` (SPEC.md section 7), a tap pair served by netvirt's datapath.

    ``impair`` maps an endpoint (``str(Endpoint)``) to the conditions of what
    leaves it; ``None``: a plain veth. ``controlled`` is true when a ``link`` or
    ``impair`` step names the link: it is then served by the datapath too.
    """

    a: Endpoint
    b: Endpoint
    mtu: int | None = None
    place: str = ""
    line: int | None = None  # its file line: errors found after validation (the split's MTU) name it
    impair: Mapping[str, Conditions] | None = None
    controlled: bool = False

    @property
    def served(self) -> bool:
        """True if netvirt's datapath carries this link (tap pair), False for a veth."""
        return self.impair is not None or self.controlled

    def has(self, ep: Endpoint) -> bool:
        return ep in (self.a, self.b)


@dataclass(frozen=True)
class PingStep:
    """``ping``: every echo answered (``expect`` success) or none (failure)."""

    src: str  # the node it is sent from (``from:``)
    to: str  # an address
    count: int = 3
    expect: str = "success"  # success | failure
    timeout: float = 1.0  # seconds to wait for each reply
    interval: float | None = None  # seconds between echo requests (None: adaptive, see probes.ping)
    loss: Bound | None = None  # e.g. "<= 15%"; with it, expect success tolerates losses
    rtt: Mapping[str, Bound] = field(default_factory=dict)  # min, avg, p50, p99, max


@dataclass(frozen=True)
class ConnectStep:
    """``connect``: TCP or UDP echo of ``bytes`` random bytes; netvirt listens on ``server``."""

    src: str
    to: str  # ADDR:PORT, [v6]:PORT
    address: str
    port: int
    server: str  # the node that owns ``address``
    proto: str = "tcp"  # tcp | udp
    bytes: int = 1000
    expect: str = "success"
    timeout: float = 5.0


@dataclass(frozen=True)
class ExecStep:
    """``exec``: a shell command in a node, its exit status and optionally its stdout."""

    node: str
    cmd: str
    exit: int = 0
    stdout: str | None = None  # a regular expression searched in the output
    timeout: float = 30.0


@dataclass(frozen=True)
class CountersStep:
    """``counters``: a program's counters reach exact values and/or minimums in ``timeout``."""

    device: Endpoint
    equals: Mapping[str, int] = field(default_factory=dict)
    at_least: Mapping[str, int] = field(default_factory=dict)
    timeout: float = 2.0


@dataclass(frozen=True)
class FdbStep:
    """``fdb``: ``bridge`` learned ``mac`` on ``port`` (an interface of the same node)."""

    bridge: Endpoint
    mac: str  # lowercase
    port: str


@dataclass(frozen=True)
class WaitStep:
    """``wait``: sleep."""

    seconds: float


@dataclass(frozen=True)
class LinkStep:
    """``link``: pull (``down``) or restore (``up``) the link of ``endpoint``."""

    endpoint: Endpoint
    state: str  # down | up


@dataclass(frozen=True)
class ImpairStep:
    """``impair``: replace (or ``reset``) the conditions of what leaves ``endpoint``."""

    endpoint: Endpoint
    conditions: Conditions | None = None
    reset: bool = False
    both: bool = False


@dataclass(frozen=True)
class ThroughputStep:
    """``throughput``: netvirt's own sender (``src``) and receiver (``server``)."""

    src: str
    to: str
    address: str
    port: int
    server: str
    proto: str = "tcp"
    seconds: float = 3.0
    rate: int | None = None  # UDP: offered bit/s (None: as fast as the socket takes)
    expect: Bound | None = None  # bit/s
    loss: Bound | None = None  # UDP


StepParams = (PingStep | ConnectStep | ExecStep | CountersStep | FdbStep | WaitStep | LinkStep
              | ImpairStep | ThroughputStep)
#: step kind as written in scenarios -> its typed parameters
STEP_TYPES: dict[str, type[StepParams]] = {
    "ping": PingStep, "connect": ConnectStep, "exec": ExecStep, "counters": CountersStep,
    "fdb": FdbStep, "wait": WaitStep, "link": LinkStep, "impair": ImpairStep,
    "throughput": ThroughputStep,
}


@dataclass(frozen=True)
class Retry:
    """``retry: {for: 30s, every: 0.5s}``: repeat a failing step until it passes or time is up."""

    seconds: float
    every: float = 0.5


@dataclass(frozen=True)
class StepSpec:
    """One check run by ``netvirt run``: its kind and typed, validated parameters."""

    kind: str  # ping | connect | exec | counters | fdb | wait | link | impair | throughput
    params: StepParams
    place: str = ""
    line: int | None = None
    retry: Retry | None = None


@dataclass(frozen=True)
class MachineSpec:
    """One machine of a lab across machines (``machines:``, SPEC.md section 10)."""

    name: str
    ssh: str  # [user@]host[:port] or a host of the user's ssh config
    underlay: IPAddress  # its address that the VXLANs of crossing links use
    command: str = "netvirt"  # how netvirt is started there
    mtu: int | None = None  # the underlay's MTU; None: asked from the machine
    index: int = 0  # position in machines: (names the machine's share <lab>-<k>)
    place: str = ""
    line: int | None = None

    @property
    def share_suffix(self) -> str:
        return "123456789abcdefghijklmnopqrstuvwxyz"[self.index]


@dataclass(frozen=True)
class Scenario:
    """A whole validated lab description. ``machines`` is empty for a local lab."""

    name: str
    description: str
    nodes: Mapping[str, NodeSpec]
    links: tuple[LinkSpec, ...] = ()
    steps: tuple[StepSpec, ...] = ()
    source: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    machines: Mapping[str, MachineSpec] = field(default_factory=dict)
    hosts: bool = True  # each node's /etc/hosts names every node (SPEC.md section 9)

    def with_name(self, name: str) -> Scenario:
        """The same scenario under another lab name (e.g. a unique one per test)."""
        check_lab_name(name)
        if self.machines and len(name) > 10:
            raise UsageError(f"lab name {name!r} is {len(name)} characters long; a lab across machines "
                             "has at most 10, since each machine's share is named <lab>-<k>")
        return replace(self, name=name)

    def interface(self, ep: Endpoint) -> InterfaceSpec:
        """The interface at ``ep``; ``KeyError`` naming it when there is none."""
        node = self.nodes.get(ep.node)
        if node is None or ep.ifname not in node.interfaces:
            raise KeyError(f"scenario {self.name!r} has no interface {ep}")
        return node.interfaces[ep.ifname]

    def link_of(self, ep: Endpoint) -> LinkSpec | None:
        """The link that has ``ep`` as an end, if any."""
        return next((link for link in self.links if link.has(ep)), None)

    def interfaces(self) -> list[InterfaceSpec]:
        """Every interface of every node, nodes and interfaces in file order."""
        return [i for n in self.nodes.values() for i in n.interfaces.values()]
