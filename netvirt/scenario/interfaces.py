"""Validation of interfaces: per-interface keys, programs, and cross references
(bridge masters, macvlan parents, unlinked veth ends, duplicate addresses and MACs)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from netvirt.errors import Problem
from netvirt.kinds import (
    BR_MAX_PORTS,
    BR_MAX_SECONDS,
    COMMON_KEYS,
    IPV6_MIN_MTU,
    KINDS,
    MACVLAN_MODES,
    TUN_MAX_ID,
)
from netvirt.scenario.checker import (
    At,
    Checker,
    describe,
    elsewhere_hints,
    kind_problem,
)
from netvirt.scenario.model import Endpoint, InterfaceSpec, ProgramSpec


@dataclass
class Draft:
    """An interface being validated; ``fields`` become InterfaceSpec arguments."""

    node: str
    name: str
    kind: str
    at: At  # the interface entry, or the link endpoint that implies it
    declared: bool
    fields: dict[str, Any] = field(default_factory=dict)
    link: str | None = None  # path of the link this veth end belongs to
    address_ats: list[At] = field(default_factory=list)  # where each address was written

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.node, self.name)

    def spec(self) -> InterfaceSpec:
        return InterfaceSpec(node=self.node, name=self.name, kind=self.kind,
                             place=self.at.path, **self.fields)


def check_interface(ck: Checker, node: str, name: str, at: At) -> Draft | None:
    """Validate one ``interfaces:`` entry; None if its kind is unusable."""
    value = {} if at.value is None else at.value
    at = At(value, at.path, at.line)
    if not isinstance(value, dict):
        ck.add(at, f"interface {describe(name)} must be a mapping of its settings, not {describe(value)}")
        return None
    if name == "lo":
        return _loopback(ck, node, at)
    kind = value.get("kind", "veth")
    problem = kind_problem(kind)
    if problem:
        ck.add(at.key("kind"), problem)
        return None
    ck.mapping(at, COMMON_KEYS + KINDS[kind].keys, f"a {kind} interface",
               elsewhere=elsewhere_hints(kind))
    d = Draft(node, name, kind, at, declared=True)
    f = d.fields
    if at.has("addresses"):
        pairs = _addresses(ck, at.key("addresses"))
        f["addresses"] = tuple(a for a, _ in pairs)
        d.address_ats = [where for _, where in pairs]
    if at.has("mtu"):
        lo, hi = KINDS[kind].mtu
        f["mtu"] = ck.integer(at.key("mtu"), "mtu", lo, hi)
    if at.has("mac"):
        if not KINDS[kind].ethernet:
            ck.add(at.key("mac"), "a tun has no MAC address (it carries IP packets, not "
                                  "Ethernet frames): remove mac, or use a tap")
        else:
            f["mac"] = ck.mac(at.key("mac"))
    if at.has("up"):
        f["up"] = _or(ck.boolean(at.key("up"), "up"), True)
    if at.has("master"):
        f["master"] = ck.string(at.key("master"), "master (a bridge in the same node)")
    if at.has("ipv6_linklocal") and kind == "veth":
        f["ipv6_linklocal"] = ck.boolean(at.key("ipv6_linklocal"), "ipv6_linklocal")
    if kind == "bridge":
        _bridge(ck, at, f)
    elif kind in ("tun", "tap"):
        _tuntap(ck, at, f)
    elif kind in ("macvlan", "macvtap"):
        _macvlan(ck, at, f, node)
    if at.has("program") and KINDS[kind].program:
        f["program"] = check_program(ck, at.key("program"))
        if isinstance(at.value, dict) and at.value.get("persist") is True:
            ck.add(at.key("program"), "a persistent tun/tap is left to an external program (such as "
                                      "qemu): netvirt cannot run a program on it too; drop persist or program")
    return d


def _loopback(ck: Checker, node: str, at: At) -> Draft | None:
    """``lo``: the node's own loopback (always there, up); it may carry addresses only."""
    if "kind" in at.value:
        ck.add(at.key("kind"), "lo is the node's loopback, which every namespace has: it takes no "
                               "kind, only addresses (e.g. a router's 10.255.0.1/32)")
        return None
    ck.mapping(at, ("addresses",), "the loopback lo")
    d = Draft(node, "lo", "loopback", at, declared=True)
    if at.has("addresses"):
        pairs = _addresses(ck, at.key("addresses"))
        d.fields["addresses"] = tuple(a for a, _ in pairs)
        d.address_ats = [where for _, where in pairs]
    return d


