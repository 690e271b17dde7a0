"""The build's bulk path: the netlink work of a lab's own namespaces done by a few
workers over sockets the build owns, overlapped with the namespaces' creation.

Theory of operation
-------------------
The general path runs every object's work as one call on its namespace's strand
(``netvirt.netns``): about four hand-offs between the event loop and the pool per
veth link (create, peer, their futures). At a few hundred links those hand-offs,
and the coroutine around each, cost as much as the kernel work itself. Here:

* namespaces are created by :meth:`Crew.create`: two pool threads each create their
  share in one call (``netns.create_here_many``); the netlink socket each creation
  opened inside its namespace is kept by the crew, and the namespace is marked ready;
* plain veth links (both ends in lab namespaces, no datapath) are made by
  :meth:`Crew.make_veths` on one more pool thread, pair by pair, each pair as soon
  as its two namespaces are ready: while the creators are still at work. Creating a
  namespace is mostly work outside the kernel's RTNL lock, a link mostly under it,
  so the two overlap on two CPUs. One worker for the links: the kernel serialises
  link work under RTNL, so a second one only spins on it;
* a netlink socket acts in the namespace it was opened in: no ``setns`` for the
  links, and each socket is used by one thread at a time (its creator, then the
  links' worker, then the settle pass);
* any failure, or a cancellation, stops every worker at its next object; the
  first real error is raised once all have stopped. What exists is in the lab's
  namespaces, which the builder's teardown removes.

The strands stay the owners of everything else (bridges, tun/tap, sysctls,
processes); the crew's sockets are its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from netvirt._aio import complete
from netvirt.netns import Namespace, _shared_pool, create_here_many

if TYPE_CHECKING:
    from netvirt._netlink import Netlink, Rtnl
    from netvirt.devices import Veth

#: threads that create namespaces (in parallel: most of that work is outside RTNL)
CREATORS = 2


class _Stopped(Exception):
    """A worker stopped because another one failed (never what the caller sees)."""


class Crew:
    """The build's workers and their sockets (one per namespace it created)."""

    def __init__(self) -> None:
        self._sock: dict[Namespace, Rtnl] = {}
        self._nl: dict[Namespace, Netlink] = {}
        self._ready: dict[Namespace, threading.Event] = {}
        self._stop = threading.Event()
        self._failed: BaseException | None = None
        self._closed = False

    def expect(self, nss: Sequence[Namespace]) -> None:
        """Namespaces this crew will create (links may name them before they exist)."""
        for ns in nss:
            self._ready[ns] = threading.Event()

    def owns(self, ns: Namespace) -> bool:
        return ns in self._ready

    # -- workers -----------------------------------------------------------------
    async def _join(self, futs: list[asyncio.Future[Any]]) -> None:
        """Wait for every worker; on cancellation stop them first. Raise the first real
        error (a worker's ``_Stopped`` only means another one failed)."""
        gathered = asyncio.gather(*futs, return_exceptions=True)
        try:
            results = await asyncio.shield(gathered)
        except asyncio.CancelledError:
            self._abort(None)
            await complete(gathered)
            raise
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, _Stopped):
                raise r
        if self._failed is not None:
            raise self._failed
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _abort(self, exc: BaseException | None) -> None:
        if exc is not None and self._failed is None:
            self._failed = exc
        self._stop.set()
        for ev in self._ready.values():
            ev.set()  # wake whoever waits for a namespace that will not come

    def _netlink(self, ns: Namespace) -> Netlink:
        """The crew's netlink on ``ns``, once the namespace exists (waits for its creator)."""
        nl = self._nl.get(ns)
        if nl is None:
            self._ready[ns].wait()
            if ns not in self._sock:
                raise _Stopped
            from netvirt._netlink import Netlink

            nl = self._nl[ns] = Netlink(self._sock[ns])
        return nl

    async def create(self, nss: Sequence[Namespace], tag: str | None, creators: int = CREATORS) -> None:
        """Create ``nss`` (see ``netns.create_here_many``), ``creators`` threads in parallel."""

        def created(ns: Namespace, rtnl: Rtnl) -> None:
            self._sock[ns] = rtnl
            self._ready[ns].set()

        def share(part: Sequence[Namespace]) -> None:
            try:
                create_here_many(part, tag=tag, created=created, stop=self._stop)
            except BaseException as exc:
                self._abort(exc)
                raise

        n = max(1, min(creators, len(nss)))
        pool = _shared_pool()
        await self._join([asyncio.wrap_future(pool.submit(share, nss[i::n])) for i in range(n)])

    async def run(self, jobs: Sequence[tuple[Namespace, Callable[[Netlink], Any]]]) -> None:
        """Run each ``fn(the crew's netlink on ns)`` in order on one worker; the first
        failure stops it (and every other worker) and is raised."""

        def work() -> None:
            for ns, fn in jobs:
                if self._stop.is_set():
                    raise _Stopped
                try:
                    fn(self._netlink(ns))
                except _Stopped:
                    raise
                except BaseException as exc:
                    self._abort(exc)
                    raise

        if jobs:
            await self._join([asyncio.wrap_future(_shared_pool().submit(work))])

    async def make_veths(self, veths: Sequence[Veth]) -> None:
        """Create ``veths`` (both ends in namespaces of this crew), one pair after the
        other, each once its namespaces exist: the pair and its first end over the
        first namespace's socket, then its peer end over the second's. A pair that
        exists is marked created, also when this raises.

        One pair at a time, not all pairs and then all peers: a pair gets carrier when
        its second end comes up, and the kernel handles carrier changes (linkwatch) at
        most 100 devices per run; a burst of hundreds left the rest for its next
        non-urgent run, up to a second later.
        """

        def create(v: Veth) -> Callable[[Netlink], None]:
            def fn(nl: Netlink) -> None:
                peer_nl = self._netlink(v.peer.netns)
                v.ifindex = v.add_here(nl)
                v._created = v.peer._created = True
                peer_nl.request(v.peer_requests(peer_nl))
            return fn

        await self.run([(v.netns, create(v)) for v in veths])

    async def settle(self, namespaces: Sequence[Namespace]) -> None:
        """Wait until each of ``namespaces`` is ready for traffic (``Netlink.wait_ports_enabled``),
        one pass: by the time the worker reaches a namespace, the kernel has mostly
        handled it already."""
        await self.run([(ns, lambda nl: nl.wait_ports_enabled()) for ns in namespaces])

    def close(self) -> None:
        """Close the sockets (after the last round; the workers have all stopped). Safe twice."""
        if self._closed:
            return
        self._closed = True
        for rtnl in self._sock.values():
            rtnl.close()
        self._nl.clear()
