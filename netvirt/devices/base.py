"""What every netvirt device shares: its namespace, its lifecycle, its addresses.

Lifecycle contract (trio-style): the constructor does no I/O; ``await
dev.create()`` or ``async with dev`` creates the kernel object and applies
its configuration in batches of netlink requests on the namespace's strand
(one or two hops per namespace involved); if anything after the creation
fails, the object is deleted before the first error is raised.
``await dev.aclose()`` deletes what this object created (never anything
else), is safe to call twice, and completes even when the calling task is
being cancelled.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Self

from netvirt._aio import complete, unwind
from netvirt._netlink import LinkFields, LinkInfo, Netlink, Req
from netvirt._netlink import encode as _nlmsg
from netvirt.errors import UsageError
from netvirt.kinds import ifname_problem
from netvirt.netns import Namespace

if TYPE_CHECKING:
    from netvirt.scenario.model import InterfaceSpec

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
NetnsArg = Namespace | str | None
DEFAULT_ALIAS = "netvirt"


#: Explicit ifindexes come from a high range that automatic numbering never reaches.
_next_ifindex = random.randrange(1 << 20, 1 << 29)


def fresh_ifindex() -> int:
    """An ifindex for a link whose index must differ from its peer's or parent's.

    Theory of operation: the kernel handles a carrier change at once only for
    "urgent" links, and a veth or macvlan whose ifindex equals its peer's or
    parent's ifindex (``dev_get_iflink() == ifindex``, common when two fresh
    namespaces both number from 1) is not urgent: its bridge port stays
    *disabled* and its first packets are dropped for up to a second
    (``linkwatch_urgent_event()``). An explicit index from this range can
    never equal an automatic one.
    """
    global _next_ifindex
    _next_ifindex += 1
    return _next_ifindex


def check_ifname(name: str) -> str:
    """Return ``name`` if the kernel would accept it as an interface name."""
    problem = ifname_problem(name)
    if problem:
        raise UsageError(f"invalid interface name {name!r}: it {problem}")
    return name


def parse_ifaces(addresses: Iterable[str | IPInterface]) -> tuple[IPInterface, ...]:
    out = []
    for a in addresses:
        if isinstance(a, str) and "/" not in a:
            raise UsageError(f"address {a!r} needs a prefix length, e.g. {a}/24")
        out.append(ipaddress.ip_interface(a))
    return tuple(out)


async def resolve_netns(netns: NetnsArg) -> tuple[Namespace, bool]:
    """(namespace, whether we opened it and must close it)."""
    if isinstance(netns, Namespace):
        return netns, False
    if netns is None:
        return await Namespace.host(), True
    return await Namespace.borrow(netns), True


class Device:
    """One netdev in one namespace. Subclasses implement :meth:`_create_link`."""

    kind: ClassVar[str] = ""
    #: default for ``ipv6_linklocal``: tun devices skip it (no stray RS packets)
    default_ipv6_ll: ClassVar[bool] = True

    def __init__(
        self,
        name: str,
        *,
        netns: NetnsArg = None,
        addresses: Iterable[str | IPInterface] = (),
        mtu: int | None = None,
        mac: str | None = None,
        up: bool = True,
        master: str | None = None,
        alias: str = DEFAULT_ALIAS,
        ipv6_linklocal: bool | None = None,
    ) -> None:
        self.name = check_ifname(name)
        self._netns_arg = netns
        self.addresses = parse_ifaces(addresses)
        self.mtu = mtu
        self.mac = mac.lower() if mac else None
        self.up = up
        self.master = master
        #: the master's ifindex when the creator knows it (saves a lookup per port)
        self.master_index: int | None = None
        #: wait in create() until a bridge port is enabled (a builder settles all at once)
        self.wait_port = True
        #: the ifindex to create the link with (0: the kernel's or the kind's choice). An
        #: owner that journals the index before the create (the topology does, in the host
        #: namespace) can then tell this link from any other of its name after a kill -9.
        self.index_hint = 0
        self.alias = alias
        self.ipv6_linklocal = self.default_ipv6_ll if ipv6_linklocal is None else ipv6_linklocal
        self.ifindex = 0
        self._ns: Namespace | None = None
        self._own_ns_handle = False
        self._created = False
        self._closed = False

    def __repr__(self) -> str:
        where = self._ns.label if self._ns else self._netns_arg
        return f"<{type(self).__name__} {self.name} in {where} ifindex={self.ifindex}>"

    @property
    def netns(self) -> Namespace:
        if self._ns is None:
            raise RuntimeError(f"{self.name}: not created yet")
        return self._ns

    def bind_netns(self, ns: Namespace) -> None:
        """Live in ``ns`` (not opened here, never closed here) without :meth:`create`'s
        await: for a bulk builder that creates the link itself (``netvirt.topology.bulk``)."""
        self._ns, self._own_ns_handle = ns, False

    # -- lifecycle -------------------------------------------------------
    async def create(self) -> Self:
        if self._created:
            return self
        self._ns, self._own_ns_handle = await resolve_netns(self._netns_arg)
        try:
            await self._create_link()
            self._created = True
            await self._after_create()
        except BaseException as exc:
            await unwind(exc, self.aclose())
            raise
        return self

    async def _create_link(self) -> None:
        raise NotImplementedError

    async def _after_create(self) -> None:
        """Runs after configuration: a bridge port waits until the bridge enabled it."""
        if self.master and self.up and self.wait_port:
            index = self.ifindex
            await self.netns.nl(lambda nl: nl.wait_port_enabled(index))

    async def aclose(self) -> None:
        """Delete what this object created. Safe twice; completes under cancellation."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._created:
                await complete(self._delete())
        finally:
            if self._own_ns_handle and self._ns is not None:
                await complete(self._ns.close())

    async def _delete(self) -> None:
        index = self.ifindex
        if index:
            await self.netns.nl(lambda nl: nl.link_del(index))

    def release(self) -> None:
        """Close our fds but leave the kernel object: its namespace is being removed."""
        self._closed = True
        self._release_fds()

    def _release_fds(self) -> None:
        """Hook: close packet fds (tun, tap, macvtap)."""

    @classmethod
    def from_spec(cls, spec: InterfaceSpec, **common: Any) -> Self:
        """The driver for a scenario's interface; ``common`` holds the builder's netns,
        addresses, mtu, mac, up, master and alias (and, for a child kind, parent_netns)."""
        return cls(spec.name, **common)

    async def __aenter__(self) -> Self:
        return await self.create()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- configuration (all on the namespace's worker thread) ---------------
    def _link_attrs(self) -> LinkFields:
        """Attributes that can go into the creating RTM_NEWLINK itself."""
        attrs: LinkFields = {"alias": self.alias}
        if self.mtu:
            attrs["mtu"] = self.mtu
        if self.mac:
            attrs["mac"] = self.mac
        return attrs

    def _config_reqs(self, nl: Netlink, index: int, done: frozenset[str] = frozenset()) -> list[Req]:
        """The requests that finish a new link's configuration, as one batch.

        ``done`` names what the creating message already set (``mtu``, ``mac``,
        ``master``, ``up``). The alias always needs its own request: the kernel
        ignores IFLA_IFALIAS in a creating RTM_NEWLINK. addrgenmode goes before
        "up" (once up, the kernel has made the link-local address).
        """
        attrs: LinkFields = {}
        if self.alias:
            attrs["alias"] = self.alias
        if self.mtu and "mtu" not in done:
            attrs["mtu"] = self.mtu
        if self.mac and "mac" not in done:
            attrs["mac"] = self.mac
        if self.master and "master" not in done:
            attrs["master"] = self.master_index or nl.ifindex(self.master)
        if not self.ipv6_linklocal and not (self.mtu and self.mtu < 1280):
            # below 1280 the kernel drops the link's IPv6 state: no addrgenmode to set (EINVAL)
            attrs["no_ipv6_ll"] = True
        reqs = []
        if attrs:
            reqs.append(Req(_nlmsg.set_link(index=index, **attrs),
                            "configure link " + ",".join(sorted(attrs)), self.name))
        if self.up and "up" not in done:
            reqs.append(Req(_nlmsg.set_link(index=index, up=True), "set link up", self.name))
        reqs += [Req(_nlmsg.new_addr(index, a), f"add address {a}", self.name) for a in self.addresses]
        return reqs

    def _configure(self, nl: Netlink, index: int, *, in_add: bool = True) -> None:
        """Apply alias, master, addrgenmode, up and addresses (plus mtu/mac unless set at add)."""
        nl.request(self._config_reqs(nl, index, frozenset({"mtu", "mac"}) if in_add else frozenset()))

    # -- operations ------------------------------------------------------
    async def info(self) -> LinkInfo:
        index = self.ifindex
        return await self.netns.nl(lambda nl: nl.link(index))

    async def set_up(self, up: bool = True) -> None:
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.link_set(index, up=up))

    async def set_down(self) -> None:
        await self.set_up(False)

    async def set_mtu(self, mtu: int) -> None:
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.link_set(index, mtu=mtu))
        self.mtu = mtu

    async def set_mac(self, mac: str) -> None:
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.link_set(index, mac=mac))
        self.mac = mac.lower()

    async def add_address(self, address: str | IPInterface) -> None:
        (iface,) = parse_ifaces([address])
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.addr_add(index, iface))
        self.addresses += (iface,)

    async def add_route(self, to: str, via: str | None = None) -> None:
        """Route ``to`` through this device (optionally via a gateway)."""
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.route_add(to, via=via, oif=index))

    async def set_master(self, bridge: str | None) -> None:
        index = self.ifindex

        def do(nl: Netlink) -> None:
            nl.link_set(index, master=nl.ifindex(bridge) if bridge else 0)

        await self.netns.nl(do)
        self.master = bridge