def _or(value: Any, default: Any) -> Any:
    return default if value is None else value


def _addresses(ck: Checker, at: At) -> list[tuple[Any, At]]:
    if not isinstance(at.value, list):
        ck.add(at, f"addresses must be a list such as [10.0.0.1/24, fd00::1/64], not "
                   f"{describe(at.value)}")
        return []
    pairs = [(ck.cidr(item), item) for item in at.elements()]
    return [(a, item) for a, item in pairs if a is not None]


def _bridge(ck: Checker, at: At, f: dict[str, Any]) -> None:
    if at.has("stp"):
        f["stp"] = _or(ck.boolean(at.key("stp"), "stp"), False)
    if at.has("multicast_snooping"):
        f["multicast_snooping"] = _or(ck.boolean(at.key("multicast_snooping"), "multicast_snooping"), False)
    # the kernel takes both as u32 centiseconds: finite, not negative, at most 2^32-1 cs
    if at.has("ageing_time"):
        f["ageing_time"] = ck.number(at.key("ageing_time"), "ageing_time", 0, BR_MAX_SECONDS)
    if at.has("forward_delay"):
        delay = f["forward_delay"] = ck.number(at.key("forward_delay"), "forward_delay", 0,
                                               BR_MAX_SECONDS)
        if f.get("stp") and delay is not None and not 2 <= delay <= 30:
            ck.add(at.key("forward_delay"), f"with stp on, the kernel accepts a forward_delay "
                                            f"from 2 to 30 seconds, not {delay:g}")


def _tuntap(ck: Checker, at: At, f: dict[str, Any]) -> None:
    if at.has("queues"):
        f["queues"] = _or(ck.integer(at.key("queues"), "queues", 1, 64), 1)
    for key in ("offload", "persist"):
        if at.has(key):
            f[key] = _or(ck.boolean(at.key(key), key), False)
    for key, what in (("owner", "owner (a numeric uid)"), ("group", "group (a numeric gid)")):
        if at.has(key):
            f[key] = ck.integer(at.key(key), what, 0, TUN_MAX_ID)
            if f[key] is not None and f.get("persist") is not True:
                ck.add(at.key(key), f"{key} applies only to a persistent device (the kernel keeps "
                                    f"it for an external program): add persist: true, or drop {key}")


def _macvlan(ck: Checker, at: At, f: dict[str, Any], node: str) -> None:
    if not at.has("parent"):
        ck.add(at.key("parent"), "a macvlan or macvtap needs a parent: IFNAME in the same "
                                 "node or NODE:IFNAME")
    else:
        text = ck.string(at.key("parent"), "parent")
        if text is not None:
            try:
                f["parent"] = Endpoint.parse(text, default_node=node)
            except ValueError:
                ck.add(at.key("parent"), f"parent {describe(text)} must be IFNAME (same node) or "
                                         "NODE:IFNAME")
    if at.has("mode"):
        f["mode"] = _or(ck.choice(at.key("mode"), "mode", tuple(MACVLAN_MODES)), "bridge")


def check_program(ck: Checker, at: At) -> ProgramSpec | None:
    """``program: NAME``, ``{name: NAME, ...params}`` or ``{python: module:callable, ...}``.

    The programs package holds the one registry and each program's own checks;
    it is imported only for scenarios that run a program (it is pure, but not free).
    """
    value = {"name": at.value} if isinstance(at.value, str) else at.value
    at = At(value, at.path, at.line)
    if not ck.mapping(at, _keys(value), "program"):
        return None
    from netvirt.programs import parse_program

    spec, problems = parse_program(value, at.path)
    _adopt(ck, problems, at)
    return spec


