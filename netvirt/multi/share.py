"""One machine's share of a lab, built on that machine: a Topology plus VXLAN ends.

A share is an ordinary sub-scenario (its nodes, the links between them) under
its own lab name, built by the ordinary builder with the same journal and
rules as a local lab; the interfaces of links that cross machines stay in the
share's nodes without a link, and are made here as VXLAN devices instead of
veth ends: after the links (a bridge they join exists then, and their peers'
bridges on other machines are being made at the same time) and before the
routes (which may go through them). Each VXLAN's UDP socket is in this
process's own namespace, the machine's underlay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netvirt._aio import complete
from netvirt.devices.vxlan import Vxlan
from netvirt.multi._live import Topology
from netvirt.multi._model import NodeSpec, Scenario
from netvirt.multi.split import VxlanEnd
from netvirt.netns import Namespace


class ShareTopology(Topology):
    """``Topology`` of a share: ``vxlans`` are the ends of its crossing links."""

    def __init__(self, scenario: Scenario, vxlans: Iterable[VxlanEnd] = (), **kw: Any) -> None:
        super().__init__(scenario, **kw)
        self.vxlans = tuple(vxlans)
        self._underlay: Namespace | None = None

    async def _make_children(self, spec: NodeSpec) -> None:
        await super()._make_children(spec)
        ends = [e for e in self.vxlans if e.endpoint.node == spec.name]
        if not ends:
            return
        if self._underlay is None:
            self._underlay = await Namespace.host()
        node = self.nodes[spec.name]
        for end in ends:
            iface = self.scenario.interface(end.endpoint)
            common = {**self._common(node, iface), "mtu": end.mtu}
            dev = Vxlan(iface.name, vni=end.vni, local=end.local, remote=end.remote, port=end.port,
                        underlay_netns=self._underlay, **common)
            await self._add(node, iface, dev)

    async def teardown(self) -> None:
        try:
            await super().teardown()
        finally:
            if self._underlay is not None:
                underlay, self._underlay = self._underlay, None
                await complete(underlay.close())


__all__ = ["ShareTopology"]
