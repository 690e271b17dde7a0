"""VXLAN devices: one end of a point-to-point tunnel, its UDP socket in an underlay namespace.

Theory of operation: a VXLAN device sends and receives its UDP datagrams in
the namespace it was *created* in (``vxlan->net``), wherever the device
itself lives afterwards. So the device is created by a netlink socket of the
*underlay* namespace (the machine's own, by default) with ``IFLA_NET_NS_FD``
naming the node's namespace in the same message: the device never exists in
the underlay namespace, its datagrams leave from there. When the node's
namespace goes, the device goes with it; when the underlay namespace goes, the
kernel deletes every VXLAN whose sockets were there (``vxlan_exit_batch_rtnl``).

The device has one default remote (``IFLA_VXLAN_GROUP`` with a unicast
address, as ``ip link ... remote`` sends it) and learns nothing: every frame
goes to that peer. The kernel refuses a second VXLAN with the same VNI and UDP
port in one underlay namespace (``EEXIST``), whatever the local address.

Without a lower device the kernel does not derive the MTU from the underlay
(it stays 1500, max 65535): the creator sets it so that inner frames plus the
encapsulation fit the underlay (50 bytes over IPv4, 70 over IPv6).
"""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

from netvirt._netlink import Netlink
from netvirt._netlink import encode as _nlmsg
from netvirt.devices.base import Device, NetnsArg, fresh_ifindex, resolve_netns
from netvirt.errors import NameTakenError, UsageError
from netvirt.netns import Namespace

#: IANA's VXLAN port, the device's default (labs across machines use their own: see
#: ``netvirt.multi.split.VXLAN_PORT``)
VXLAN_PORT = 4789

IFLA_VXLAN_ID, IFLA_VXLAN_GROUP, IFLA_VXLAN_LOCAL = 1, 2, 4
IFLA_VXLAN_LEARNING = 7
IFLA_VXLAN_PORT = 15
IFLA_VXLAN_GROUP6, IFLA_VXLAN_LOCAL6 = 16, 17
VNI_MAX = (1 << 24) - 1

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def vxlan_data(vni: int, local: IPAddress, remote: IPAddress, port: int = VXLAN_PORT,
               learning: bool = False) -> bytes:
    """IFLA_INFO_DATA of a point-to-point VXLAN (pure; see linux/if_link.h)."""
    if not 0 < vni <= VNI_MAX:
        raise UsageError(f"VNI {vni} is out of range 1..{VNI_MAX}")
    if local.version != remote.version:
        raise UsageError(f"VXLAN local {local} and remote {remote} are of different IP versions")
    v6 = local.version == 6
    out = _nlmsg.attr_u32(IFLA_VXLAN_ID, vni)
    out += _nlmsg.attr(IFLA_VXLAN_GROUP6 if v6 else IFLA_VXLAN_GROUP, remote.packed)
    out += _nlmsg.attr(IFLA_VXLAN_LOCAL6 if v6 else IFLA_VXLAN_LOCAL, local.packed)
    out += _nlmsg.attr(IFLA_VXLAN_LEARNING, bytes([int(learning)]))
    out += _nlmsg.attr(IFLA_VXLAN_PORT, struct.pack("!H", port))  # network byte order
    return out


class Vxlan(Device):
    """One end of a point-to-point VXLAN: ``name`` in ``netns``, its UDP socket in
    ``underlay_netns`` (default: the host namespace of this process), from ``local``
    to ``remote`` on UDP ``port``, carrying ``vni``."""

    kind = "vxlan"

    def __init__(self, name: str, *, vni: int, local: str | IPAddress, remote: str | IPAddress,
                 port: int = VXLAN_PORT, underlay_netns: NetnsArg = None, learning: bool = False,
                 **kw: Any) -> None:
        super().__init__(name, **kw)
        self.vni = vni
        self.local = ipaddress.ip_address(local)
        self.remote = ipaddress.ip_address(remote)
        self.port = port
        self.learning = learning
        self._data = vxlan_data(vni, self.local, self.remote, port, learning)  # checks, no I/O
        self._underlay_arg = underlay_netns
        self._underlay: Namespace | None = None
        self._own_underlay = False

    async def _create_link(self) -> None:
        ns = self.netns
        self._underlay, self._own_underlay = await resolve_netns(self._underlay_arg)
        ul = self._underlay
        moved = ul is not ns and ul.name != ns.name
        index = fresh_ifindex()
        attrs = self._link_attrs()
        if moved:
            attrs["ns_fd"] = ns.fileno()

        def add(nl: Netlink) -> int:
            try:
                nl.link_add(self.name, "vxlan", index=index, data=self._data, **attrs)
            except NameTakenError:
                raise NameTakenError(
                    f"create vxlan {self.name!r} in {ns.label}: the name is taken there, or VNI "
                    f"{self.vni} on UDP port {self.port} is in use in the underlay namespace "
                    f"{ul.label} (another lab?); choose another lab name or free the VNI") from None
            return index

        def orphan(nl: Netlink, index: int) -> None:
            if not moved:
                nl.link_del(index)

        await ul.nl(add, orphan)
        self.ifindex = index
        self._created = True
        await ns.nl(lambda nl: self._configure(nl, index))

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            if self._own_underlay and self._underlay is not None:
                await self._underlay.close()


__all__ = ["VNI_MAX", "VXLAN_PORT", "Vxlan", "vxlan_data"]
