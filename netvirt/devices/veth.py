"""veth pairs whose two ends are created directly in their namespaces.

One RTM_NEWLINK carries both ends (``IFLA_NET_NS_FD`` on the peer), so there
is never a moment where an end sits in the wrong namespace: a failed create
leaves nothing, and deleting either end deletes the pair.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from netvirt._netlink import Netlink
from netvirt.devices.base import (
    DEFAULT_ALIAS,
    Device,
    IPInterface,
    NetnsArg,
    fresh_ifindex,
    resolve_netns,
)
from netvirt.netns import Namespace


class VethPeer(Device):
    """The far end of a :class:`Veth`: configured with the pair, never created alone."""

    kind = "veth"

    async def _create_link(self) -> None:  # pragma: no cover - created by Veth
        raise RuntimeError("a veth peer is created by its Veth")

    async def _delete(self) -> None:
        """Deleting the pair is the Veth's job."""


class Veth(Device):
    """A veth pair: ``name`` in ``netns``, ``peer`` in ``peer_netns``."""

    kind = "veth"

    def __init__(
        self,
        name: str,
        peer: str,
        *,
        netns: NetnsArg = None,
        peer_netns: NetnsArg = None,
        addresses: Iterable[str | IPInterface] = (),
        peer_addresses: Iterable[str | IPInterface] = (),
        mtu: int | None = None,
        mac: str | None = None,
        peer_mac: str | None = None,
        master: str | None = None,
        peer_master: str | None = None,
        up: bool = True,
        peer_up: bool = True,
        alias: str = DEFAULT_ALIAS,
    ) -> None:
        super().__init__(name, netns=netns, addresses=addresses, mtu=mtu, mac=mac, up=up,
                         master=master, alias=alias)
        self.peer = VethPeer(peer, netns=peer_netns, addresses=peer_addresses, mtu=mtu,
                             mac=peer_mac, up=peer_up, master=peer_master, alias=alias)

    async def _create_link(self) -> None:
        ns = self.netns
        peer = self.peer
        peer._ns, peer._own_ns_handle = await resolve_netns(peer._netns_arg)
        pns: Namespace = peer._ns
        peer_attrs: dict[str, Any] = {"ifname": peer.name, **peer._link_attrs()}
        same = pns is ns or (pns.name == ns.name)
        if not same:
            peer_attrs["net_ns_fd"] = pns.fileno()
        attrs = {**self._link_attrs(), "index": fresh_ifindex()}  # never equal to the peer's

        def add(nl: Netlink) -> int:
            return nl.link_add(self.name, "veth", peer=peer_attrs, **attrs)

        self.ifindex = await ns.nl(add, lambda nl, index: nl.link_del(index))
        self._created = peer._created = True  # exists now: a configuration failure deletes it

        def configure_a(nl: Netlink) -> int:
            self._configure(nl, self.ifindex)
            return nl.ifindex(peer.name) if same else 0

        def configure_b(nl: Netlink) -> None:
            peer.ifindex = nl.ifindex(peer.name)
            peer._configure(nl, peer.ifindex)

        if same:
            await ns.nl(configure_a)
            await ns.nl(configure_b)
        else:
            import asyncio

            # the two ends live in two namespaces: configure both at once, and let both
            # finish before raising, so the delete that follows a failure races nothing
            results = await asyncio.gather(ns.nl(configure_a), pns.nl(configure_b),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, BaseException):
                    raise r

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.peer.aclose()
