"""Decoding of what the kernel answers (link, address and FDB dumps) with pyroute2's classes.

The only module that imports pyroute2, and only the few modules it uses:
importing the ``pyroute2`` package itself runs its ``__init__``, which pulls in
ndb, ipdb, conntrack and more (about 0.2 s, most of a ``netvirt run`` start-up).
So the package's own ``__init__`` is skipped while the message classes are
imported: a bare package module stands in for ``pyroute2`` for the duration of
the import and is removed afterwards, so a later ``import pyroute2`` by anyone
gets the real package (with these very submodules).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any


@functools.cache
def _import_light() -> tuple[Any, Any, Any, Any]:
    """pyroute2's classes, imported on the first decode: a build decodes nothing
    (its checks read raw attributes, see ``encode.find_attr``), so ``netvirt run``
    never pays the ~18 ms of pyroute2's message modules."""
    stub = None
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is not None and spec.submodule_search_locations is not None:
            stub = types.ModuleType("pyroute2")
            stub.__path__ = list(spec.submodule_search_locations)
            stub.__spec__ = spec
            sys.modules["pyroute2"] = stub
    try:
        from pyroute2.netlink.exceptions import NetlinkError
        from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
        from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg
        from pyroute2.netlink.rtnl.ndmsg import ndmsg
    finally:
        if stub is not None and sys.modules.get("pyroute2") is stub:
            del sys.modules["pyroute2"]
    return NetlinkError, ifinfmsg, ifaddrmsg, ndmsg


_NAMES = {"NetlinkError": 0, "ifinfmsg": 1, "ifaddrmsg": 2, "ndmsg": 3}


def __getattr__(name: str) -> Any:  # ifinfmsg, ifaddrmsg, ndmsg, NetlinkError: on first use
    if name in _NAMES:
        return _import_light()[_NAMES[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class LinkInfo:
    index: int
    name: str
    kind: str | None
    mtu: int
    mac: str | None
    up: bool
    master: int | None
    alias: str | None
    link: int | None  # parent ifindex (macvlan, veth peer) if in the same namespace


@dataclass(frozen=True)
class FdbEntry:
    mac: str
    port_index: int
    port: str
    state: int
    vlan: int | None
    local: bool  # the bridge's own address (permanent entry)


ARPHRD_ETHER = 1


def link_info(msg: Any) -> LinkInfo:
    kind = msg.get(("linkinfo", "kind"))
    if kind == "tun" and msg.get("ifi_type") == ARPHRD_ETHER:
        kind = "tap"  # the kernel names both "tun"; a tap carries Ethernet frames
    return LinkInfo(
        index=msg["index"],
        name=msg.get("ifname"),
        kind=kind,
        mtu=msg.get("mtu"),
        mac=msg.get("address"),
        up=bool(msg["flags"] & 1),
        master=msg.get("master") or None,
        alias=msg.get("ifalias"),
        link=msg.get("link") or None,
    )


def decode(cls: Any, raw: bytes) -> Any:
    """``raw`` decoded as ``cls``: a pyroute2 message class, or its name ("ifinfmsg")."""
    if isinstance(cls, str):
        cls = _import_light()[_NAMES[cls]]
    msg = cls(raw)
    msg.decode()
    return msg


