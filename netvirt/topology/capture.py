"""``netvirt capture``: an AF_PACKET socket inside the node, written to a pcap file.

Theory of operation: the packet socket is made inside the node's namespace
(on a worker thread) with protocol 0, so it receives nothing, and is only
then bound to the interface with ``ETH_P_ALL``: a socket opened with
``ETH_P_ALL`` would see every interface of the node until its bind. The
interface's ARPHRD type, read back from the bound address, picks the link
type: Ethernet-like devices (veth, tap, bridge, macvlan, and loopback, whose
frames carry a zero Ethernet header) give ``LINKTYPE_ETHERNET``; devices
without a link header (tun, ipip, sit, ppp) give ``LINKTYPE_RAW``; anything
else is captured "cooked" (``SOCK_DGRAM``, ``LINKTYPE_LINUX_SLL``), as
libpcap does. On loopback the kernel hands a packet socket each packet twice
(outgoing and incoming); like libpcap, the outgoing copy is skipped.

Each wake-up drains the packets ready (non-blocking ``recvfrom_into`` into
one 256 KiB buffer: a GSO super-packet of a veth fits whole) and flushes the
file once. When the interface goes down the kernel reports ``ENETDOWN`` once
on the socket, which stays bound and resumes when the interface comes back
up. When the interface is deleted, or the node's namespace is unmounted
(``netvirt down``: the socket alone would keep that namespace alive), the
capture ends, keeping what it wrote; both are checked on ``ENETDOWN`` and
every half second.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import errno
import fcntl
import os
import socket
import struct
import time
from typing import NamedTuple

from netvirt.errors import EnvironmentProblem, KernelError, NoSuchObjectError, UsageError
from netvirt.kinds import ifname_problem
from netvirt.netns import Namespace, netns_path
from netvirt.wire.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

__all__ = ["Captured", "capture"]

ETH_P_ALL = 0x0003
LINKTYPE_LINUX_SLL = 113
SNAPLEN = 262144
_BATCH = 256  # packets per wake-up, so a flood cannot starve the loop
_CHECK_EVERY = 0.5  # seconds between checks that the interface and namespace still exist
_SIOCGIFINDEX = 0x8933
_SLL_HEADER = struct.Struct("!HHH8sH")

_ARPHRD_ETHERNET_LIKE = frozenset({1, 6, 772})  # ETHER, IEEE802, LOOPBACK
_ARPHRD_LOOPBACK = 772
#: no link header: NONE (tun), TUNNEL (ipip), TUNNEL6, SIT, PPP, RAWIP
_ARPHRD_RAW_IP = frozenset({65534, 768, 769, 776, 512, 519})


class Captured(NamedTuple):
    """What a capture wrote, and why it ended: "count", "seconds", "interrupted"
    (Ctrl-C, SIGTERM, cancellation) or "gone" (the interface or its namespace)."""

    packets: int
    ended: str


def _ifindex(sock: socket.socket, ifname: str) -> int:
    """The index of ``ifname`` in the socket's namespace (ENODEV if it has none)."""
    req = array.array("B", struct.pack("16si", ifname.encode()[:15], 0))
    fcntl.ioctl(sock.fileno(), _SIOCGIFINDEX, req, True)
    return int(struct.unpack("16si", req.tobytes())[1])


async def _open(netns: str | None, ifname: str) -> tuple[socket.socket, int, bool]:
    """A packet socket bound to ``ifname``: (socket, ARPHRD type, cooked)."""
    ns = await (Namespace.borrow(netns) if netns else Namespace.host())
    try:
        def open_bound() -> tuple[socket.socket, int, bool]:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                sock.bind((ifname, 0))  # protocol 0: bound, still receiving nothing
                hatype = int(sock.getsockname()[3])
                cooked = hatype not in _ARPHRD_ETHERNET_LIKE and hatype not in _ARPHRD_RAW_IP
                if cooked:
                    sock.close()
                    sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
                sock.bind((ifname, ETH_P_ALL))
                # a down interface leaves ENETDOWN pending: clear it, packets come once it is up
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            return sock, hatype, cooked

        try:
            return await ns.call(open_bound)
        except OSError as exc:
            raise NoSuchObjectError(
                exc.errno or errno.ENODEV, "capture", device=ifname, netns=netns,
                detail="no such interface (see 'netvirt status')"
                if exc.errno == errno.ENODEV else None) from None
    finally:
        await ns.close()