def _adopt(ck: Checker, problems: list[Problem], at: At) -> None:
    """Take a program's own problems, each at the line of the key it names."""
    for p in problems:
        key = p.path[len(at.path) + 1:].split(".")[0].split("[")[0] \
            if p.path.startswith(at.path + ".") else ""
        ck.adopt([p], at.key(key) if key and at.has(key) else at)


def _keys(value: Any) -> list[str]:
    return [k for k in value if isinstance(k, str)] if isinstance(value, dict) else []


# --- cross references ---------------------------------------------------------------


def cross_check(ck: Checker, drafts: dict[str, dict[str, Draft]]) -> None:
    """Checks that need every interface of the lab: masters, parents, links, duplicates."""
    children: dict[Endpoint, list[Draft]] = {}
    seen_ip: dict[Any, Draft] = {}
    seen_mac: dict[str, Draft] = {}
    for node, ifaces in drafts.items():
        for d in ifaces.values():
            if d.kind == "veth" and d.link is None:
                explicit = isinstance(d.at.value, dict) and "kind" in d.at.value
                what = "is a veth end but" if explicit else "has no kind and"
                ck.add(d.at, f"interface {d.name!r} {what} is an end of no link: add "
                             f"[{node}:{d.name}, OTHER:IFNAME] under links, or give it a kind "
                             "(bridge, tun, tap, macvlan, macvtap)")
            _master(ck, d, ifaces)
            parent = d.fields.get("parent")
            if parent is not None and _parent(ck, d, parent, drafts):
                children.setdefault(parent, []).append(d)
            _unique(ck, d, seen_ip, seen_mac)
            _ipv6_mtu(ck, d, ifaces)
        _ports(ck, ifaces)
    for parent, kids in children.items():
        _child_mtu(ck, parent, kids, drafts)
        if len(kids) > 1 and any(k.fields.get("mode") == "passthru" for k in kids):
            for k in kids:
                if k.fields.get("mode") == "passthru":
                    ck.add(k.at.key("mode"), f"a passthru child must be the only macvlan or "
                                             f"macvtap on {parent}, which has {len(kids)}")


#: what an interface gets when neither it nor its link sets an mtu
DEFAULT_MTU = 1500


def _ipv6_mtu(ck: Checker, d: Draft, ifaces: dict[str, Draft]) -> None:
    """IPv6 addresses need an mtu of at least 1280, or the kernel disables IPv6 on the link.

    A bridge without its own mtu takes the smallest of its ports' (the kernel's auto
    adjustment), so a port below 1280 counts for the bridge's addresses too."""
    addresses = d.fields.get("addresses") or ()
    if not any(a.version == 6 for a in addresses):
        return
    mtu = d.fields.get("mtu")
    where = d.at.key("mtu") if d.at.has("mtu") else d.at
    if mtu is None and d.kind == "bridge":
        ports: list[tuple[int, Draft]] = [
            (p.fields["mtu"], p) for p in ifaces.values()
            if p.fields.get("master") == d.name and p.fields.get("mtu") is not None]
        if ports:
            mtu, port = min(ports, key=lambda x: x[0])
            where = port.at.key("mtu") if port.at.has("mtu") else port.at
    if mtu is not None and mtu < IPV6_MIN_MTU:
        ck.add(where, f"{d.endpoint} has IPv6 addresses but an mtu of {mtu}: the kernel disables "
                      f"IPv6 below {IPV6_MIN_MTU}; raise the mtu to at least {IPV6_MIN_MTU} or "
                      "keep only IPv4 addresses")


def _ports(ck: Checker, ifaces: dict[str, Draft]) -> None:
    """A Linux bridge takes at most BR_MAX_PORTS ports: say so before anything is built."""
    count: dict[str, int] = {}
    for d in ifaces.values():
        master = d.fields.get("master")
        if isinstance(master, str):
            count[master] = count.get(master, 0) + 1
    for name, n in count.items():
        bridge = ifaces.get(name)
        if n > BR_MAX_PORTS and bridge is not None and bridge.kind == "bridge":
            ck.add(bridge.at, f"bridge {bridge.endpoint} has {n} ports; the kernel allows at most "
                              f"{BR_MAX_PORTS} per bridge: split them over several bridges joined "
                              "by veth links")


