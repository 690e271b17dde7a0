"""The one table of device kinds: pure data, read by validation, the builder and the graph.

Per kind: the scenario keys it takes beyond the common ones, whether a program can
run on its fd, its graph shapes, the build phase that creates it, and its driver
class, named as ``module:Class`` and imported only when a build asks for it (so
validation never imports the devices, the netlink seam or pyroute2).

Adding a kind: one :class:`Kind` entry here, plus its driver module in
``netvirt/devices/`` (a ``Device`` subclass with ``from_spec``); the checks of
new keys go to ``netvirt/scenario/interfaces.py``.

Also here, as the single definition used by both validation and the drivers:
the interface-name rule of the kernel (:func:`ifname_problem`) and the macvlan
modes. Whether the running kernel has a kind is not guessed here: a build on a
kernel without it fails with one clear ``UnsupportedError`` ("not supported by
this kernel") when the first such device is created.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from netvirt.devices.base import Device

__all__ = ["BR_MAX_PORTS", "COMMON_KEYS", "IFNAMSIZ", "IPV6_MIN_MTU", "KINDS", "MACVLAN_MODES",
           "Kind", "ifname_problem", "kind"]

Phase = Literal["local", "link", "child"]


@dataclass(frozen=True)
class Kind:
    """One device kind as scenario files name it."""

    name: str
    keys: tuple[str, ...]  # keys beyond COMMON_KEYS
    program: bool  # a program may run on its fd
    ethernet: bool  # carries Ethernet frames (has a MAC, may be a bridge port or macvlan parent)
    phase: Phase  # local: in its node; link: a veth pair; child: on a parent link
    driver: str  # "module:Class", imported lazily by driver_class()
    dot_shape: str  # graphviz node shape
    mermaid: tuple[str, str]  # mermaid node brackets
    master: bool = False  # other interfaces of its node may name it as master (built first)
    mtu: tuple[int, int] = (68, 65535)  # the kernel's min_mtu, max_mtu for the kind

    def driver_class(self) -> type[Device]:
        module, _, cls = self.driver.partition(":")
        found: type[Device] = getattr(importlib.import_module(module), cls)
        return found


COMMON_KEYS = ("kind", "addresses", "mtu", "mac", "up", "master")
_TUNTAP = ("program", "queues", "offload", "persist", "owner", "group")

#: kind name -> Kind (in the order messages list them)
KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("veth", ("ipv6_linklocal",), False, True, "link", "netvirt.devices.veth:Veth", "ellipse",
         ('(["', '"])')),
    Kind("bridge", ("stp", "ageing_time", "forward_delay", "multicast_snooping"), False, True, "local",
         "netvirt.devices.bridge:Bridge", "box3d", ('[["', '"]]'), master=True),
    Kind("tun", _TUNTAP, True, False, "local", "netvirt.devices.tun:Tun", "cds", ('[/"', '"/]')),
    Kind("tap", _TUNTAP, True, True, "local", "netvirt.devices.tun:Tap", "cds", ('[/"', '"/]')),
    Kind("macvlan", ("parent", "mode"), False, True, "child", "netvirt.devices.macvlan:Macvlan",
         "hexagon", ('{{"', '"}}')),
    Kind("macvtap", ("parent", "mode", "program"), True, True, "child",
         "netvirt.devices.macvtap:Macvtap", "hexagon", ('{{"', '"}}')),
)}


def kind(name: str) -> Kind:
    return KINDS[name]


#: macvlan/macvtap modes and their IFLA_MACVLAN_MODE values
MACVLAN_MODES: dict[str, int] = {"bridge": 4, "vepa": 2, "private": 1, "passthru": 8, "source": 16}

IFNAMSIZ = 16
#: the most ports a Linux bridge takes (net/bridge/br_private.h); port 1025 fails with EXFULL
BR_MAX_PORTS = 1024
#: below this MTU the kernel disables IPv6 on an interface (RFC 8200 minimum link MTU)
IPV6_MIN_MTU = 1280
#: bridge times travel as u32 centiseconds (clock_t): the largest in seconds
BR_MAX_SECONDS = ((1 << 32) - 1) / 100
#: tun/tap owner and group are uid_t/gid_t; (u32)-1 means "none", so the largest is 2^32 - 2
TUN_MAX_ID = (1 << 32) - 2


def ifname_problem(name: object) -> str | None:
    """Why the kernel would refuse ``name`` as an interface name, or None."""
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    size = len(name.encode())
    if size >= IFNAMSIZ:
        return f"is {size} bytes long; Linux allows at most {IFNAMSIZ - 1} (IFNAMSIZ - 1)"
    if name in (".", ".."):
        return "is reserved"
    if "/" in name or ":" in name or any(c.isspace() for c in name):
        return "must not contain '/', ':' or whitespace"
    return None