async def capture(netns: str | None, ifname: str, path: str, *, count: int = 0,
                  seconds: float = 0) -> Captured:
    """Capture until ``count`` packets, ``seconds`` elapsed, the interface or namespace
    is gone, or cancellation (Ctrl-C: a normal end, not re-raised)."""
    if count < 0 or seconds < 0:
        raise UsageError("capture: --count and --seconds must not be negative")
    problem = ifname_problem(ifname)
    if problem:
        raise UsageError(f"capture: {ifname!r} is not an interface name: it {problem}")
    sock, hatype, cooked = await _open(netns, ifname)
    try:
        ifindex = _ifindex(sock, ifname)
        ns_ino = os.stat(netns_path(netns)).st_ino if netns else None
        linktype = (LINKTYPE_LINUX_SLL if cooked else LINKTYPE_ETHERNET
                    if hatype in _ARPHRD_ETHERNET_LIKE else LINKTYPE_RAW)
        try:
            writer = PcapWriter(path, linktype, SNAPLEN)
        except OSError as exc:
            raise EnvironmentProblem(f"capture: cannot write {path!r}: "
                                     f"{exc.strerror or exc}") from None
        try:
            ended = await _loop(sock, ifname, (ifindex, netns, ns_ino), writer, count=count,
                                seconds=seconds, skip_outgoing=hatype == _ARPHRD_LOOPBACK,
                                cooked=cooked)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # Ctrl-C ends a capture normally
            ended = "interrupted"
        finally:
            writer.close()
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return Captured(writer.packets, ended)


async def _loop(sock: socket.socket, ifname: str, where: tuple[int, str | None, int | None],
                writer: PcapWriter, *, count: int, seconds: float, skip_outgoing: bool,
                cooked: bool) -> str:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    buf = bytearray(SNAPLEN)
    view = memoryview(buf)
    outgoing = socket.PACKET_OUTGOING

    ifindex, netns, ns_ino = where

    def gone() -> bool:
        try:
            if _ifindex(sock, ifname) != ifindex:
                return True
            return netns is not None and os.stat(netns_path(netns)).st_ino != ns_ino
        except OSError:
            return True

    def finish(why: str) -> None:
        if not done.done():
            done.set_result(why)

    def check() -> None:
        if gone():
            finish("gone")
        elif not done.done():
            timers[0] = loop.call_later(_CHECK_EVERY, check)

    def on_readable() -> None:
        if done.done():
            return
        written = 0
        try:
            for _ in range(_BATCH):
                try:
                    size, addr = sock.recvfrom_into(buf)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if exc.errno != errno.ENETDOWN:
                        raise
                    if gone():
                        finish("gone")
                        break
                    continue  # down: the socket resumes once the interface is up
                if skip_outgoing and addr[2] == outgoing:
                    continue
                if cooked:
                    haddr = bytes(addr[4])[:8]
                    header = _SLL_HEADER.pack(addr[2], addr[3], len(haddr), haddr, addr[1])
                    writer.write(header + view[:size], time.time(), flush=False)
                else:
                    writer.write(view[:size], time.time(), flush=False)
                written += 1
                if count and writer.packets >= count:
                    finish("count")
                    break
            if written:
                writer.flush()
        except OSError as exc:  # the socket failed, or writing the file did (disk full)
            if not done.done():
                done.set_exception(KernelError(exc.errno or 0, f"capture to {writer.path!r}",
                                               device=ifname, detail=exc.strerror or str(exc)))

    timers = [loop.call_later(_CHECK_EVERY, check)]
    if seconds:
        timers.append(loop.call_later(seconds, finish, "seconds"))
    loop.add_reader(sock.fileno(), on_readable)
    try:
        return await done
    finally:
        loop.remove_reader(sock.fileno())
        for timer in timers:
            timer.cancel()
