"""Network namespaces, each served by one worker thread that lives inside it.

Theory of operation
-------------------
``setns(2)`` and ``unshare(CLONE_NEWNET)`` act on the calling *thread* only.
Every :class:`Namespace` owns a single-thread executor whose thread enters
the namespace once (or creates it: ``unshare`` then a bind mount of
``/proc/thread-self/ns/net`` on ``/run/netns/NAME``, exactly what
``ip netns add`` does, without a fork). Everything that must happen *inside*
the namespace runs on that thread: netlink requests (one pyroute2 socket per
namespace, opened there), ``/dev/net/tun`` opens (a tun is created in the
opener's namespace), sockets for programs and checks, ``/proc/sys/net``
writes. A socket or fd keeps the namespace it was opened in for life, so
the returned fds are then driven from the event loop in the main thread,
which never switches namespace (STYLE.md).

A namespace lives as long as anything references it: its bind mount, the
worker thread, and every fd opened inside. :meth:`Namespace.close` therefore
stops the thread (closing its netlink socket) and, for a namespace we
created, unmounts and unlinks the name; devices must be closed first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import errno
import os
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from netvirt import _sys
from netvirt.errors import KernelError, NameTakenError, NoSuchObjectError, NotRootError

if TYPE_CHECKING:
    from netvirt._netlink import Netlink

T = TypeVar("T")

NETNS_DIR = "/run/netns"
_HOST_NS_PATH = f"/proc/{os.getpid()}/ns/net"
_netns_dir_lock = threading.Lock()
_netns_dir_ready = False


def require_root(what: str = "this command") -> None:
    if os.geteuid() != 0:
        raise NotRootError(what)


def _prepare_netns_dir() -> None:
    """Make /run/netns a shared mount point, as iproute2 does (once per process)."""
    global _netns_dir_ready
    with _netns_dir_lock:
        if _netns_dir_ready:
            return
        os.makedirs(NETNS_DIR, mode=0o755, exist_ok=True)
        try:
            _sys.mount("none", NETNS_DIR, None, _sys.MS_SHARED | _sys.MS_REC)
        except OSError as exc:
            if exc.errno != errno.EINVAL:  # EINVAL: not a mount point yet
                raise
            _sys.mount(NETNS_DIR, NETNS_DIR, "none", _sys.MS_BIND | _sys.MS_REC)
            _sys.mount("none", NETNS_DIR, None, _sys.MS_SHARED | _sys.MS_REC)
        _netns_dir_ready = True


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def netns_exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


class Namespace:
    """One network namespace: created and owned, borrowed, or the host's own.

    Use :meth:`create`, :meth:`borrow` or :meth:`host`; the constructor does no I/O.
    Only a namespace created by this object is deleted by :meth:`close`.
    """

    def __init__(self, name: str | None, *, owned: bool) -> None:
        self.name = name
        self.owned = owned
        self._executor = cf.ThreadPoolExecutor(1, thread_name_prefix=f"netns-{name or 'host'}")
        self._fd = -1
        self._nl: Netlink | None = None
        self._closed = False
        self._made = False  # the namespace file was created by us (even if create failed later)

    def __repr__(self) -> str:
        state = "owned" if self.owned else "borrowed"
        return f"<Namespace {self.name or '(host)'} {state}>"

    @property
    def label(self) -> str:
        """Name for messages: the netns name, or 'host'."""
        return self.name or "host"

    # -- construction ----------------------------------------------------
    @classmethod
    async def create(cls, name: str) -> Namespace:
        """Create a new named namespace; fail with NameTakenError if it exists."""
        require_root("creating a network namespace")
        ns = cls(name, owned=True)
        try:
            await ns.call(ns._create_here)
        except BaseException:
            # also on cancellation: the thread may still finish creating; close()
            # queues behind it and removes the name only if we made it
            await asyncio.shield(ns.close())
            raise
        return ns

    @classmethod
    async def borrow(cls, name: str) -> Namespace:
        """Use an existing named namespace (never deleted by netvirt)."""
        if not netns_exists(name):
            raise NoSuchObjectError(errno.ENOENT, "open namespace", netns=name,
                                    detail=f"{netns_path(name)} does not exist")
        ns = cls(name, owned=False)
        try:
            await ns.call(ns._enter_here)
        except BaseException:
            await ns._shutdown_thread()
            raise
        return ns

    @classmethod
    async def host(cls) -> Namespace:
        """The namespace netvirt's own process started in (never deleted)."""
        ns = cls(None, owned=False)
        await ns.call(ns._enter_here)
        return ns

    def _create_here(self) -> None:
        assert self.name is not None
        _prepare_netns_dir()
        path = netns_path(self.name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
        except FileExistsError:
            raise NameTakenError(
                f"network namespace {self.name!r} exists already; "
                f"if it is a leftover of netvirt, run 'netvirt down' for its lab, "
                f"else choose another lab name"
            ) from None
        os.close(fd)
        self._made = True
        try:
            _sys.unshare_net()
            _sys.mount("/proc/thread-self/ns/net", path, "none", _sys.MS_BIND)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._made = False
            raise KernelError(exc.errno or 0, "create namespace", netns=self.name) from exc
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._lo_up()

    def _enter_here(self) -> None:
        path = netns_path(self.name) if self.name else _HOST_NS_PATH
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            if self.name:
                _sys.setns(fd)
        except OSError as exc:
            os.close(fd)
            raise KernelError(exc.errno or 0, "enter namespace", netns=self.name) from exc
        self._fd = fd

    def _lo_up(self) -> None:
        nl = self.netlink
        nl.link_set(nl.ifindex("lo"), state="up")

    # -- running things inside -------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any,
                   orphan: Callable[[T], object] | None = None) -> T:
        """Run ``fn(*args)`` on this namespace's worker thread and return its result.

        If the caller is cancelled while ``fn`` runs, ``fn`` still completes on
        the thread; ``orphan(result)`` then runs there too, to release what
        ``fn`` made (fds, links) that no one will ever receive.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        fut = self._executor.submit(fn, *args)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            if orphan is not None:
                fut.add_done_callback(lambda f: _run_orphan(f, orphan))
            raise

    @property
    def netlink(self) -> Netlink:
        """The worker thread's netlink socket. Only valid ON the worker thread."""
        if self._nl is None:
            from netvirt._netlink import Netlink

            self._nl = Netlink(self.name)
        return self._nl

    async def nl(self, fn: Callable[[Netlink], T],
                 orphan: Callable[[Netlink, T], object] | None = None) -> T:
        """Run ``fn(netlink)`` on the worker thread (batch several requests in one hop).

        ``orphan(netlink, result)`` undoes ``fn`` if the caller was cancelled meanwhile.
        """
        undo = None if orphan is None else (lambda result: orphan(self.netlink, result))
        return await self.call(lambda: fn(self.netlink), orphan=undo)

    def fileno(self) -> int:
        """An fd on this namespace (for ``IFLA_NET_NS_FD``); valid until close()."""
        if self._fd < 0:
            raise RuntimeError(f"{self!r} is not open")
        return self._fd

    async def socket(self, family: int, type: int, proto: int = 0) -> socket.socket:
        """A non-blocking socket opened inside this namespace (it stays there for life)."""

        def make() -> socket.socket:
            s = socket.socket(family, type, proto)
            s.setblocking(False)
            return s

        return await self.call(make)

    async def sysctl(self, key: str, value: str | int | None = None) -> str:
        """Read (and with ``value``, first write) a ``net.*`` sysctl of this namespace."""
        path = "/proc/sys/" + key.replace(".", "/")

        def rw() -> str:
            try:
                if value is not None:
                    with open(path, "w") as f:
                        f.write(str(value))
                with open(path) as f:
                    return f.read().strip()
            except OSError as exc:
                raise KernelError(exc.errno or 0, f"sysctl {key}", netns=self.name,
                                  detail=exc.strerror) from exc

        return await self.call(rw)

    # -- teardown --------------------------------------------------------
    async def close(self) -> None:
        """Stop the worker; delete the namespace if we created it. Safe twice."""
        if self._closed:
            return
        await self._shutdown_thread()
        if self.owned and self._made and self.name:
            remove_netns(self.name)

    async def _shutdown_thread(self) -> None:
        self._closed = True

        def stop() -> None:
            if self._nl is not None:
                self._nl.close()
                self._nl = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

        with contextlib.suppress(RuntimeError):
            await asyncio.wrap_future(self._executor.submit(stop))
        self._executor.shutdown(wait=True)  # the stop task is done: exits at once

    async def __aenter__(self) -> Namespace:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.shield(self.close())


def _run_orphan(fut: cf.Future[T], orphan: Callable[[T], object]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    with contextlib.suppress(Exception):
        orphan(fut.result())


def remove_netns(name: str) -> bool:
    """Unmount and unlink /run/netns/NAME. Returns False if it was not there."""
    path = netns_path(name)
    try:
        _sys.umount_detach(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        if exc.errno != errno.EINVAL:  # EINVAL: a plain file, not mounted
            raise KernelError(exc.errno or 0, "delete namespace", netns=name) from exc
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True
