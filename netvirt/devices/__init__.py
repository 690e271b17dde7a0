"""Async drivers, one module per kind; the table of kinds is ``netvirt.kinds``.

Each is an async context manager usable on its own in any namespace::

    async with await Namespace.create("demo") as ns, \
            Tun("tun0", netns=ns, addresses=["10.0.0.1/24"]) as tun:
        packet = await tun.read()
"""

from netvirt.devices.base import Device
from netvirt.devices.bridge import Bridge
from netvirt.devices.macvlan import Macvlan
from netvirt.devices.macvtap import Macvtap
from netvirt.devices.tun import Tap, Tun
from netvirt.devices.veth import Veth, VethPeer

__all__ = ["Bridge", "Device", "Macvlan", "Macvtap", "Tap", "Tun", "Veth", "VethPeer"]
