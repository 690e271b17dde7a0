"""macvtap: a macvlan whose frames a program reads and writes on /dev/tapN.

Theory of operation: the kernel names the character
device ``/dev/tap<ifindex>``, and /dev is global while ifindexes are per
namespace. A macvtap created inside a namespace with a small ifindex can
collide with one in another namespace: only one of them gets the node. We
therefore create every macvtap with an explicit random ifindex from a high
range, checked to have no ``/dev/tapN`` yet, so the node that appears is
ours. The fd starts with the 10-byte vnet header on; unless ``vnet_hdr`` is
asked for we switch it off and exchange plain Ethernet frames.
"""

from __future__ import annotations

import errno
import os
import random
from typing import Any

from netvirt._netlink import translate
from netvirt.devices import _tuntap
from netvirt.devices.macvlan import Macvlan
from netvirt.errors import KernelError
from netvirt.packetio import PacketPort, PacketQueues

_INDEX_RANGE = (1 << 20, 1 << 30)


def _free_index() -> int:
    while True:
        index = random.randrange(*_INDEX_RANGE)
        if not os.path.exists(f"/dev/tap{index}"):
            return index


class Macvtap(PacketQueues, Macvlan):
    kind = "macvtap"

    def __init__(self, name: str, *, vnet_hdr: bool = False, **kw: Any) -> None:
        super().__init__(name, **kw)
        self.vnet_hdr = vnet_hdr
        self.queues: list[PacketPort] = []
        self._index = _free_index()

    def _new_index(self) -> int:
        return self._index

    @property
    def chardev(self) -> str:
        return f"/dev/tap{self.ifindex}"

    async def _create_link(self) -> None:
        for attempt in range(3):
            try:
                await super()._create_link()
                break
            except KernelError as exc:  # EBUSY: that explicit ifindex is taken there
                if exc.errno != errno.EBUSY or self._created or attempt == 2:
                    raise
                self._index = _free_index()
        self.queues = [self._open_queue()]

    def _open_queue(self) -> PacketPort:
        with translate(f"open {self.chardev}", device=self.name, netns=self.netns.name):
            fd = os.open(self.chardev, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not self.vnet_hdr:
                _tuntap.set_plain_frames(fd, self.name)
        except BaseException:
            os.close(fd)
            raise
        return PacketPort(fd, "ether", vnet_hdr=self.vnet_hdr, name=self.name)

    def add_queue(self) -> PacketPort:
        """Open /dev/tapN once more: a second queue."""
        q = self._open_queue()
        self.queues.append(q)
        return q

    def _release_fds(self) -> None:
        self._close_queues()

    async def _delete(self) -> None:
        self._release_fds()
        await super()._delete()
