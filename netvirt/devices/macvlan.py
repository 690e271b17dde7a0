"""macvlan children of a parent link, placed in any namespace at creation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from netvirt._netlink import Netlink
from netvirt._netlink import encode as _nlmsg
from netvirt.devices.base import Device, NetnsArg, fresh_ifindex, resolve_netns
from netvirt.errors import UsageError
from netvirt.kinds import MACVLAN_MODES
from netvirt.netns import Namespace

if TYPE_CHECKING:
    from netvirt.scenario.model import InterfaceSpec

MODES = tuple(MACVLAN_MODES)


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

    @classmethod
    def from_spec(cls, spec: InterfaceSpec, **common: Any) -> Self:
        assert spec.parent is not None  # validation requires it
        return cls(spec.name, parent=spec.parent.ifname, mode=spec.mode, **common)

    def _new_index(self) -> int:
        hint, self.index_hint = self.index_hint, 0  # a retry (macvtap) takes a fresh one
        return hint or fresh_ifindex()  # never equal to the parent's (see fresh_ifindex)

    async def _create_link(self) -> None:
        ns = self.netns
        if self._parent_ns is None:  # once, also when a macvtap retries with another ifindex
            if self._parent_netns_arg is None:  # parent defaults to the child's namespace
                self._parent_ns, self._own_parent_handle = ns, False
            else:
                self._parent_ns, self._own_parent_handle = await resolve_netns(self._parent_netns_arg)
        pns = self._parent_ns
        attrs = self._link_attrs()
        new_index = self._new_index()
        data = _nlmsg.macvlan_data(self.mode)
        moved = pns is not ns and pns.name != ns.name
        if moved:
            attrs["ns_fd"] = ns.fileno()

        def add(nl: Netlink) -> int:
            attrs["link"] = nl.ifindex(self.parent)
            return nl.link_add(self.name, self.kind, index=new_index, data=data, **attrs)

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
