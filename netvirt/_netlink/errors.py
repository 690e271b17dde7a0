"""Error translation of the netlink seam: netlink and OS errors -> the netvirt tree.

The one place where an errno becomes a :class:`~netvirt.errors.NetvirtError`
carrying errno, operation, device, namespace and the kernel's extended-ack text.
Netlink requests (``rtnl.py``), tun/tap ioctls, namespace mounts and sysctls
(``netns.py``) and captures all go through :func:`translate` or :func:`to_netvirt`.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netvirt.errors import KernelError, NameTakenError, NoSuchObjectError, UnsupportedError

DeviceLabel = str | Callable[[], str] | None


@contextmanager
def translate(op: str, *, device: DeviceLabel = None, netns: str | None = None,
              hint: str | None = None) -> Iterator[None]:
    """Turn OS errors (netlink answers, ioctls, mounts, /proc/sys) into netvirt errors,
    naming op, device and namespace; ``hint`` is added to the kernel's text.

    ``device`` may be a callable: it is called only when an error is translated
    (to look up the name of a link known by ifindex). (pyroute2 only decodes for
    netvirt, it never sends, so its NetlinkError cannot arise.)
    """
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        detail = f"{exc.strerror} ({hint})" if hint else exc.strerror
        raise to_netvirt(exc.errno, op, label(device), netns, detail) from exc


def label(device: DeviceLabel) -> str | None:
    if callable(device):
        try:
            return device()
        except Exception:  # naming is best effort: never hide the real error
            return None
    return device


def to_netvirt(code: int, op: str, device: str | None, netns: str | None, detail: str | None) -> Exception:
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


