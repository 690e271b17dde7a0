"""The build's bulk path: the netlink work of a lab's own namespaces done by a few
workers, each with a share of the namespaces and one socket in each.

Theory of operation
-------------------
The general path runs every object's work as one call on its namespace's strand
(``netvirt.netns``): about four hand-offs between the event loop and the pool per
veth link (create, peer, their futures). At a few hundred links those hand-offs,
and the coroutine around each, cost as much as the kernel work itself. Here:

* the namespaces are created by ``create_namespaces`` (``workers`` threads, each
  creating its share in one call); the netlink socket each creation opened inside
  its namespace is kept by the :class:`Crew` for the rest of the build;
* each namespace belongs to one worker (round robin): a worker only ever uses the
  sockets of its own namespaces, so no socket is used by two threads at once and no
  ``setns`` is needed (a netlink socket acts in the namespace it was opened in);
* a plain veth link (both ends in lab namespaces, no datapath) is created in two
  rounds: each worker creates the pairs whose first end is in one of its namespaces
  (one batch per pair), then each worker finishes the peer ends in its namespaces
  (one batch per namespace); the readiness wait is one pass per worker.

The strands stay the owners of everything else (bridges, tun/tap, sysctls,
processes): the crew's sockets are its own, and it does its rounds between the
builder's phases. Every pair it creates is in a lab namespace, so it goes with
the namespace; on failure the builder's teardown removes them all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from netvirt._aio import complete
from netvirt.netns import Namespace, _shared_pool

if TYPE_CHECKING:
    from netvirt._netlink import Netlink, Rtnl
    from netvirt.devices import Veth

#: workers of the bulk path: the kernel serialises link work under one lock (RTNL)
WORKERS = 1


class Crew:
    """The build's workers and their sockets (one per namespace created in bulk)."""

    def __init__(self, pairs: Sequence[tuple[Namespace, Rtnl]], workers: int = WORKERS) -> None:
        self.workers = max(1, workers)
        self._sock: dict[Namespace, Rtnl] = {}
        self._nl: dict[Namespace, Netlink] = {}
        self._worker: dict[Namespace, int] = {}
        for i, (ns, rtnl) in enumerate(pairs):
            self._sock[ns] = rtnl
            self._worker[ns] = i % self.workers
        self._closed = False

    def owns(self, ns: Namespace) -> bool:
        return ns in self._sock and not self._closed

    def _netlink(self, ns: Namespace) -> Netlink:
        nl = self._nl.get(ns)
        if nl is None:
            from netvirt._netlink import Netlink

            nl = self._nl[ns] = Netlink(self._sock[ns])
        return nl

    async def run(self, jobs: Sequence[tuple[Namespace, Callable[[Netlink], Any]]]) -> None:
        """Run each ``fn(netlink of ns)`` on the worker that owns ``ns``, in order per
        worker, the workers in parallel. The first error (in each worker's order) is
        raised once every worker has stopped; a failed worker stops, the others finish
        their round. Completes under cancellation (then re-raises it)."""
        shares: list[list[tuple[Namespace, Callable[[Netlink], Any]]]] = [[] for _ in range(self.workers)]
        for ns, fn in jobs:
            shares[self._worker[ns]].append((ns, fn))
        stop = threading.Event()

        def work(share: list[tuple[Namespace, Callable[[Netlink], Any]]]) -> None:
            for ns, fn in share:
                if stop.is_set():
                    return
                try:
                    fn(self._netlink(ns))
                except BaseException:
                    stop.set()
                    raise

        pool = _shared_pool()
        futs = [asyncio.wrap_future(pool.submit(work, share)) for share in shares if share]
        results = await complete(asyncio.gather(*futs, return_exceptions=True))
        for r in results:
            if isinstance(r, BaseException):
                raise r

    async def make_veths(self, veths: Sequence[Veth]) -> None:
        """Create ``veths`` (both ends in namespaces of this crew), one pair after the
        other: the pair and its first end over the first namespace's socket, then its
        peer end over the second's. A pair that exists is marked created, also when this
        raises (the caller cleans those up).

        One pair at a time, not all pairs and then all peers: a pair gets carrier when
        its second end comes up, and the kernel handles carrier changes (linkwatch) at
        most 100 devices per run; a burst of hundreds left the rest for its next
        non-urgent run, up to a second later.
        """

        def create(v: Veth) -> Callable[[Netlink], None]:
            def fn(nl: Netlink) -> None:
                v.ifindex = v.add_here(nl)
                v._created = v.peer._created = True
                peer_nl = self._netlink(v.peer.netns)
                peer_nl.request(v.peer_requests(peer_nl))
            return fn

        await self.run([(v.netns, create(v)) for v in veths])

    async def settle(self, namespaces: Sequence[Namespace]) -> None:
        """Wait until each of ``namespaces`` is ready for traffic (``Netlink.wait_ports_enabled``),
        one pass per worker: by the time a worker reaches a namespace, the kernel has
        mostly handled it already."""
        await self.run([(ns, lambda nl: nl.wait_ports_enabled()) for ns in namespaces])

    def close(self) -> None:
        """Close the sockets (after the last round). Safe twice."""
        if self._closed:
            return
        self._closed = True
        for rtnl in self._sock.values():
            rtnl.close()
        self._nl.clear()
