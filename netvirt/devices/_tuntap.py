"""TUN/TAP ioctls (values of linux/if_tun.h on x86-64 and arm64).

Theory of operation: a tun/tap netdev exists as long as a queue fd is
attached, unless TUNSETPERSIST made it persistent. ``TUNSETIFF`` creates the
device in the namespace of the *calling thread*, so these functions are run
on a namespace's worker thread. ``IFF_TUN_EXCL`` on the first queue makes
TUNSETIFF fail with EBUSY instead of silently attaching to an existing
device of the same name, which would break "never touch what is not ours".
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading

from netvirt._netlink import translate
from netvirt._sys import setns
from netvirt.errors import NameTakenError

TUNSETIFF = 0x400454CA
TUNSETPERSIST = 0x400454CB
TUNSETOWNER = 0x400454CC
TUNSETGROUP = 0x400454CE
TUNSETOFFLOAD = 0x400454D0
TUNGETIFF = 0x800454D2
TUNSETVNETHDRSZ = 0x400454D8
TUNSETQUEUE = 0x400454D9
TUNSETIFINDEX = 0x400454DA
TUNGETDEVNETNS = 0x000054E3

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_MULTI_QUEUE = 0x0100
IFF_ATTACH_QUEUE = 0x0200
IFF_DETACH_QUEUE = 0x0400
IFF_NO_PI = 0x1000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000

TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_USO4 = 0x20  # Linux >= 6.2
TUN_F_USO6 = 0x40
OFFLOAD_TCP = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN
IFF_PERSIST = 0x0800
_KEPT_FLAGS = IFF_TUN | IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE | IFF_VNET_HDR


def _ifreq(name: str, flags: int) -> bytes:
    return struct.pack("16sH22x", name.encode(), flags)


def open_queues(name: str, *, tap: bool, queues: int = 1, vnet_hdr: bool = False,
                offload: bool = False, netns: str | None = None, index: int = 0) -> list[int]:
    """Create tun/tap ``name`` with ``queues`` non-blocking fds (worker thread only)."""
    flags = (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI
    if queues > 1:
        flags |= IFF_MULTI_QUEUE
    if vnet_hdr or offload:
        flags |= IFF_VNET_HDR
    fds: list[int] = []
    try:
        for q in range(queues):
            with translate(f"open {'tap' if tap else 'tun'} queue {q}", device=name, netns=netns):
                fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
                fds.append(fd)
                try:
                    excl = IFF_TUN_EXCL if q == 0 else 0
                    if q == 0 and index:  # the ifindex of the device TUNSETIFF creates
                        fcntl.ioctl(fd, TUNSETIFINDEX, struct.pack("I", index))
                    fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, flags | excl))
                except OSError as exc:
                    # IFF_TUN_EXCL: EBUSY means a device of that name exists (any kind)
                    if q == 0 and exc.errno == errno.EBUSY:
                        where = f" in namespace {netns!r}" if netns else ""
                        raise NameTakenError(
                            f"create {'tap' if tap else 'tun'}: device {name!r} exists "
                            f"already{where}; choose another name") from None
                    raise
                if offload:
                    fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOAD_TCP)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def make_persistent(fd: int, name: str, *, owner: int | None, group: int | None,
                    netns: str | None = None) -> None:
    with translate("make tun/tap persistent", device=name, netns=netns):
        if owner is not None:
            fcntl.ioctl(fd, TUNSETOWNER, owner)
        if group is not None:
            fcntl.ioctl(fd, TUNSETGROUP, group)
        fcntl.ioctl(fd, TUNSETPERSIST, 1)


def set_queue_enabled(fd: int, enabled: bool) -> None:
    fcntl.ioctl(fd, TUNSETQUEUE, _ifreq("", IFF_ATTACH_QUEUE if enabled else IFF_DETACH_QUEUE))


def get_flags(fd: int) -> int:
    buf = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    return int(struct.unpack("16sH22x", buf)[1])


def set_plain_frames(fd: int, name: str) -> None:
    """Switch a macvtap fd from vnet-header frames to plain Ethernet frames."""
    with translate("switch off vnet header", device=name):
        fcntl.ioctl(fd, TUNSETIFF, _ifreq("", IFF_TAP | IFF_NO_PI))


def set_offload(fd: int) -> int:
    """TUNSETOFFLOAD with TCP and, where the kernel has it, UDP segmentation; the flags set."""
    try:
        fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOAD_TCP | TUN_F_USO4 | TUN_F_USO6)
        return OFFLOAD_TCP | TUN_F_USO4 | TUN_F_USO6
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    fcntl.ioctl(fd, TUNSETOFFLOAD, OFFLOAD_TCP)
    return OFFLOAD_TCP


def enable_offload(fd: int) -> int:
    """Switch on IFF_VNET_HDR and offload on an attached single-queue tun fd, in place.

    The vnet header is a flag of the device, fixed when a queue attaches, and a
    single-queue tun takes no second queue. So: make the device persistent for
    a moment, point ``fd`` at a fresh ``/dev/net/tun`` file opened in the
    device's namespace (``dup2``: the old file closes and detaches, the device
    stays, with its addresses, routes, MTU and tag), attach that with the same
    flags plus IFF_VNET_HDR, set the offload and drop persistence again. The fd
    number never changes, so its owners keep it; packets that arrive in those
    microseconds are dropped (the device has no queue). Run it before the fd is
    watched by a loop and not on the event loop's thread (it enters a
    namespace). Returns the offload flags set. OSError (nothing changed) for a
    multi-queue, persistent or tap device, or a kernel without TUNGETDEVNETNS.
    """
    name, flags = get_iff(fd)
    if flags & (IFF_MULTI_QUEUE | IFF_PERSIST | IFF_TAP):
        raise OSError(errno.EINVAL, "only a single-queue, non-persistent tun is re-attached")
    if flags & IFF_VNET_HDR:
        return set_offload(fd)
    ns_fd = fcntl.ioctl(fd, TUNGETDEVNETNS)
    try:
        fresh = _open_in(ns_fd)
    finally:
        os.close(ns_fd)
    try:
        fcntl.ioctl(fd, TUNSETPERSIST, 1)
        try:
            os.dup2(fresh, fd)  # closes the old file: the (persistent) device stays
            try:
                fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, (flags & _KEPT_FLAGS) | IFF_VNET_HDR))
            except OSError:
                fcntl.ioctl(fd, TUNSETIFF, _ifreq(name, flags & _KEPT_FLAGS))  # as it was
                raise
        finally:
            fcntl.ioctl(fd, TUNSETPERSIST, 0)
    finally:
        os.close(fresh)
    return set_offload(fd)


def get_iff(fd: int) -> tuple[str, int]:
    """(name, flags) of the device a tun/tap fd is attached to."""
    raw, flags = struct.unpack("16sH22x", fcntl.ioctl(fd, TUNGETIFF, bytes(40)))
    return raw.rstrip(b"\0").decode(), int(flags)


def _open_in(ns_fd: int) -> int:
    """Open /dev/net/tun from a thread inside the namespace behind ``ns_fd``."""
    result: list[int | BaseException] = []

    def inside() -> None:
        try:
            setns(ns_fd)
            result.append(os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
        except BaseException as exc:  # handed to the caller
            result.append(exc)

    worker = threading.Thread(target=inside, name="netvirt-tun-reattach")
    worker.start()
    worker.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]
