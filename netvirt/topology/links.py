"""Links served by netvirt's datapath in a live lab (SPEC.md section 7).

A scenario link with ``impair:`` (or named by a ``link`` / ``impair`` step)
is built as a :class:`netvirt.impair.ImpairedLink`, a tap pair with the names,
addresses, MTU, MAC and bridge master the veth ends would have had, instead of
a veth. The topology owns it: teardown stops its datapath process and closes
the taps (non-persistent: they vanish with their fds, so a SIGKILL of the
lab's process leaves none; the worker dies with it by ``PR_SET_PDEATHSIG``).
``status`` reads ``links.json``, which the lab's process publishes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netvirt.errors import UsageError
from netvirt.impair import End, ImpairedLink, LinkEnd
from netvirt.scenario.model import Endpoint, InterfaceSpec, LinkSpec

if TYPE_CHECKING:
    from netvirt.topology.node import Node

__all__ = ["LINKS_FILE", "find_link", "make_impaired", "publish_links", "read_links"]

LINKS_FILE = "links.json"


def _end(node: Node, iface: InterfaceSpec, link: LinkSpec) -> End:
    return End(node.ns, iface.name, iface.addresses, mtu=iface.mtu or link.mtu, mac=iface.mac,
               master=iface.master, label=str(iface.endpoint), up=iface.up)


def make_impaired(link: LinkSpec, sa: InterfaceSpec, sb: InterfaceSpec, na: Node, nb: Node,
                  alias: str) -> ImpairedLink:
    conds = link.impair or {}
    return ImpairedLink(_end(na, sa, link), _end(nb, sb, link),
                        {0: conds.get(str(link.a)), 1: conds.get(str(link.b))},
                        alias=alias, name=f"{link.a}--{link.b}")


def find_link(links: dict[str, ImpairedLink], plain: list[LinkSpec], endpoint: str) -> LinkEnd:
    """The live link of ``endpoint`` seen from that end (what ``topo.link()`` returns)."""
    try:
        ep = Endpoint.parse(endpoint)
    except ValueError:
        raise UsageError(f"{endpoint!r} is not NODE:IFNAME") from None
    link = links.get(str(ep))
    if link is not None:
        return link.end(str(ep))
    if any(spec.has(ep) for spec in plain):
        raise UsageError(f"{ep} is an end of a plain veth link: give that link an impair: map "
                         "(impair: {} for none yet) so netvirt's datapath serves it")
    raise UsageError(f"{ep} is not an end of any link of this lab")


def publish_links(state_dir: Path, links: dict[str, ImpairedLink]) -> None:
    data: dict[str, Any] = {}
    for link in {id(v): v for v in links.values()}.values():
        try:
            data[link.name] = link.stats()
        except Exception as exc:  # a dead datapath is reported, not raised
            data[link.name] = {"backend": link.backend, "error": str(exc)}
    tmp = state_dir / f"{LINKS_FILE}.tmp"
    tmp.write_text(json.dumps(data))
    tmp.replace(state_dir / LINKS_FILE)


def read_links(state_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((state_dir / LINKS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data
