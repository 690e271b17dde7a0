"""veth pairs whose two ends are created directly in their namespaces.

One RTM_NEWLINK carries both ends (``IFLA_NET_NS_FD`` on the peer), so there
is never a moment where an end sits in the wrong namespace: a failed create
leaves nothing, and deleting either end deletes the pair.
"""

from __future__ import annotations

from collections.abc import Iterable

from netvirt._netlink import Netlink, Req
from netvirt._netlink import encode as _nlmsg
from netvirt.devices.base import (
    DEFAULT_ALIAS,
    Device,
    IPInterface,
    NetnsArg,
    fresh_ifindex,
    resolve_netns,
)


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
        ipv6_linklocal: bool | None = None,
    ) -> None:
        super().__init__(name, netns=netns, addresses=addresses, mtu=mtu, mac=mac, up=up,
                         master=master, alias=alias, ipv6_linklocal=ipv6_linklocal)
        self.peer = VethPeer(peer, netns=peer_netns, addresses=peer_addresses, mtu=mtu,
                             mac=peer_mac, up=peer_up, master=peer_master, alias=alias,
                             ipv6_linklocal=ipv6_linklocal)

    async def _create_link(self) -> None:
        ns = self.netns
        peer = self.peer
        peer._ns, peer._own_ns_handle = await resolve_netns(peer._netns_arg)
        self.ifindex = await ns.nl(self.add_here, lambda nl, index: nl.link_del(index))
        self._created = peer._created = True  # exists now: a configuration failure deletes it
        await peer.netns.nl(lambda nl: nl.request(self.peer_requests(nl)))

    def add_here(self, nl: Netlink) -> int:
        """Create the pair and configure this end, over ``nl`` (a socket in this end's
        namespace, on the thread that owns it); return this end's ifindex. The peer's
        configuration is :meth:`peer_requests`, sent in the peer's namespace.

        For bulk builders (``netvirt.topology.bulk``); :meth:`create` does both itself.
        """
        ns, peer = self.netns, self.peer
        pns = peer.netns
        same = pns is ns or (pns.name == ns.name)
        # explicit indexes from the high range: never equal (see fresh_ifindex), and
        # the peer's is known without a lookup
        index = self.index_hint or fresh_ifindex()
        peer.ifindex = peer.index_hint or fresh_ifindex()
        # this end can come up in the creating message; the peer cannot (veth_open()
        # of the peer runs before the two ends know each other: ENOTCONN)
        up_now = self.up and self.ipv6_linklocal
        done = frozenset({"mtu", "mac", "master"} | ({"up"} if up_now else set()))
        peer_data = _nlmsg.veth_peer(index=peer.ifindex, ifname=peer.name, mtu=peer.mtu,
                                     mac=peer.mac, ns_fd=None if same else pns.fileno())
        master = (self.master_index or nl.ifindex(self.master)) if self.master else None
        msg = _nlmsg.new_link("veth", index=index, up=up_now, data=peer_data, ifname=self.name,
                              mtu=self.mtu, mac=self.mac, master=master)
        # create and configure this end in one batch; if a request after the
        # creation failed, the pair exists: delete it before raising
        try:
            nl.request([Req(msg, "create veth", self.name), *self._config_reqs(nl, index, done)])
        except Exception as exc:
            if getattr(exc, "batch_index", 0) > 0:
                nl.link_del(index)
            raise
        return index

    def peer_requests(self, nl: Netlink) -> list[Req]:
        """The requests that finish the peer end (after :meth:`add_here`), for ``nl`` in
        the peer's namespace."""
        return self.peer._config_reqs(nl, self.peer.ifindex, frozenset({"mtu", "mac"}))

    async def _after_create(self) -> None:
        self.peer.wait_port = self.wait_port
        await super()._after_create()
        await self.peer._after_create()  # the peer end may be a bridge port too

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.peer.aclose()