def _child_mtu(ck: Checker, parent: Endpoint, kids: list[Draft],
               drafts: dict[str, dict[str, Draft]]) -> None:
    """A macvlan/macvtap cannot have a larger mtu than its parent (the kernel: EINVAL)."""
    p = drafts[parent.node][parent.ifname]
    limit = p.fields.get("mtu") or DEFAULT_MTU
    for k in kids:
        mtu = k.fields.get("mtu")
        if mtu is not None and mtu > limit:
            ck.add(k.at.key("mtu"), f"mtu {mtu} is above the mtu of its parent {parent} ({limit}); "
                                    f"a {k.kind} can be at most as large: lower it or raise the parent's")


def _master(ck: Checker, d: Draft, ifaces: dict[str, Draft]) -> None:
    master = d.fields.get("master")
    if master is None:
        return
    at = d.at.key("master")
    bridge = ifaces.get(master)
    if bridge is not None and bridge.kind == "":
        return  # a broken declaration, reported already
    if master == d.name:
        ck.add(at, f"interface {d.name!r} cannot be its own master")
    elif bridge is None:
        bridges = [n for n, x in ifaces.items() if x.kind == "bridge"]
        hint = f" (bridges here: {', '.join(bridges)})" if bridges else ""
        ck.add(at, f"master {describe(master)} is not an interface of node {d.node!r}: declare it "
                   f"with kind: bridge{hint}")
    elif bridge.kind != "bridge":
        ck.add(at, f"master {describe(master)} is a {bridge.kind}; master must name a bridge")
    elif d.kind == "tun":
        ck.add(at, "a tun carries IP packets, not Ethernet frames, so it cannot join a "
                   "bridge: use a tap")
    elif d.kind == "bridge":
        ck.add(at, "a bridge cannot be a port of another bridge: join them with a veth pair")
    elif d.fields.get("addresses"):
        ck.add(d.at.key("addresses"), f"{d.name!r} is a port of bridge {master!r}: put its "
                                      f"addresses on {master!r} instead")


def _parent(ck: Checker, d: Draft, parent: Endpoint, drafts: dict[str, dict[str, Draft]]) -> bool:
    at = d.at.key("parent")
    if parent.node not in drafts:
        ck.add(at, f"parent {parent}: node {parent.node!r} is not defined under nodes")
        return False
    p = drafts[parent.node].get(parent.ifname)
    if p is None:
        ck.add(at, f"parent {parent} is not an interface: declare {parent.ifname!r} under "
                   f"nodes.{parent.node}.interfaces or as the end of a link")
        return False
    if p.kind == "":
        return False  # a broken declaration, reported already
    if p is d:
        ck.add(at, "an interface cannot be its own parent")
    elif p.kind in ("bridge", "tun"):
        why = "a bridge" if p.kind == "bridge" else "a tun (no Ethernet)"
        ck.add(at, f"parent {parent} is {why}; a macvlan parent must be a veth end, a tap "
                   "or another Ethernet device")
    elif p.fields.get("master"):
        ck.add(at, f"parent {parent} is a port of bridge {p.fields['master']!r}; a bridge "
                   "port cannot also be a macvlan parent")
    else:
        return True
    return False


def _unique(ck: Checker, d: Draft, seen_ip: dict[Any, Draft], seen_mac: dict[str, Draft]) -> None:
    addresses: tuple[ipaddress.IPv4Interface | ipaddress.IPv6Interface, ...] = \
        d.fields.get("addresses") or ()
    for addr, where in zip(addresses, d.address_ats, strict=True):
        first = seen_ip.get(addr.ip)
        if first is not None:
            ck.add(where, f"address {addr.ip} is already on {first.endpoint}: each address "
                          "may appear once in a lab")
        else:
            seen_ip[addr.ip] = d
    mac = d.fields.get("mac")
    if mac is not None:
        first = seen_mac.get(mac)
        if first is not None:
            ck.add(d.at.key("mac"), f"MAC {mac} is already on {first.endpoint}: give each "
                                    "interface its own MAC")
        else:
            seen_mac[mac] = d
