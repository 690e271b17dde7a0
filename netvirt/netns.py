"""Network namespaces, entered cheaply from a small shared pool of threads.

Theory of operation
-------------------
``setns(2)`` and ``unshare(CLONE_NEWNET)`` act on the calling *thread* only.
Everything that must happen *inside* a namespace (a tun is created in the
opener's namespace, a socket or netlink socket keeps the namespace it was
opened in, ``/proc/sys/net`` is resolved in the caller's namespace) runs as
a call on the namespace's *strand*: the strand runs its calls one at a time,
in submission order, on one of a few shared worker threads, which enters the
namespace once per burst of calls and returns to the process's own
namespace afterwards. Creating a namespace is such a call: ``unshare`` then a
bind mount of ``/proc/thread-self/ns/net`` on ``/run/netns/NAME``, exactly
what ``ip netns add`` does, without a fork and without a thread of its own.
The event loop's thread never switches namespace; the fds the
calls return are driven from it.

Each namespace opens a raw rtnetlink socket inside it for a burst of calls
(``Rtnl``, wrapped by ``Netlink`` for dumps, lookups, FDB) and closes it
when its strand goes idle. A namespace lives as long as anything references it:
its bind mount, and every fd opened inside. :meth:`Namespace.close` closes
its sockets and, for a namespace we created, unmounts and unlinks the name;
devices must be closed first.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import errno
import os
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from netvirt import _sys
from netvirt._aio import complete, unwind
from netvirt._netlink.errors import to_netvirt, translate
from netvirt.errors import ClosedResourceError, NameTakenError, NoSuchObjectError, NotRootError

if TYPE_CHECKING:
    from netvirt._netlink import Netlink, Rtnl

T = TypeVar("T")

NETNS_DIR = "/run/netns"
_HOST_NS_PATH = f"/proc/{os.getpid()}/ns/net"
_netns_dir_lock = threading.Lock()
_netns_dir_ready = False
_POOL_SIZE = 4
_pool: cf.ThreadPoolExecutor | None = None
_home_fd = -1


def _shared_pool() -> cf.ThreadPoolExecutor:
    global _pool, _home_fd
    if _pool is None:
        _home_fd = os.open(_HOST_NS_PATH, os.O_RDONLY | os.O_CLOEXEC)
        _pool = cf.ThreadPoolExecutor(_POOL_SIZE, thread_name_prefix="netvirt-ns")
    return _pool


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


class _Strand:
    """Runs one namespace's calls one at a time, in order, on the shared pool."""

    def __init__(self, enter: Callable[[], None], idle: Callable[[], None]) -> None:
        self._enter = enter
        self._idle = idle
        self._queue: deque[tuple[Callable[[], Any], cf.Future[Any]]] = deque()
        self._lock = threading.Lock()
        self._running = False

    def submit(self, fn: Callable[[], T]) -> cf.Future[T]:
        fut: cf.Future[T] = cf.Future()
        with self._lock:
            self._queue.append((fn, fut))
            start, self._running = not self._running, True
        if start:
            _shared_pool().submit(self._drain)
        return fut

    def run_if_idle(self, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``fn`` now on the calling thread if nothing is queued or running.

        For work that needs no namespace (closing fds): it saves a pool hop.
        """
        with self._lock:
            if self._running or self._queue:
                return False, None
            self._running = True
        try:
            return True, fn()
        finally:
            with self._lock:
                self._running = False
                start = bool(self._queue)
                if start:
                    self._running = True
            if start:  # something was queued meanwhile
                _shared_pool().submit(self._drain)

    def _drain(self) -> None:
        entered = False
        try:
            while True:
                with self._lock:
                    item = self._queue.popleft() if self._queue else None
                if item is None:
                    if entered:  # the burst is over: release per-burst resources
                        with contextlib.suppress(Exception):
                            self._idle()
                        entered = False
                    with self._lock:
                        if not self._queue:
                            self._running = False
                            return
                    continue
                fn, fut = item
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    if not entered:
                        self._enter()
                        entered = True
                    result = fn()
                except BaseException as exc:
                    fut.set_exception(exc)
                else:
                    fut.set_result(result)
        finally:
            try:
                _sys.setns(_home_fd)  # back home, whatever the calls did
            except OSError as exc:  # pragma: no cover - cannot happen with a valid fd
                sys.stderr.write(f"netvirt: fatal: cannot return to the host namespace: {exc}\n")
                os._exit(70)


class Namespace:
    """One network namespace: created and owned, borrowed, or the host's own.

    Use :meth:`create`, :meth:`borrow` or :meth:`host`; the constructor does no I/O.
    Only a namespace created by this object is deleted by :meth:`close`.
    """

    def __init__(self, name: str | None, *, owned: bool) -> None:
        self.name = name
        self.owned = owned
        self._strand = _Strand(self._enter, self._idle)
        self._fd = -1
        self._rtnl: Rtnl | None = None
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
    async def create(cls, name: str, *, tag: str | None = None) -> Namespace:
        """Create a new named namespace; fail with NameTakenError if it exists.

        ``tag`` (a lab's ``netvirt:<lab>``) marks the namespace as its creator's
        *before* it becomes visible, so that ownership can be proven from the
        kernel's side alone after a ``kill -9`` at any instant (see
        :func:`netns_tag`): the name file appears atomically with the tag as
        its content, and the namespace's ``lo`` carries it as ifalias before the
        namespace is bind-mounted on that name.
        """
        require_root("creating a network namespace")
        ns = cls(name, owned=True)
        try:
            await ns.call(ns._create_here, tag)
        except BaseException as exc:
            # also on cancellation: the strand may still finish creating; close()
            # queues behind it and removes the name only if we made it
            await unwind(exc, ns.close())
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
        except BaseException as exc:
            await unwind(exc, ns.close())
            raise
        return ns

    @classmethod
    async def host(cls) -> Namespace:
        """The namespace netvirt's own process started in (never deleted)."""
        ns = cls(None, owned=False)
        await ns.call(ns._enter_here)
        return ns

    def _enter(self) -> None:
        """Strand hook: move the worker thread into this namespace (once per burst)."""
        if self._fd >= 0:
            _sys.setns(self._fd)

    def _idle(self) -> None:
        """Strand hook, at the end of a burst: close the netlink socket.

        It is reopened on the next use (~30 us). A closed netlink socket lets
        go of its namespace only after an RCU grace period, so a lab that
        kept one per namespace until teardown was destroyed measurably later.
        """
        rtnl, self._rtnl, self._nl = self._rtnl, None, None
        if rtnl is not None:
            rtnl.close()

    def _create_here(self, tag: str | None = None) -> None:
        assert self.name is not None
        with translate(f"prepare {NETNS_DIR}", netns=self.name,
                       hint="is this a container without mount rights?"):
            _prepare_netns_dir()
        path = netns_path(self.name)
        try:
            _make_name_file(path, tag)
        except FileExistsError:
            raise NameTakenError(
                f"network namespace {self.name!r} exists already; "
                f"if it is a leftover of netvirt, run 'netvirt down' for its lab, "
                f"else choose another lab name"
            ) from None
        self._made = True
        from netvirt._netlink import Req, Rtnl
        from netvirt._netlink import encode as _nlmsg

        try:
            with translate("create namespace", netns=self.name):
                _sys.unshare_net()
                # lo is tagged (and up) while the namespace is still this thread's alone
                self._rtnl = Rtnl(self.name)
                self._rtnl.request([Req(_nlmsg.set_link(ifname="lo", up=True, alias=tag), "set lo up", "lo")])
                _sys.mount("/proc/thread-self/ns/net", path, "none", _sys.MS_BIND)
        except BaseException:
            self._idle()  # the netlink socket belongs to the namespace that is being dropped
            with contextlib.suppress(OSError):
                os.unlink(path)
            self._made = False
            raise
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

    def _enter_here(self) -> None:
        path = netns_path(self.name) if self.name else _HOST_NS_PATH
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            with translate("enter namespace", netns=self.name):
                _sys.setns(fd)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    # -- running things inside -------------------------------------------
    async def call(self, fn: Callable[..., T], *args: Any,
                   orphan: Callable[[T], object] | None = None) -> T:
        """Run ``fn(*args)`` inside this namespace (on its strand) and return its result.

        If the caller is cancelled while ``fn`` runs, ``fn`` still completes;
        ``orphan(result)`` then runs on the strand too, to release what ``fn``
        made (fds, links) that no one will ever receive.
        """
        if self._closed:
            raise ClosedResourceError(f"{self!r} is closed")
        fut = self._strand.submit(lambda: fn(*args))
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            if orphan is not None:
                # fn runs (or ran) anyway: the strand is FIFO, so this runs after it;
                # wait for the release so teardown that follows finds nothing left
                release = self._strand.submit(lambda: _run_orphan(fut, orphan))
                await complete(asyncio.wrap_future(release))
            raise

    @property
    def rtnl(self) -> Rtnl:
        """The raw rtnetlink socket of this namespace, opened on first use in a burst.

        Use on its strand only (it must be opened inside the namespace).
        """
        if self._rtnl is None:
            if self._fd < 0:
                raise ClosedResourceError(f"{self!r} is not open")
            from netvirt._netlink import Rtnl

            self._rtnl = Rtnl(self.name)
        return self._rtnl

    @property
    def netlink(self) -> Netlink:
        """This namespace's pyroute2 socket (opened on first use). Use on its strand."""
        if self._nl is None:
            from netvirt._netlink import Netlink

            self._nl = Netlink(self.rtnl)
        return self._nl

    async def nl(self, fn: Callable[[Netlink], T],
                 orphan: Callable[[Netlink, T], object] | None = None) -> T:
        """Run ``fn(netlink)`` on the strand (batch several requests in one hop).

        ``orphan(netlink, result)`` undoes ``fn`` if the caller was cancelled meanwhile.
        """
        undo = None if orphan is None else (lambda result: orphan(self.netlink, result))
        return await self.call(lambda: fn(self.netlink), orphan=undo)

    def fileno(self) -> int:
        """An fd on this namespace (for ``IFLA_NET_NS_FD``); valid until close()."""
        if self._fd < 0:
            raise ClosedResourceError(f"{self!r} is not open")
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
            with translate(f"sysctl {key}", netns=self.name):
                if value is not None:
                    with open(path, "w") as f:
                        f.write(str(value))
                with open(path) as f:
                    return f.read().strip()

        return await self.call(rw)

    # -- teardown --------------------------------------------------------
    async def close(self, *, remove: bool = True) -> None:
        """Close our sockets; delete the namespace if we created it (unless ``remove``
        is False: then call :meth:`remove` later). Safe twice."""
        if self._closed:
            if remove:
                self.remove()
            return
        self._closed = True

        def stop() -> None:
            if self._rtnl is not None:  # _nl only wraps it
                with contextlib.suppress(Exception):
                    self._rtnl.close()
            self._nl = self._rtnl = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

        done, _ = self._strand.run_if_idle(stop)  # closing fds needs no namespace
        if not done:
            await complete(asyncio.wrap_future(self._strand.submit(stop)))
        if remove:
            self.remove()

    def remove(self) -> None:
        """Delete the namespace's name if we created it (once; after close)."""
        if self.owned and self._made and self.name:
            self._made = False
            remove_netns(self.name)

    async def __aenter__(self) -> Namespace:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await complete(self.close())


def create_here_many(nss: Sequence[Namespace], *, tag: str | None,
                     created: Callable[[Namespace, Rtnl], None], stop: threading.Event) -> None:
    """On a pool thread: create each of ``nss`` (made with ``owned=True``) as
    :meth:`Namespace.create` does, one after the other in this one call (``unshare``
    needs no return home in between), without a strand hand-off per namespace.

    ``created(ns, rtnl)`` receives each new namespace with the netlink socket its
    creation opened inside it: the caller owns that socket (uses it from one thread at
    a time, closes it). Stops before the next namespace once ``stop`` is set, raises
    the first failure; the thread is back in the process's namespace either way. The
    namespaces made are the caller's to close (``Namespace.close`` removes them). For a
    builder's bulk path, see ``netvirt.topology.bulk``.
    """
    try:
        for ns in nss:
            if stop.is_set():
                return
            ns._create_here(tag)
            rtnl, ns._rtnl = ns._rtnl, None
            assert rtnl is not None
            created(ns, rtnl)
    finally:
        _sys.setns(_home_fd)


async def remove_many(nss: Sequence[Namespace], threads: int = _POOL_SIZE) -> list[Exception]:
    """:meth:`Namespace.remove` for each of ``nss`` (closed first), on ``threads`` pool
    threads; returns the errors. Completes under cancellation.

    Each unmount waits for an expedited RCU grace period after releasing the kernel's
    mount lock (``namespace_unlock``): on a busy machine ~150 us, 31 ms for a 200-node
    lab one by one. Unmounts on several threads share those waits.
    """
    errors: list[Exception] = []

    def share(part: Sequence[Namespace]) -> None:
        for ns in part:
            try:
                ns.remove()
            except Exception as exc:
                errors.append(exc)

    n = max(1, min(threads, len(nss)))
    pool = _shared_pool()
    await complete(asyncio.gather(*(asyncio.wrap_future(pool.submit(share, nss[i::n])) for i in range(n))))
    return errors


def _run_orphan(fut: cf.Future[T], orphan: Callable[[T], object]) -> None:
    if fut.cancelled() or fut.exception() is not None:
        return
    with contextlib.suppress(Exception):
        orphan(fut.result())


def _make_name_file(path: str, tag: str | None) -> None:
    """Create ``path`` holding ``tag``, atomically: it never exists empty or half-written.

    An O_TMPFILE file is written, then linked under the name (EEXIST if the name
    is taken: then nothing of ours exists). Where the filesystem has no O_TMPFILE,
    O_EXCL plus a write: a kill between the two leaves an empty file, which
    ``netns_tag`` reports as no one's.
    """
    data = (tag or "").encode()
    try:
        fd = os.open(os.path.dirname(path), os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o444)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o444)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return
    try:
        os.write(fd, data)
        _sys.link_fd(fd, path)
    finally:
        os.close(fd)


