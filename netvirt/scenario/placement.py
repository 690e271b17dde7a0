"""Where each node of a lab across machines lives (pure): ``machine:``, else placement.

Greedy and deterministic:

* a macvlan/macvtap and its parent stay on one machine (a hard rule: the kernel
  cannot parent across hosts; validation refuses two machines named for them);
  such a group moves as one;
* every machine gets at most ``ceil(nodes / machines)`` nodes where it can
  (balance), and among those the group goes where most of its links already are
  (keep links local), then to the least loaded machine, then in file order;
* groups are taken in the order of their links to nodes placed already (so a
  bridge's ports follow it until its machine is full), and a start (nothing placed
  yet, or a new connected part) is a group with the fewest links: greedy graph
  growing from the periphery, which cuts a chain or a ring in as few places as a
  balanced split allows.

Used by the split (``netvirt.multi.split``) and by ``graph`` (colours by machine).
"""

from __future__ import annotations

import math

from netvirt.errors import Problem, ScenarioError
from netvirt.scenario.model import Scenario

__all__ = ["place"]


def _groups(scenario: Scenario) -> list[list[str]]:
    """Nodes that must share a machine (macvlan parent relations), in file order."""
    parent = {n: n for n in scenario.nodes}
    index = {n: i for i, n in enumerate(scenario.nodes)}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for iface in scenario.interfaces():
        if iface.parent is not None and iface.parent.node != iface.node:
            ra, rb = find(iface.node), find(iface.parent.node)
            if ra != rb:
                first, later = sorted((ra, rb), key=index.__getitem__)
                parent[later] = first
    out: dict[str, list[str]] = {}
    for n in scenario.nodes:
        out.setdefault(find(n), []).append(n)
    return list(out.values())


def place(scenario: Scenario) -> dict[str, str]:
    """node -> machine for every node of a scenario with ``machines:``."""
    machines = list(scenario.machines)
    if not machines:
        raise ValueError("place() needs a scenario with machines")
    assigned = {n: s.machine for n, s in scenario.nodes.items() if s.machine}
    placement: dict[str, str] = {}
    pending: list[list[str]] = []
    for group in _groups(scenario):
        fixed = {assigned[n] for n in group if n in assigned}
        if len(fixed) > 1:
            named = ", ".join(f"{n} on {assigned[n]}" for n in group if n in assigned)
            raise ScenarioError(Problem(f"nodes.{group[0]}.machine", f"nodes {', '.join(group)} must "
                                        f"share a machine (a macvlan and its parent), but: {named}",
                                        None, scenario.source))
        if fixed:
            (m,) = fixed
            placement.update({n: m for n in group})
        else:
            pending.append(group)
    neighbours: dict[str, list[str]] = {n: [] for n in scenario.nodes}
    for link in scenario.links:
        if link.a.node != link.b.node:
            neighbours[link.a.node].append(link.b.node)
            neighbours[link.b.node].append(link.a.node)
    cap = math.ceil(len(scenario.nodes) / len(machines))
    load = {m: 0 for m in machines}
    for m in placement.values():
        load[m] += 1
    order = {n: i for i, n in enumerate(scenario.nodes)}

    def links_to(group: list[str]) -> dict[str, int]:
        count = {m: 0 for m in machines}
        for n in group:
            for other in neighbours[n]:
                if other in placement and other not in group:
                    count[placement[other]] += 1
        return count

    def urgency(g: list[str]) -> tuple[int, int, int]:
        # grow from what is placed; a new start is a peripheral group (fewest links)
        return (-sum(links_to(g).values()), sum(len(neighbours[n]) for n in g), order[g[0]])

    while pending:
        group = min(pending, key=urgency)
        pending.remove(group)
        to = links_to(group)
        fits = [m for m in machines if load[m] + len(group) <= cap] or machines
        best = min(fits, key=lambda m: (-to[m], load[m], machines.index(m)))
        placement.update({n: best for n in group})
        load[best] += len(group)
    return placement
