"""Linux bridges: STP, ageing, forward delay, ports and the forwarding table."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from netvirt._netlink import FdbEntry, Netlink, encode
from netvirt.devices.base import Device

if TYPE_CHECKING:
    from netvirt.scenario.model import InterfaceSpec


class Bridge(Device):
    """A Linux bridge. ``ageing_time`` and ``forward_delay`` are in seconds;
    ``multicast_snooping`` None keeps the kernel's default (on)."""

    kind = "bridge"

    def __init__(
        self,
        name: str,
        *,
        stp: bool = False,
        ageing_time: float | None = None,
        forward_delay: float | None = None,
        multicast_snooping: bool | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.stp = stp
        self.ageing_time = ageing_time
        self.forward_delay = forward_delay
        self.multicast_snooping = multicast_snooping

    @classmethod
    def from_spec(cls, spec: InterfaceSpec, **common: Any) -> Self:
        return cls(spec.name, stp=spec.stp, ageing_time=spec.ageing_time,
                   forward_delay=spec.forward_delay, multicast_snooping=spec.multicast_snooping,
                   **common)

    def _bridge_data(self) -> bytes:
        """IFLA_INFO_DATA of the bridge (the kernel counts centiseconds)."""
        return encode.bridge_data(
            stp=self.stp,
            ageing_cs=None if self.ageing_time is None else int(self.ageing_time * 100),
            forward_delay_cs=None if self.forward_delay is None else int(self.forward_delay * 100),
            mcast_snooping=self.multicast_snooping)

    async def _create_link(self) -> None:
        attrs = self._link_attrs()
        data = self._bridge_data()

        def add(nl: Netlink) -> int:
            index = nl.link_add(self.name, "bridge", index=self.index_hint, data=data, **attrs)
            self.ifindex = index
            self._created = True  # exists now: a configuration failure must delete it
            self._configure(nl, index)
            return index

        await self.netns.nl(add, lambda nl, index: nl.link_del(index))

    async def set_options(self, *, stp: bool | None = None, ageing_time: float | None = None,
                          forward_delay: float | None = None) -> None:
        if stp is not None:
            self.stp = stp
        if ageing_time is not None:
            self.ageing_time = ageing_time
        if forward_delay is not None:
            self.forward_delay = forward_delay
        data = self._bridge_data()
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.link_set(index, kind="bridge", data=data))

    async def attach(self, port: Device | str) -> None:
        """Make ``port`` (a device or an interface name in this namespace) a bridge port."""
        name = port.name if isinstance(port, Device) else port
        index = self.ifindex
        await self.netns.nl(lambda nl: nl.link_set(nl.ifindex(name), master=index))

    async def detach(self, port: Device | str) -> None:
        name = port.name if isinstance(port, Device) else port
        await self.netns.nl(lambda nl: nl.link_set(nl.ifindex(name), master=0))

    async def fdb(self) -> list[FdbEntry]:
        """The bridge's forwarding table (learned and permanent entries)."""
        index = self.ifindex
        return await self.netns.nl(lambda nl: nl.fdb(index))

    async def learned(self, mac: str) -> str | None:
        """The port name on which ``mac`` was learned, or None."""
        mac = mac.lower()
        for e in await self.fdb():
            if e.mac == mac and not e.local:
                return e.port
        return None
