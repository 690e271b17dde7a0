"""Requests and operations of the netlink seam: raw sockets and batches.

:class:`Rtnl` is a raw NETLINK_ROUTE socket opened inside one namespace; it
sends batches of requests encoded by ``encode.py`` in one ``sendmsg``
and matches the answers by sequence number. :class:`Netlink` offers the
operations devices need on top of it, with the attribute names of
``encode.LinkFields`` (the one vocabulary), and decodes dumps with
``decode.py``. Both are used on the
namespace's strand (``netvirt.netns``), never on the event loop's thread,
which is also why netvirt works under uvloop, where pyroute2's own asyncio
API cannot (svinota/pyroute2#1335). Why not pyroute2's IPRoute: README,
"Changelog and deviations".

Netlink errors are translated by ``errors.py`` into the netvirt tree with
errno, operation, device, namespace and the kernel's extended-ack text.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Unpack

from netvirt._netlink import encode as _nlmsg
from netvirt._netlink.decode import FdbEntry, LinkInfo, decode, link_info
from netvirt._netlink.encode import LinkFields
from netvirt._netlink.errors import DeviceLabel, label, to_netvirt, translate
from netvirt.errors import NoSuchObjectError


class Netlink:
    """rtnetlink requests in one namespace over its raw socket (on its strand).

    Requests are encoded by ``encode.py``; replies to dumps are decoded by
    ``decode.py``. Link attributes are ``encode.LinkFields`` (``mtu``, ``mac``,
    ``master``, ``alias``, ``ns_fd``, ``link``, ``no_ipv6_ll``); kind-specific
    ones travel as ``data`` (IFLA_INFO_DATA: ``encode.bridge_data``,
    ``encode.macvlan_data``, ``encode.veth_peer``).
    """

    def __init__(self, rtnl: Rtnl) -> None:
        self._rtnl = rtnl
        self.netns = rtnl.netns

    def request(self, reqs: Sequence[Req]) -> list[bytes | None]:
        """A batch of ``_nlmsg`` requests in one send (see ``Rtnl.request``)."""
        return self._rtnl.request(reqs)

    def _one(self, msg: bytes, op: str, device: DeviceLabel = None) -> bytes | None:
        return self._rtnl.request([Req(msg, op, device)])[0]

    def _name_of(self, index: int) -> Callable[[], str]:
        """Label for errors about link ``index``: its name, looked up only on error."""

        def name() -> str:
            try:
                return self.link(index).name
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
        try:
            reply = self._one(_nlmsg.get_link(name), "look up link", name)
        except NoSuchObjectError:
            return None
        return _nlmsg.ifindex_of(reply) if reply else None

    def link(self, index: int) -> LinkInfo:
        reply = self._one(_nlmsg.get_link(index=index), "get link", f"#{index}")
        assert reply is not None
        return link_info(decode("ifinfmsg", _nlmsg.message(_nlmsg.RTM_NEWLINK, 0, reply)))

    def links(self) -> list[LinkInfo]:
        dump = self._rtnl.dump(_nlmsg.dump_links(), "dump links")
        return [link_info(decode("ifinfmsg", raw)) for raw in dump]

    def link_add(self, name: str, kind: str, *, index: int = 0, up: bool = False, data: bytes = b"",
                 **attrs: Unpack[LinkFields]) -> int:
        """Create a link; returns its ifindex in THIS namespace (0 if moved away)."""
        msg = _nlmsg.new_link(kind, index=index, up=up, data=data, ifname=name, **attrs)
        self._one(msg, f"create {kind}", name)
        if attrs.get("ns_fd") is not None:
            return 0
        return index or self.ifindex(name)

    def link_set(self, index: int, *, up: bool | None = None, kind: str | None = None, data: bytes = b"",
                 **attrs: Unpack[LinkFields]) -> None:
        what = sorted([*attrs, *(["up"] if up is not None else []), *(["kind"] if kind else [])])
        self._one(_nlmsg.set_link(index=index, up=up, kind=kind, data=data, **attrs),
                  "set link " + ",".join(what), self._name_of(index))

    def wait_port_enabled(self, index: int, timeout: float = 2.0) -> None:
        """Wait until bridge port ``index`` has left the *disabled* state.

        Theory of operation: a bridge enables a port when the kernel's linkwatch
        work processes the port's carrier change, which is asynchronous: a veth
        end is a bridge port in *disabled* state for a few milliseconds after
        its peer came up, and frames sent meanwhile are dropped (ARP then waits
        a second to retry). With STP off an enabled port forwards at once.
        """
        import time

        deadline = time.monotonic() + timeout
        while True:
            reply = self._one(_nlmsg.get_link(index=index), "get bridge port state", self._name_of(index))
            state = _nlmsg.brport_state(reply or b"")
            if state is None or state != _nlmsg.BR_STATE_DISABLED or time.monotonic() > deadline:
                return
            time.sleep(0.0005)

    def wait_ports_enabled(self, timeout: float = 2.0) -> list[str]:
        """Wait until this namespace is ready for traffic; return the links that are not.

        Ready: no bridge port that is up is still *disabled* (see
        :meth:`wait_port_enabled`), and the kernel has handled the carrier change
        of every up link with carrier (see ``encode.not_yet_running``). One dump
        per poll for the whole namespace.
        """
        import time

        deadline = time.monotonic() + timeout
        while True:
            waiting = []
            for raw in self._rtnl.dump(_nlmsg.dump_links(), "dump links"):
                payload = raw[16:]
                if _nlmsg.not_ready(payload):
                    waiting.append(str(_nlmsg.ifindex_of(payload)))
            if not waiting or time.monotonic() > deadline:
                return waiting
            time.sleep(0.0005)

    def link_del(self, index: int, *, missing_ok: bool = True) -> None:
        try:
            self._one(_nlmsg.del_link(index), "delete link", self._name_of(index))
        except NoSuchObjectError:
            if not missing_ok:
                raise

    # -- addresses and routes ----------------------------------------------
    def addr_add(self, index: int, iface: ipaddress.IPv4Interface | ipaddress.IPv6Interface) -> None:
        self._one(_nlmsg.new_addr(index, iface), f"add address {iface}", self._name_of(index))

    def addrs(self, index: int | None = None) -> list[tuple[int, str]]:

        out = []
        for raw in self._rtnl.dump(_nlmsg.dump_addrs(), "dump addresses"):
            m = decode("ifaddrmsg", raw)
            if index is None or m["index"] == index:
                out.append((m["index"], f"{m.get('address')}/{m['prefixlen']}"))
        return out

    def route_add(self, dst: str, *, via: str | None = None, oif: int | None = None) -> None:
        if dst == "default":
            dst = "::/0" if via and ":" in via else "0.0.0.0/0"
        msg = _nlmsg.new_route(ipaddress.ip_network(dst), via=ipaddress.ip_address(via) if via else None,
                               oif=oif)
        self._one(msg, f"add route {dst}")

    # -- bridges ---------------------------------------------------------
    def fdb(self, bridge_index: int) -> list[FdbEntry]:

        names = {li.index: li.name for li in self.links()}
        out = []
        for raw in self._rtnl.dump(_nlmsg.dump_fdb(), "dump bridge fdb"):
            m = decode("ndmsg", raw)
            if m.get("master") != bridge_index and m["ifindex"] != bridge_index:
                continue
            out.append(FdbEntry(
                mac=m.get("lladdr"), port_index=m["ifindex"],
                port=names.get(m["ifindex"], str(m["ifindex"])), state=m["state"],
                vlan=m.get("vlan"), local=bool(m["state"] & 0x80),
            ))
        return out


# -- the lean path: raw rtnetlink, struct-encoded, batched --------------------
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NLMSGERR_ATTR_MSG = 1
_CHUNK = 48 * 1024
#: recv() size: the kernel never sends a netlink datagram over 32 KiB (netlink_recvmsg caps a
#: dump's buffer there). 1 MiB cost an mmap, an mremap and a munmap per answer (7% of a build)
_RECV = 1 << 16


@dataclass(frozen=True)
class Req:
    """One request of a batch: the message (from ``_nlmsg``) and what to say if it fails."""

    msg: bytes
    op: str
    device: DeviceLabel = None


class Rtnl:
    """A raw NETLINK_ROUTE socket opened inside one namespace (it stays there).

    ``request()`` sends a whole batch in one ``sendmsg`` (the kernel handles
    the messages in order) and collects every answer by sequence number;
    the first failure, in batch order, is raised as a netvirt error with
    the kernel's extended-ack text. Used by one thread at a time (the
    namespace's strand).
    """

    def __init__(self, netns: str | None) -> None:
        self.netns = netns
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            sock.bind((0, 0))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._seq = 0

    def close(self) -> None:
        self._sock.close()

    def request(self, reqs: Sequence[Req]) -> list[bytes | None]:
        """Send ``reqs``; return each reply payload (None for a plain ACK)."""
        if not reqs:
            return []
        first = self._seq + 1
        self._seq += len(reqs)
        out: list[bytes | None] = [None] * len(reqs)
        errors: dict[int, tuple[int, str | None]] = {}
        chunk: list[bytes] = []
        size = 0
        with translate("send netlink batch", netns=self.netns):
            for i, r in enumerate(reqs):
                msg = _nlmsg.with_seq(r.msg, first + i)
                if size + len(msg) > _CHUNK and chunk:
                    self._sock.sendall(b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(msg)
                size += len(msg)
            self._sock.sendall(b"".join(chunk))
            pending = len(reqs)
            while pending:
                data = self._sock.recv(_RECV)
                for kind, seq, payload in _nlmsg.replies(data):
                    i = seq - first
                    if not 0 <= i < len(reqs):
                        continue  # a stale answer of an earlier, failed batch
                    if kind == _nlmsg.NLMSG_ERROR:
                        code = _nlmsg.error_code(payload)
                        if code:
                            errors[i] = (code, _ext_ack(payload))
                    elif kind != _nlmsg.NLMSG_DONE:
                        out[i] = payload
                    pending -= 1
        if errors:
            i = min(errors)
            code, detail = errors[i]
            exc = to_netvirt(code, reqs[i].op, label(reqs[i].device), self.netns, detail)
            exc.batch_index = i  # type: ignore[attr-defined]  # which request of the batch failed
            raise exc
        return out




    def dump(self, msg: bytes, op: str) -> list[bytes]:
        """Send a dump request; return every reply message (header included)."""
        self._seq += 1
        seq = self._seq
        out: list[bytes] = []
        with translate(op, netns=self.netns):
            self._sock.sendall(_nlmsg.with_seq(msg, seq))
            while True:
                data = self._sock.recv(_RECV)
                for raw in _nlmsg.messages(data):
                    kind, mseq = struct.unpack_from("=HxxI", raw, 4)
                    if mseq != seq:
                        continue
                    if kind == _nlmsg.NLMSG_DONE:
                        return out
                    if kind == _nlmsg.NLMSG_ERROR:
                        code = _nlmsg.error_code(raw[16:])
                        if code:
                            raise to_netvirt(code, op, None, self.netns, _ext_ack(raw[16:]))
                        return out
                    out.append(raw)


def _ext_ack(payload: bytes) -> str | None:
    """The kernel's error text from an extended ACK (NETLINK_EXT_ACK), if any."""
    off = 4 + 16  # errno, then the (capped) original header
    while off + 4 <= len(payload):
        length, kind = struct.unpack_from("=HH", payload, off)
        if length < 4:
            break
        if kind & 0x3FFF == NLMSGERR_ATTR_MSG:
            return payload[off + 4: off + length].rstrip(b"\0").decode(errors="replace")
        off += (length + 3) & ~3
    return None
