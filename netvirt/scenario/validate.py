"""Validation: a raw scenario structure in, a :class:`Scenario` out, or one
:class:`~netvirt.errors.ScenarioError` listing every problem found.

Order of work: top-level keys and the lab name; each node and its
interfaces; links (which also create the bare veth ends they name); checks
across interfaces (bridge masters, macvlan parents, unlinked veth ends,
duplicate addresses and MACs); routes and sysctls, which need the final
interfaces; and steps (see ``_steps`` for their parameter spellings).
Nothing here touches the kernel: ``netvirt validate`` runs without root.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

from netvirt.errors import ScenarioError
from netvirt.impair.conditions import Conditions, parse_impair
from netvirt.scenario.checker import At, Checker, describe, name_problem, plain_problems
from netvirt.scenario.interfaces import Draft, check_interface, cross_check
from netvirt.scenario.machines import check_assigned, check_groups, check_machines, lab_name_problem
from netvirt.scenario.model import (
    Endpoint,
    ImpairStep,
    InterfaceSpec,
    LinkSpec,
    LinkStep,
    NodeSpec,
    RouteSpec,
    Scenario,
)
from netvirt.scenario.processes import NODE_KEYS as PROCESS_NODE_KEYS
from netvirt.scenario.processes import check_files, check_private, check_processes
from netvirt.scenario.steps import StepChecker

__all__ = ["validate"]


def _located(at: At, path: str) -> At:
    """``path`` (below ``at``) with the file line of its deepest key that has one."""
    rel = path[len(at.path):].lstrip(".")
    cur = at
    for key in rel.split(".") if rel else ():
        if not cur.has(key):
            break
        cur = cur.key(key)
    return At(None, path, cur.line)

TOP_KEYS = ("name", "description", "machines", "nodes", "links", "steps", "hosts")
NODE_KEYS = ("interfaces", "routes", "sysctls", "host", "machine", *PROCESS_NODE_KEYS)
LINK_KEYS = ("endpoints", "mtu", "impair")
ROUTE_KEYS = ("to", "via", "dev")


def validate(raw: Any, source: str | None = None) -> Scenario:
    """Check ``raw`` (from YAML or a Python scenario) and build the Scenario.

    Raises :class:`ScenarioError` with every problem, each carrying its key
    path, its file line (YAML only) and ``source`` as file.
    """
    ck = Checker(source)
    scenario = _Validator(ck).run(raw)
    if ck.problems or scenario is None:
        # file order reads best; problems without a line keep the order found
        raise ScenarioError(sorted(ck.problems, key=lambda p: (p.line is None, p.line or 0)))
    return scenario


class _Validator:
    def __init__(self, ck: Checker) -> None:
        self.ck = ck
        self.drafts: dict[str, dict[str, Draft]] = {}
        self.node_ats: dict[str, At] = {}

    def run(self, raw: Any) -> Scenario | None:
        ck = self.ck
        root = At(raw, "", getattr(raw, "line", None))
        if raw is None:
            ck.add(At(None, "", 1), "the scenario is empty: it needs at least name and nodes")
            return None
        if not plain_problems(ck, root):
            return None  # checked first: no later check meets what it cannot describe
        if not ck.mapping(root, TOP_KEYS, "the scenario", required=("name", "nodes")):
            return None
        name = root.value.get("name")
        problem = name_problem(name, "lab name") if name is not None else None
        if problem:
            ck.add(root.key("name"), problem)
        description = root.value.get("description") or ""
        if not isinstance(description, str):
            ck.add(root.key("description"), "description must be text")
            description = ""
        self._nodes(root.key("nodes"))
        links = self._links(root.key("links"))
        cross_check(ck, self.drafts)
        interfaces = {node: {n: d.spec() for n, d in ifaces.items()}
                      for node, ifaces in self.drafts.items()}
        nodes = {node: self._node_spec(node, at, interfaces[node])
                 for node, at in self.node_ats.items()}
        owners = {a.ip: i.node for ifaces in interfaces.values()
                  for i in ifaces.values() for a in i.addresses}
        steps = StepChecker(ck, interfaces, owners, links, self._base_dir()).check(root.key("steps"))
        controlled = {s.params.endpoint for s in steps if isinstance(s.params, LinkStep | ImpairStep)}
        links = [replace(link, controlled=True) if link.a in controlled or link.b in controlled
                 else link for link in links]
        hosts = root.value.get("hosts", True)
        if not isinstance(hosts, bool):
            ck.add(root.key("hosts"), f"hosts must be true (each node's /etc/hosts names every node) "
                                      f"or false, not {describe(hosts)}")
        machines_at = root.key("machines")
        machines = check_machines(ck, machines_at)
        assigned = check_assigned(ck, machines_at, machines, self.node_ats)
        check_groups(ck, nodes, self.node_ats, assigned)
        if machines_at.value is not None and isinstance(name, str) and not problem:
            long_name = lab_name_problem(name)
            if long_name:
                ck.add(root.key("name"), long_name)
        nodes = {n: replace(spec, machine=assigned.get(n)) for n, spec in nodes.items()}
        for link in links:  # the datapath serves a link inside one machine only
            if link.served and assigned.get(link.a.node) != assigned.get(link.b.node):
                ck.add(At(None, f"{link.place}.impair", link.line),
                       f"{link.a} and {link.b} are on different machines: a link between machines is "
                       "a vxlan, which netvirt's datapath cannot serve (impair and link steps need "
                       "both ends on one machine)")
        return Scenario(name=str(name), description=description, nodes=nodes,
                        links=tuple(links), steps=steps, source=ck.source, machines=machines,
                        hosts=hosts is not False)

    def _base_dir(self) -> Path | None:
        """Where relative paths of the scenario (a Mahimahi trace) start."""
        return Path(self.ck.source).resolve().parent if self.ck.source else None

    # -- nodes -------------------------------------------------------------------------

    def _nodes(self, at: At) -> None:
        ck = self.ck
        if at.value is None:
            return  # missing: reported as required
        if not ck.mapping(at, [k for k in at.value if isinstance(k, str)]
                          if isinstance(at.value, dict) else (), "nodes"):
            return
        if not at.value:
            ck.add(at, "nodes is empty: a scenario needs at least one node")
        hosts = []
        for name, node in at.items():
            problem = name_problem(name, "node name")
            if problem:
                ck.add(node, problem)
                continue
            node = At({} if node.value is None else node.value, node.path, node.line)
            self.node_ats[name] = node
            self.drafts[name] = {}
            if not ck.mapping(node, NODE_KEYS, f"node {name!r}"):
                continue
            if node.has("host") and ck.boolean(node.key("host"), "host"):
                hosts.append(name)
                if len(hosts) > 1:
                    ck.add(node.key("host"), f"only one node may be the host namespace; "
                                             f"{hosts[0]!r} is already")
                # a lab must leave the machine as it found it: netvirt deletes the links it
                # makes there, but will not change (and have to restore) its routes or sysctls
                if isinstance(node.value.get("interfaces"), dict) and "lo" in node.value["interfaces"]:
                    ck.add(node.key("interfaces").key("lo"), "a host node cannot give lo addresses: "
                                                           "that is the machine's own loopback")
                for key in ("routes", "sysctls"):
                    if node.value.get(key):
                        ck.add(node.key(key), f"a host node cannot set {key}: they would change the "
                                              "machine's own namespace beyond the lab; put them in a "
                                              "node of the lab")
            self._interfaces(name, node.key("interfaces"))

    def _interfaces(self, node: str, at: At) -> None:
        ck = self.ck
        if at.value is None:
            return
        if not ck.mapping(at, [k for k in at.value if isinstance(k, str)]
                          if isinstance(at.value, dict) else (), f"interfaces of {node!r}"):
            return
        for name, iface in at.items():
            if not ck.ifname(iface, name):
                continue
            draft = check_interface(ck, node, name, iface)
            self.drafts[node][name] = draft if draft is not None else _broken(node, name, iface)

    def _node_spec(self, name: str, at: At, interfaces: dict[str, InterfaceSpec]) -> NodeSpec:
        value = at.value if isinstance(at.value, dict) else {}
        return NodeSpec(
            name=name,
            interfaces=interfaces,
            routes=self._routes(at.key("routes"), name, interfaces),
            sysctls=self._sysctls(at.key("sysctls")),
            host=value.get("host") is True,
            place=at.path,
            files=check_files(self.ck, at.key("files")),
            private=check_private(self.ck, at.key("private")),
            processes=check_processes(self.ck, at.key("processes"), name),
        )

    # -- links -------------------------------------------------------------------------

    def _links(self, at: At) -> list[LinkSpec]:
        ck = self.ck
        if at.value is None:
            return []
        if not isinstance(at.value, list):
            ck.add(at, f"links must be a list of links such as [left:eth0, right:eth0], not "
                       f"{describe(at.value)}")
            return []
        links = []
        for link in at.elements():
            mtu = None
            if isinstance(link.value, dict):
                if not ck.mapping(link, LINK_KEYS, "a link", required=("endpoints",)):
                    continue
                if link.has("mtu"):
                    mtu = ck.integer(link.key("mtu"), "mtu", 68, 65535)
                ends = link.key("endpoints")
            else:
                ends = link
            if not isinstance(ends.value, list) or len(ends.value) != 2:
                ck.add(ends, "a link joins exactly two endpoints: [NODE:IFNAME, NODE:IFNAME] "
                             "or {endpoints: [NODE:IFNAME, NODE:IFNAME], mtu: N}")
                continue
            a, b = (self._end(e, link.path) for e in ends.elements())
            if a is None or b is None:
                for d in (a, b):  # claimed, though broken: do not report it unlinked too
                    if d is not None:
                        d.link = link.path
                continue
            if a.endpoint == b.endpoint:
                ck.add(link, f"both ends of the link are {a.endpoint}: a veth pair needs two "
                             "different interfaces")
                a.link = link.path
                continue
            for d in (a, b):
                d.link = link.path
                if mtu is not None and d.fields.get("mtu") is None:
                    d.fields["mtu"] = mtu
            impair = self._impair(link, a.endpoint, b.endpoint) if link.has("impair") else None
            links.append(LinkSpec(a.endpoint, b.endpoint, mtu, link.path, link.line, impair=impair))
        return links

    def _impair(self, link: At, a: Endpoint, b: Endpoint) -> dict[str, Conditions]:
        """A link's ``impair:``: netem's keys for both directions or per endpoint (SPEC 7)."""
        at = link.key("impair")
        if at.value is None:
            return {}
        conds, problems = parse_impair(at.value, (str(a), str(b)), at.path, base_dir=self._base_dir())
        for p in problems:  # the line of the key itself when the parser knows it
            self.ck.add(_located(at, p.path), p.message)
        return conds

    def _end(self, at: At, link: str) -> Draft | None:
        ck = self.ck
        try:
            ep = Endpoint.parse(at.value) if isinstance(at.value, str) else None
        except ValueError:
            ep = None
        if ep is None:
            ck.add(at, f"a link endpoint is NODE:IFNAME, e.g. left:eth0; not {describe(at.value)}")
            return None
        if ep.node not in self.drafts:
            ck.add(at, f"node {describe(ep.node)} is not defined under nodes")
            return None
        if not ck.ifname(at, ep.ifname):
            return None
        draft = self.drafts[ep.node].get(ep.ifname)
        if draft is None:
            draft = Draft(ep.node, ep.ifname, "veth", at, declared=False)
            self.drafts[ep.node][ep.ifname] = draft
        elif draft.kind == "":
            return None  # its declaration is broken and reported already
        elif draft.kind != "veth":
            ck.add(at, f"{ep} is a {draft.kind}; a link is a veth pair, so both ends must be "
                       "veth ends (interfaces without kind, or not declared at all)")
            return None
        elif draft.link is not None and draft.link != link:
            ck.add(at, f"{ep} is already an end of {draft.link}: a veth end belongs to one "
                       "link only")
            return None
        return draft

    # -- routes and sysctls ----------------------------------------------------------------

    def _routes(self, at: At, node: str, ifaces: dict[str, InterfaceSpec]) -> tuple[RouteSpec, ...]:
        ck = self.ck
        if at.value is None:
            return ()
        if not isinstance(at.value, list):
            ck.add(at, f"routes must be a list of {{to: CIDR, via: ADDR}} entries, not "
                       f"{describe(at.value)}")
            return ()
        routes = []
        for r in at.elements():
            if not ck.mapping(r, ROUTE_KEYS, "a route", required=("to",)):
                continue
            via = ck.address(r.key("via"), "via") if r.value.get("via") is not None else None
            dev = r.value.get("dev")
            if dev is not None and (not isinstance(dev, str) or dev not in ifaces):
                ck.add(r.key("dev"), f"dev {describe(dev)} is not an interface of node {node!r}")
                dev = None
            if not r.has("via") and not r.has("dev"):
                ck.add(r, "a route needs via (a gateway address), dev (an interface), or both")
            to = self._destination(r.key("to"), via)
            if to is None:
                continue
            if via is not None and via.version != to.version:
                ck.add(r.key("via"), f"gateway {via} is IPv{via.version} but destination {to} "
                                     f"is IPv{to.version}")
            elif via is not None and not self._reachable(via, dev, ifaces, node):
                on = f" on {dev}" if dev else ""
                ck.add(r.key("via"), f"gateway {via} is in no subnet of the addresses of node "
                                     f"{node!r}{on}; the kernel would refuse the route (add "
                                     "an address in its subnet)")
            routes.append(RouteSpec(to, via, dev if isinstance(dev, str) else None, r.path))
        return tuple(routes)

    def _destination(self, at: At, via: Any) -> ipaddress.IPv4Network | \
            ipaddress.IPv6Network | None:
        v = at.value
        if v is None:
            return None
        if v == "default":
            return ipaddress.ip_network("::/0" if via is not None and via.version == 6
                                        else "0.0.0.0/0")
        if isinstance(v, str) and "/" in v:
            try:
                return ipaddress.ip_network(v)
            except ValueError:
                try:
                    net = ipaddress.ip_interface(v).network
                except ValueError:
                    pass
                else:
                    self.ck.add(at, f"destination {v} has host bits set: did you mean {net}?")
                    return None
        self.ck.add(at, f"to must be a network such as 10.9.0.0/16 or fd00:9::/48, or "
                        f"'default'; not {describe(v)}")
        return None

    def _reachable(self, via: Any, dev: Any, ifaces: dict[str, InterfaceSpec], node: str) -> bool:
        value = self.node_ats[node].value
        if via.is_link_local or (isinstance(value, dict) and value.get("host") is True):
            return True
        candidates = [ifaces[dev]] if isinstance(dev, str) and dev in ifaces else ifaces.values()
        return any(via in a.network for i in candidates for a in i.addresses)

    def _sysctls(self, at: At) -> dict[str, str]:
        ck = self.ck
        if at.value is None:
            return {}
        keys = [k for k in at.value if isinstance(k, str)] if isinstance(at.value, dict) else []
        if not ck.mapping(at, keys, "sysctls"):
            return {}
        out = {}
        for key, v in at.items():
            if not isinstance(key, str):
                continue
            if not key.startswith("net.") or any(c.isspace() for c in key) or ".." in key:
                ck.add(v, f"sysctl {describe(key)} is not per network namespace: only net.* keys "
                          "(e.g. net.ipv4.ip_forward) may be set in a node")
            elif isinstance(v.value, bool):
                out[key] = "1" if v.value else "0"
            elif isinstance(v.value, float) and not math.isfinite(v.value):
                ck.add(v, f"sysctl {key} needs a finite value, not {describe(v.value)}")
            elif isinstance(v.value, str | int | float):
                out[key] = str(v.value)
            else:
                ck.add(v, f"sysctl {key} needs a single value, not {describe(v.value)}")
        return out


def _broken(node: str, name: str, at: At) -> Draft:
    """A placeholder for an interface whose declaration was unusable (kind ''):
    it exists for cross references but is not checked further."""
    return Draft(node, name, "", at, declared=True, link="<broken>")

