"""The netlink seam: the only module that imports pyroute2.

Each :class:`Netlink` wraps one synchronous ``pyroute2.IPRoute`` socket and
is used only on the worker thread of the namespace it was opened in (see
``netvirt.netns``). Running the sync API on plain threads is what makes
netvirt work when the program's event loop is uvloop: pyroute2's asyncio API
cannot open AF_NETLINK endpoints on uvloop (svinota/pyroute2#1335), and its
sync API runs a private selector loop per socket, which we pin to a plain
``SelectorEventLoop`` so an installed uvloop policy cannot leak in.

Every pyroute2 error is translated here, once, into the netvirt tree with
errno, operation, device and namespace.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import NetlinkError as _PrNetlinkError

from netvirt.errors import KernelError, NameTakenError, NoSuchObjectError, UnsupportedError

IFA_F_NODAD = 0x02
IN6_ADDR_GEN_MODE_NONE = 1


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


DeviceLabel = str | Callable[[], str] | None


@contextmanager
def translate(op: str, *, device: DeviceLabel = None, netns: str | None = None) -> Iterator[None]:
    """Turn pyroute2 / OS errors into netvirt errors, naming op, device and namespace.

    ``device`` may be a callable: it is called only when an error is translated
    (to look up the name of a link known by ifindex).
    """
    try:
        yield
    except _PrNetlinkError as exc:
        raise _to_netvirt(exc.code, op, _label(device), netns,
                          str(exc.args[1]) if len(exc.args) > 1 else None) from None
    except OSError as exc:
        if exc.errno is None:
            raise
        raise _to_netvirt(exc.errno, op, _label(device), netns, exc.strerror) from exc


def _label(device: DeviceLabel) -> str | None:
    if callable(device):
        try:
            return device()
        except Exception:  # naming is best effort: never hide the real error
            return None
    return device


def _to_netvirt(code: int, op: str, device: str | None, netns: str | None, detail: str | None) -> Exception:
    where = f" in namespace {netns!r}" if netns else ""
    if code == errno.EEXIST:
        if op.startswith("create"):
            return NameTakenError(
                f"{op}: device {device!r} exists already{where}; choose another name")
        on = f" on device {device!r}" if device else ""
        return NameTakenError(f"{op}{on}{where}: it exists already")  # an address, a route
    if code == errno.EOPNOTSUPP:
        return UnsupportedError(f"{op} ({device or '?'}{where}): not supported by this kernel")
    cls = NoSuchObjectError if code in (errno.ENODEV, errno.ENOENT) else KernelError
    return cls(code, op, device=device, netns=netns, detail=detail)


def _info(msg: Any) -> LinkInfo:
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


class Netlink:
    """Synchronous rtnetlink requests in one namespace (worker-thread only)."""

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        with translate("open netlink socket", netns=netns):
            self._ipr = IPRoute(use_event_loop=asyncio.SelectorEventLoop())

    def close(self) -> None:
        self._ipr.close()

    def _name_of(self, index: int) -> Callable[[], str]:
        """Label for errors about link ``index``: its name, looked up only on error."""

        def name() -> str:
            try:
                return str(self._ipr.link("get", index=index)[0].get("ifname"))
            except Exception:  # gone, or the socket is unusable: fall back to the index
                return f"#{index}"

        return name

    # -- links -----------------------------------------------------------
    def ifindex(self, name: str) -> int:
        found = self.find(name)
        if found is None:
            raise NoSuchObjectError(errno.ENODEV, "look up link", device=name, netns=self.netns,
                                    detail="no such link")
        return found

    def find(self, name: str) -> int | None:
        with translate("look up link", device=name, netns=self.netns):
            found = self._ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def link(self, index: int) -> LinkInfo:
        with translate("get link", device=self._name_of(index), netns=self.netns):
            return _info(self._ipr.link("get", index=index)[0])

    def links(self) -> list[LinkInfo]:
        with translate("dump links", netns=self.netns):
            return [_info(m) for m in self._ipr.link("dump")]

    def link_add(self, name: str, kind: str, **attrs: Any) -> int:
        """Create a link; returns its ifindex in THIS namespace (0 if moved away)."""
        with translate(f"create {kind}", device=name, netns=self.netns):
            self._ipr.link("add", ifname=name, kind=kind, **attrs)
        if "net_ns_fd" in attrs:
            return 0
        return self.ifindex(name)

    def link_set(self, index: int, **attrs: Any) -> None:
        op = "set link " + ",".join(sorted(attrs))
        with translate(op, device=self._name_of(index), netns=self.netns):
            self._ipr.link("set", index=index, **attrs)

    def link_del(self, index: int, *, missing_ok: bool = True) -> None:
        try:
            with translate("delete link", device=self._name_of(index), netns=self.netns):
                self._ipr.link("del", index=index)
        except NoSuchObjectError:
            if not missing_ok:
                raise

    def no_ipv6_linklocal(self, index: int) -> None:
        """addrgenmode none: no link-local address, so no stray IPv6 RS/DAD packets."""
        spec = {"attrs": [("AF_INET6", {"attrs": [("IFLA_INET6_ADDR_GEN_MODE", IN6_ADDR_GEN_MODE_NONE)]})]}
        self.link_set(index, IFLA_AF_SPEC=spec)

    # -- addresses and routes ----------------------------------------------
    def addr_add(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        kw: dict[str, Any] = {"address": str(iface.ip), "prefixlen": iface.network.prefixlen}
        if iface.version == 6:
            kw["flags"] = IFA_F_NODAD
        with translate(f"add address {iface}", device=self._name_of(index), netns=self.netns):
            self._ipr.addr("add", index=index, **kw)

    def addrs(self, index: int | None = None) -> list[tuple[int, str]]:
        with translate("dump addresses", netns=self.netns):
            msgs = self._ipr.addr("dump", index=index) if index else self._ipr.addr("dump")
            return [(m["index"], f"{m.get('address')}/{m['prefixlen']}") for m in msgs]

    def route_add(self, dst: str, *, via: str | None = None, oif: int | None = None) -> None:
        kw: dict[str, Any] = {"dst": dst}
        if via:
            kw["gateway"] = via
        if oif:
            kw["oif"] = oif
        with translate(f"add route {dst}", netns=self.netns):
            self._ipr.route("add", **kw)

    # -- bridges ---------------------------------------------------------
    def fdb(self, bridge_index: int) -> list[FdbEntry]:
        names = {li.index: li.name for li in self.links()}
        out = []
        with translate("dump bridge fdb", device=self._name_of(bridge_index), netns=self.netns):
            for m in self._ipr.fdb("dump"):
                if m.get("master") != bridge_index and m["ifindex"] != bridge_index:
                    continue
                out.append(FdbEntry(
                    mac=m.get("lladdr"), port_index=m["ifindex"],
                    port=names.get(m["ifindex"], str(m["ifindex"])), state=m["state"],
                    vlan=m.get("vlan"), local=bool(m["state"] & 0x80),
                ))
        return out
