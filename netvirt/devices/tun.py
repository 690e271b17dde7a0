"""TUN and TAP devices opened by fd, with async packet I/O.

By default the device is not persistent: it lives exactly as long as netvirt
holds its queue fds, so even a SIGKILL leaves nothing behind. ``persist=True``
(with ``owner``/``group``) leaves a device for an external program such as
qemu: netvirt then closes its fds and deletes the device by netlink.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar, Self

from netvirt._netlink import Netlink
from netvirt.devices import _tuntap
from netvirt.devices.base import Device
from netvirt.packetio import Framing, PacketPort, PacketQueues

if TYPE_CHECKING:
    from netvirt.scenario.model import InterfaceSpec


class Tun(PacketQueues, Device):
    """A TUN device (IP packets, IFF_NO_PI). ``queues`` > 1 gives multi-queue."""

    kind = "tun"
    default_ipv6_ll = False
    _tap: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        queues: int = 1,
        vnet_hdr: bool = False,
        offload: bool = False,
        persist: bool = False,
        owner: int | None = None,
        group: int | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        if not 1 <= queues <= 64:
            raise ValueError("queues must be 1..64")
        self.n_queues = queues
        self.vnet_hdr = vnet_hdr or offload
        self.offload = offload
        self.persist = persist
        self.owner = owner
        self.group = group
        self.queues: list[PacketPort] = []

    @classmethod
    def from_spec(cls, spec: InterfaceSpec, **common: Any) -> Self:
        return cls(spec.name, queues=spec.queues, offload=spec.offload, persist=spec.persist,
                   owner=spec.owner, group=spec.group, **common)

    async def _create_link(self) -> None:
        ns = self.netns

        def create(nl: Netlink) -> list[int]:
            fds = _tuntap.open_queues(self.name, tap=self._tap, queues=self.n_queues,
                                      vnet_hdr=self.vnet_hdr, offload=self.offload, netns=ns.name,
                                      index=self.index_hint)
            try:
                if self.persist:
                    _tuntap.make_persistent(fds[0], self.name, owner=self.owner,
                                            group=self.group, netns=ns.name)
                self.ifindex = nl.ifindex(self.name)
            except BaseException:
                for fd in fds:
                    os.close(fd)
                if self.persist:  # it outlives its fds: delete it (by name if need be)
                    index = self.ifindex or nl.find(self.name)
                    if index:
                        nl.link_del(index)
                raise
            return fds

        def orphan(nl: Netlink, fds: list[int]) -> None:
            for fd in fds:
                os.close(fd)
            if self.persist:
                nl.link_del(nl.ifindex(self.name))

        fds = await ns.nl(create, orphan)
        framing: Framing = "ether" if self._tap else "ip"
        self.queues = [PacketPort(fd, framing, vnet_hdr=self.vnet_hdr, name=self.name) for fd in fds]
        for queue in self.queues:  # a program on the device serves every queue
            queue.queues = self.queues
        self._created = True  # exists now: a configuration failure closes/deletes it
        if self.persist:  # left for an external program: drop our queues
            self._close_queues()
        index = self.ifindex
        await ns.nl(lambda nl: self._configure(nl, index, in_add=False))  # mtu, mac, alias: one batch

    def _release_fds(self) -> None:
        self._close_queues()

    async def _delete(self) -> None:
        self._close_queues()  # a non-persistent device vanishes with its last fd
        if self.persist:
            await super()._delete()

    def set_queue_enabled(self, queue: int, enabled: bool) -> None:
        """Detach (False) or re-attach (True) one queue from the flow spreading."""
        _tuntap.set_queue_enabled(self.queues[queue].fileno(), enabled)


class Tap(Tun):
    """A TAP device (Ethernet frames): what qemu-kvm puts on a bridge for a guest."""

    kind = "tap"
    default_ipv6_ll = True
    _tap = True
