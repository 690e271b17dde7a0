"""An impaired link: two taps joined by netvirt's datapath, with link control.

``ImpairedLink`` takes the place of a veth pair: each end is a tap (created
in its namespace by :class:`netvirt.devices.Tap` with offload, so it owns
and deletes it), named and addressed as the veth end would have been, and
a :class:`Datapath` thread forwards between them under the conditions of
each direction. What netvirt creates for it: two non-persistent taps (they
vanish with their fds, even after SIGKILL) and nothing in tc, so there is no
qdisc or filter to leave behind.

Control, per SPEC.md section 7: :meth:`impair` replaces the conditions of
what leaves an end (``both=True``: of both directions), :meth:`reset`
removes them, :meth:`down` / :meth:`up` pull and restore the carrier of
both ends, :meth:`stats` gives the counters and achieved delays. :meth:`end`
gives a handle bound to one end (what ``topo.link("a:eth0")`` returns).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from netvirt._aio import complete, unwind
from netvirt._netlink import Netlink
from netvirt.devices import Tap
from netvirt.devices.base import DEFAULT_ALIAS, IPInterface, NetnsArg
from netvirt.errors import UsageError

from .conditions import Conditions, parse_conditions
from .process import DatapathProcess

__all__ = ["BACKEND", "End", "ImpairedLink", "LinkEnd", "conditions_from_keys"]

BACKEND = "userspace (tap pair)"
#: Slots of the ring between a tap and its fd. A tap does not push back on the
#: stack: with the ring full, ``tun_net_xmit`` drops. A veth hands frames to its
#: peer at once, so a burst never loses anything there; the datapath reads a
#: batch per wake-up, and a 1000-slot ring lost 10% of a 3000-datagram burst in
#: a test. 8192 slots make the tap pair as patient as a veth.
TAP_TXQLEN = 8192


def _set_txqlen(index: int, nl: Netlink) -> None:
    nl.link_set(index, txqlen=TAP_TXQLEN)


@dataclass
class End:
    """One end of an impaired link: where it lives and how it is configured."""

    netns: NetnsArg
    ifname: str
    addresses: Iterable[str | IPInterface] = ()
    mtu: int | None = None
    mac: str | None = None
    master: str | None = None
    label: str = ""
    ipv6_linklocal: bool | None = None
    up: bool = True


def conditions_from_keys(keys: Mapping[str, Any], where: str = "impair") -> Conditions | None:
    """Conditions from keyword arguments as a user gives them (``delay="20ms"``); None if empty."""
    if not keys:
        return None
    cond, problems = parse_conditions(dict(keys), where)
    if cond is None:
        raise UsageError("; ".join(f"{p.path}: {p.message}" for p in problems))
    return cond


class ImpairedLink:
    """Two taps and the datapath between them. ``async with`` creates and deletes it."""

    backend = BACKEND

    def __init__(self, a: End, b: End, conditions: Mapping[int, Conditions | None] | None = None,
                 *, alias: str = DEFAULT_ALIAS, name: str = "", realtime: bool = True) -> None:
        self.ends = (a, b)
        self.realtime = realtime
        conds = conditions or {}
        self._initial = (conds.get(0), conds.get(1))
        self.alias = alias
        self.name = name or f"{a.label or a.ifname}--{b.label or b.ifname}"
        self.taps: list[Tap] = []
        self.datapath: DatapathProcess | None = None
        self._closed = False
        self._carrier = False
        self._conditions: list[Conditions | None] = list(self._initial)

    def __repr__(self) -> str:
        return f"<ImpairedLink {self.name} {'up' if self.carrier else 'down'}>"

    # -- lifecycle ---------------------------------------------------------------
    async def create(self) -> ImpairedLink:
        try:
            for end in self.ends:
                tap = Tap(end.ifname, netns=end.netns, offload=True, addresses=end.addresses, up=end.up,
                          mtu=end.mtu, mac=end.mac, master=end.master, alias=self.alias,
                          ipv6_linklocal=end.ipv6_linklocal)
                self.taps.append(tap)
                await tap.create()
                index = tap.ifindex
                await tap.netns.nl(functools.partial(_set_txqlen, index))
            fds = (self.taps[0].fileno(), self.taps[1].fileno())
            self.datapath = DatapathProcess(fds, name=self.name, realtime=self.realtime)
            self.datapath.spawn()
            await asyncio.get_running_loop().run_in_executor(None, self.datapath.wait_ready)
            for side, cond in enumerate(self._initial):
                if cond is not None:
                    self.datapath.configure(side, cond)
            self._carrier = True
        except BaseException as exc:
            await unwind(exc, self.aclose())
            raise
        return self

    async def aclose(self) -> None:
        """Stop the datapath and delete both taps. Safe twice; completes under cancellation."""
        if self._closed:
            return
        self._closed = True
        dp, self.datapath = self.datapath, None
        if dp is not None:
            dp.stop()
        await complete(self._close_taps())

    async def _close_taps(self) -> None:
        for tap in reversed(self.taps):
            await tap.aclose()

    def release(self) -> None:
        """Stop and close the fds without netlink: the namespaces are going away."""
        self._closed = True
        dp, self.datapath = self.datapath, None
        if dp is not None:
            dp.stop()
        for tap in self.taps:
            tap.release()

    async def __aenter__(self) -> ImpairedLink:
        return await self.create()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- control -------------------------------------------------------------------
    def _dp(self) -> DatapathProcess:
        if self.datapath is None:
            raise UsageError(f"link {self.name} is not running")
        return self.datapath

    def side(self, endpoint: int | str) -> int:
        if isinstance(endpoint, int):
            if endpoint not in (0, 1):
                raise UsageError(f"link {self.name}: end {endpoint} is not 0 or 1")
            return endpoint
        for i, end in enumerate(self.ends):
            if endpoint in (end.label, end.ifname) and end.label != self.ends[1 - i].label:
                return i
        raise UsageError(f"{endpoint!r} is not an end of link {self.name}: use "
                         f"{self.ends[0].label or 0} or {self.ends[1].label or 1}")

    def end(self, endpoint: int | str) -> LinkEnd:
        return LinkEnd(self, self.side(endpoint))

    async def impair(self, endpoint: int | str = 0, conditions: Conditions | None = None, *,
                     both: bool = False, **keys: Any) -> None:
        """Replace the conditions of what leaves ``endpoint`` (``both``: of both directions)."""
        if conditions is None:
            conditions = conditions_from_keys(keys)
        elif keys:
            raise UsageError("give conditions or keys, not both")
        side = self.side(endpoint)
        dp = self._dp()
        for s in (0, 1) if both else (side,):
            dp.configure(s, conditions)
            self._conditions[s] = conditions
        await asyncio.sleep(0)

    async def reset(self, endpoint: int | str = 0, *, both: bool = False) -> None:
        await self.impair(endpoint, None, both=both)

    async def down(self) -> None:
        """Pull the cable: both ends lose carrier, what is in flight is lost."""
        self._dp().set_carrier(False)
        self._carrier = False
        await asyncio.sleep(0)

    async def up(self) -> None:
        self._dp().set_carrier(True)
        self._carrier = True
        await asyncio.sleep(0)

    @property
    def carrier(self) -> bool:
        return self._carrier and self.datapath is not None

    def conditions(self, endpoint: int | str) -> Conditions | None:
        return self._conditions[self.side(endpoint)]

    def stats(self, endpoint: int | str | None = None) -> dict[str, Any]:
        """Counters of one direction, or of both keyed by end label, with the backend and carrier."""
        raw = self._dp().stats()
        dirs = raw["directions"]
        if endpoint is not None:
            return {"backend": self.backend, "carrier": raw["carrier"], **dirs[self.side(endpoint)]}
        return {"backend": self.backend, "carrier": raw["carrier"], "pid": raw["pid"],
                "scheduling": raw["scheduling"],
                "directions": {self.ends[i].label or str(i): dirs[i] for i in (0, 1)}}


class LinkEnd:
    """A link seen from one end: conditions set here apply to what leaves this end."""

    def __init__(self, link: ImpairedLink, side: int) -> None:
        self.link = link
        self.side = side

    def __repr__(self) -> str:
        return f"<LinkEnd {self.link.ends[self.side].label or self.side} of {self.link.name}>"

    async def impair(self, conditions: Conditions | None = None, *, both: bool = False,
                     **keys: Any) -> None:
        await self.link.impair(self.side, conditions, both=both, **keys)

    async def reset(self, *, both: bool = False) -> None:
        await self.link.reset(self.side, both=both)

    async def down(self) -> None:
        await self.link.down()

    async def up(self) -> None:
        await self.link.up()

    def stats(self) -> dict[str, Any]:
        return self.link.stats(self.side)

    @property
    def conditions(self) -> Conditions | None:
        return self.link.conditions(self.side)


