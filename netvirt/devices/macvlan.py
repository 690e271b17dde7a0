"""macvlan children of a parent link, placed in any namespace at creation."""

from __future__ import annotations

from typing import Any

from netvirt import _nlmsg
from netvirt._netlink import Netlink
from netvirt.devices.base import Device, NetnsArg, fresh_ifindex, resolve_netns
from netvirt.errors import UsageError
from netvirt.netns import Namespace

MODES = tuple(_nlmsg.MACVLAN_MODES)


class Macvlan(Device):
    """A macvlan child of ``parent`` (a name in ``parent_netns``), living in ``netns``."""

    kind = "macvlan"

    def __init__(self, name: str, *, parent: str, parent_netns: NetnsArg = None,
                 mode: str = "bridge", **kw: Any) -> None:
        super().__init__(name, **kw)
        if mode not in MODES:
            raise UsageError(f"{name}: macvlan mode {mode!r} is not one of {', '.join(MODES)}")
        self.parent = parent
        self.mode = mode
        self._parent_netns_arg = parent_netns
        self._parent_ns: Namespace | None = None
        self._own_parent_handle = False

    def _extra_attrs(self) -> dict[str, Any]:
        return {"index": fresh_ifindex()}  # never equal to the parent's (see fresh_ifindex)

    async def _create_link(self) -> None:
        ns = self.netns
        if self._parent_ns is None:  # once, also when a macvtap retries with another ifindex
            if self._parent_netns_arg is None:  # parent defaults to the child's namespace
                self._parent_ns, self._own_parent_handle = ns, False
            else:
                self._parent_ns, self._own_parent_handle = await resolve_netns(self._parent_netns_arg)
        pns = self._parent_ns
        attrs: dict[str, Any] = {**self._link_attrs(), **self._extra_attrs(),
                                 f"{self.kind}_mode": self.mode}
        moved = pns is not ns and pns.name != ns.name
        if moved:
            attrs["net_ns_fd"] = ns.fileno()

        def add(nl: Netlink) -> int:
            attrs["link"] = nl.ifindex(self.parent)
            return nl.link_add(self.name, self.kind, **attrs)

        def orphan(nl: Netlink, index: int) -> None:
            if index:  # not moved: it is in the parent's namespace, which is this thread's
                nl.link_del(index)

        index = await pns.nl(add, orphan)

        def configure(nl: Netlink) -> None:
            self.ifindex = index or nl.ifindex(self.name)
            self._configure(nl, self.ifindex)

        self._created = True
        await ns.nl(configure)

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            if self._own_parent_handle and self._parent_ns is not None:
                await self._parent_ns.close()
