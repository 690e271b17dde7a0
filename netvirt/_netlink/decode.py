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

import importlib.util
import sys
import types
from dataclasses import dataclass
from typing import Any


def _import_light() -> tuple[Any, Any, Any, Any]:
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


PrNetlinkError, ifinfmsg, ifaddrmsg, ndmsg = _import_light()

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


def link_info(msg: Any) -> LinkInfo:
    return LinkInfo(
        index=msg["index"],
        name=msg.get("ifname"),
        kind=msg.get(("linkinfo", "kind")),
        mtu=msg.get("mtu"),
        mac=msg.get("address"),
        up=bool(msg["flags"] & 1),
        master=msg.get("master") or None,
        alias=msg.get("ifalias"),
        link=msg.get("link") or None,
    )


def decode(cls: Any, raw: bytes) -> Any:
    msg = cls(raw)
    msg.decode()
    return msg