def netns_tag(name: str) -> str | None:
    """The tag its creator gave namespace ``name`` (see :meth:`Namespace.create`), or None.

    Mounted: the ifalias of its ``lo``, read from inside. Not mounted (its
    creation was cut short before the bind mount): the content of the name file.
    """
    path = netns_path(name)
    if not os.path.ismount(path):
        try:
            with open(path, "rb") as f:
                return f.read(256).decode(errors="replace") or None
        except OSError:
            return None

    def read_alias() -> str | None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _sys.setns(fd)
        finally:
            os.close(fd)
        try:
            from netvirt._netlink import Netlink, Rtnl

            rtnl = Rtnl(name)
            try:
                nl = Netlink(rtnl)
                return nl.link(nl.ifindex("lo")).alias
            finally:
                rtnl.close()
        finally:
            _sys.setns(_home_fd)

    try:
        return _shared_pool().submit(read_alias).result()
    except Exception:
        return None


def remove_netns(name: str) -> bool:
    """Unmount and unlink /run/netns/NAME. Returns False if it was not there."""
    path = netns_path(name)
    try:
        _sys.umount_detach(path)
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False
        if exc.errno != errno.EINVAL:  # EINVAL: a plain file, not mounted
            raise to_netvirt(exc.errno or 0, "delete namespace", None, name, exc.strerror) from exc
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True
