"""``netvirt capture``: an AF_PACKET socket inside the node, written to a pcap file."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time

from netvirt.netns import Namespace
from netvirt.programs.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

ETH_P_ALL = 0x0003
ARPHRD_ETHER = 1


async def capture(netns: str | None, ifname: str, path: str, *, count: int = 0,
                  seconds: float = 0) -> int:
    """Capture until ``count`` packets, ``seconds`` elapsed, or cancellation; return the count."""
    ns = await (Namespace.borrow(netns) if netns else Namespace.host())
    try:
        sock = await ns.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))

        def bind() -> int:
            sock.bind((ifname, 0))
            return int(sock.getsockname()[3])

        try:
            hatype = await ns.call(bind)
        except OSError as exc:
            sock.close()
            from netvirt.errors import NoSuchObjectError

            raise NoSuchObjectError(exc.errno or 19, "capture", device=ifname, netns=netns) from exc
    finally:
        await ns.close()
    linktype = LINKTYPE_ETHERNET if hatype == ARPHRD_ETHER else LINKTYPE_RAW
    loop = asyncio.get_running_loop()
    writer = PcapWriter(path, linktype)
    deadline = time.monotonic() + seconds if seconds else None
    try:
        while not count or writer.packets < count:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65536), timeout)
            except TimeoutError:
                break
            writer.write(data)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()  # Ctrl-C ends a capture normally
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            sock.close()
    return writer.packets
