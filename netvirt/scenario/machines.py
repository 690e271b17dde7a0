"""``machines:`` and ``machine:`` (SPEC.md section 10): their checks (pure).

A lab across machines is an ordinary scenario plus a top-level ``machines:``
map and an optional ``machine:`` per node::

    machines:
      m1: {ssh: "root@192.0.2.1", underlay: 192.0.2.1}
      m2: {ssh: "root@192.0.2.2", underlay: 192.0.2.2, command: "python3 -m netvirt", mtu: 9000}

``ssh`` is what ``ssh`` would be given (``[user@]host[:port]``; a host alias of the
user's ssh config works), ``underlay`` the machine's address that VXLAN uses,
``command`` how netvirt is started there (default ``netvirt``), ``mtu`` the
underlay's MTU (default: asked from the machine before anything is built).

Rules checked here: the keys and their values; a machine name like a node name;
at most 35 machines (each share is named ``<lab>-<k>``, k one of 1-9a-z); one
underlay address per machine, all of one IP family; a lab across machines has a
name of at most 10 characters (so ``<lab>-<k>`` is a lab name); ``machine:``
names a machine of ``machines:``; a macvlan and its parent node are on one machine.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from netvirt.scenario.checker import At, Checker, describe, name_problem
from netvirt.scenario.model import MachineSpec, NodeSpec

MACHINE_KEYS = ("ssh", "underlay", "command", "mtu")
DEFAULT_COMMAND = "netvirt"
SHARE_SUFFIXES = "123456789abcdefghijklmnopqrstuvwxyz"
LAB_MAX = 10


def lab_name_problem(name: str) -> str | None:
    if len(name) > LAB_MAX:
        return (f"lab name {name!r} is {len(name)} characters long; a lab across machines has at "
                f"most {LAB_MAX}, since each machine's share is named <lab>-<k>")
    return None


def check_machines(ck: Checker, at: At) -> dict[str, MachineSpec]:
    """The machines of ``machines:`` (``at``), each problem added to ``ck``."""
    if at.value is None:
        return {}
    if not isinstance(at.value, dict):
        ck.add(at, f"machines must be a mapping of machine name to {{ssh, underlay, command, mtu}}, "
                   f"not {describe(at.value)}")
        return {}
    machines: dict[str, MachineSpec] = {}
    seen: dict[str, str] = {}
    for index, (name, m) in enumerate(at.items()):
        problem = name_problem(name, "machine name")
        if problem:
            ck.add(m, problem)
            continue
        if index >= len(SHARE_SUFFIXES):
            ck.add(m, f"at most {len(SHARE_SUFFIXES)} machines")
            continue
        spec = _machine(ck, name, m, index)
        if spec is None:
            continue
        other = seen.get(str(spec.underlay))
        if other is not None:
            ck.add(m.key("underlay"), f"underlay {spec.underlay} is also machine {other}'s; each "
                                      "machine needs its own address")
            continue
        seen[str(spec.underlay)] = name
        machines[name] = spec
    if len({m.underlay.version for m in machines.values()}) > 1:
        ck.add(at, "underlay addresses mix IPv4 and IPv6: VXLAN joins machines of one family")
    return machines


def _machine(ck: Checker, name: str, at: At, index: int) -> MachineSpec | None:
    n = len(ck.problems)
    if not ck.mapping(at, MACHINE_KEYS, f"machine {name!r}", required=("ssh", "underlay")):
        return None
    ssh = at.value.get("ssh")
    if at.has("ssh") and (not isinstance(ssh, str) or not ssh.strip() or any(c.isspace() for c in ssh)):
        ck.add(at.key("ssh"), "ssh is [user@]host[:port] or a host of your ssh config, not "
                              f"{describe(ssh)}")
    underlay = None
    if at.has("underlay"):
        try:
            underlay = ipaddress.ip_address(str(at.value["underlay"]))
        except ValueError:
            ck.add(at.key("underlay"), f"underlay must be the machine's IPv4 or IPv6 address, not "
                                       f"{describe(at.value['underlay'])}")
    command = at.value.get("command", DEFAULT_COMMAND)
    if not isinstance(command, str) or not command.strip():
        ck.add(at.key("command"), "command is how netvirt is started there, e.g. "
                                  "'/opt/nv/bin/python -m netvirt'")
    mtu = ck.integer(at.key("mtu"), "mtu (the underlay's)", 576, 65535) if at.has("mtu") else None
    if len(ck.problems) != n or underlay is None or not isinstance(ssh, str):
        return None
    return MachineSpec(name, ssh, underlay, str(command).strip(), mtu, index, at.path, at.line)


def check_assigned(ck: Checker, machines_at: At, machines: Mapping[str, MachineSpec],
                   node_ats: Mapping[str, At]) -> dict[str, str]:
    """node -> machine for the nodes that say ``machine:``."""
    assigned: dict[str, str] = {}
    for node, at in node_ats.items():
        if not at.has("machine"):
            continue
        m = at.key("machine")
        if machines_at.value is None:
            ck.add(m, "machine: needs a top-level machines: map naming the machines")
        elif not isinstance(m.value, str) or m.value not in (machines_at.value or {}):
            known = ", ".join(str(k) for k in machines_at.value) if isinstance(machines_at.value, dict) else ""
            ck.add(m, f"unknown machine {describe(m.value)}; machines: {known or 'none'}")
        elif m.value in machines:
            assigned[node] = m.value
    return assigned


def check_groups(ck: Checker, nodes: Mapping[str, NodeSpec], node_ats: Mapping[str, At],
                 assigned: Mapping[str, str]) -> None:
    """A macvlan/macvtap and its parent's node must be on one machine."""
    for node in nodes.values():
        for iface in node.interfaces.values():
            parent = iface.parent
            if parent is None or parent.node == node.name:
                continue
            a, b = assigned.get(node.name), assigned.get(parent.node)
            if a and b and a != b:
                ck.add(node_ats[node.name].key("machine"),
                       f"node {node.name!r} is on machine {a} but its {iface.kind} {iface.name} has "
                       f"its parent on node {parent.node!r}, on {b}: a {iface.kind} and its parent "
                       "cannot be on two hosts")


__all__ = ["DEFAULT_COMMAND", "LAB_MAX", "MACHINE_KEYS", "check_assigned", "check_groups", "check_machines",
           "lab_name_problem"]
