"""The netem engine: one direction of an impaired link, sans I/O, on a virtual clock.

Theory of operation. :class:`Direction` is netem's ``netem_enqueue()`` and
``netem_dequeue()`` (linux/net/sched/sch_netem.c) without a kernel: the
caller hands it packets with the time they arrived (``enqueue(now, pkt)``)
and asks for everything due (``release(now)``); ``next_deadline()`` is the
absolute time (ns, CLOCK_MONOTONIC in the datapath, anything in tests) at
which the next packet becomes due, so a driver arms one timer for it and
releases every due packet per wake-up. Nothing here reads a clock, sleeps or
touches an fd, so every key is tested on a virtual clock.

Per packet, in netem's order: a duplicate is decided (the copy passes the
same pipeline again, without duplication), then the loss model (random, or
Gilbert-Elliott as netem's ``loss_gilb_ell``), then corruption (one random
bit flipped), then the queue bound (``limit`` packets, and a byte bound),
then reordering (every packet but the ones inside the last ``gap`` may jump
the queue with probability ``reorder``, sent at once) or the time to send:
``now + delay`` (jitter drawn from the distribution), and with a rate,
``max(now + delay, last time to send) + serialisation time`` (a trace: the
first delivery opportunities that carry the packet's bytes). The queue is a
heap ordered by time to send (netem's tfifo), so jitter without a rate
reorders, as in netem.

Packets are opaque to the engine: a :class:`Frames` object says how long a
packet is on the wire (a GSO super-packet counts each segment's headers),
how to cut a super-packet when a decision is taken per wire packet, and how
to corrupt one.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from dataclasses import dataclass
from random import Random
from typing import Any, Protocol

from .conditions import BYTE_LIMIT, TRACE_MTU, Conditions
from .dist import sample_delay

__all__ = ["Counters", "Direction", "Frames", "PlainFrames", "percentile"]

_SAMPLES = 8192


class Frames(Protocol):
    def wire_len(self, pkt: bytes) -> int: ...
    def segment(self, pkt: bytes) -> list[bytes]: ...
    def corrupt(self, pkt: bytes, rng: Random) -> bytes: ...


class PlainFrames:
    """Packets as they are: a packet is its length on the wire; corruption flips a bit."""

    def wire_len(self, pkt: bytes) -> int:
        return len(pkt)

    def segment(self, pkt: bytes) -> list[bytes]:
        return [pkt]

    def corrupt(self, pkt: bytes, rng: Random) -> bytes:
        if not pkt:
            return pkt
        buf = bytearray(pkt)
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        return bytes(buf)


@dataclass
class Counters:
    received: int = 0
    passed: int = 0
    passed_bytes: int = 0
    dropped_loss: int = 0
    dropped_limit: int = 0
    dropped_down: int = 0
    duplicated: int = 0
    corrupted: int = 0
    reordered: int = 0

    @property
    def dropped(self) -> int:
        return self.dropped_loss + self.dropped_limit + self.dropped_down


def percentile(sorted_values: list[int], q: float) -> int:
    """The ``q``-quantile (0..1) of sorted values, nearest rank."""
    if not sorted_values:
        return 0
    i = min(len(sorted_values) - 1, max(0, int(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[i]


class Direction:
    """What leaves one endpoint: netem's queue and decisions for one direction."""

    def __init__(self, conditions: Conditions | None, *, now: int = 0,
                 frames: Frames | None = None) -> None:
        self.frames: Frames = frames or PlainFrames()
        self.counters = Counters()
        self._heap: list[tuple[int, int, int, int, bytes]] = []  # (tts, seq, arrival, wire, pkt)
        self._head: deque[tuple[int, int, bytes]] = deque()  # reordered: (arrival, wire, pkt)
        self._seq = 0
        self._qbytes = 0
        self._last_tts = 0
        self._counter = 0
        self._bad = False  # Gilbert-Elliott state
        self._delays: deque[int] = deque(maxlen=_SAMPLES)
        self.cond: Conditions | None = None
        self.rng = Random()
        self.configure(conditions, now)

    # -- configuration -----------------------------------------------------
    def configure(self, conditions: Conditions | None, now: int) -> None:
        """Replace the conditions; what is queued keeps its time to send (``tc qdisc change``)."""
        self.cond = None if conditions is None or conditions.idle else conditions
        seed = conditions.seed if conditions is not None else None
        self.rng = Random(seed)
        self._counter = 0
        self._bad = False
        if self.cond is not None and self.cond.trace:
            ms = self.cond.trace
            self._trace = [m * 1_000_000 for m in ms]
            self._period = ms[-1] * 1_000_000
            self._base = now
            self._k = -1
            self._left = TRACE_MTU

    @property
    def passthrough(self) -> bool:
        """True if packets may go straight through (no conditions, nothing queued)."""
        return self.cond is None and not self._heap and not self._head

    # -- the queue -----------------------------------------------------------
    @property
    def depth(self) -> int:
        return len(self._heap) + len(self._head)

    @property
    def depth_bytes(self) -> int:
        return self._qbytes

    def next_deadline(self) -> int | None:
        if self._head:
            return self._head[0][0]
        return self._heap[0][0] if self._heap else None

    def enqueue(self, now: int, pkt: bytes) -> None:
        """A packet arrived at ``now``: decide its fate as netem would."""
        cond = self.cond
        if cond is None:
            self._push(now, now, self.frames.wire_len(pkt), pkt)
            return
        if cond.per_packet:
            segs = self.frames.segment(pkt)
            for seg in segs:
                self._one(now, seg, cond, True)
        else:
            self._one(now, pkt, cond, True)

    def _one(self, now: int, pkt: bytes, cond: Conditions, may_dup: bool) -> None:
        self.counters.received += may_dup
        rng = self.rng
        count = 1
        if may_dup and cond.duplicate and rng.random() < cond.duplicate:
            count += 1
        if cond.loss is not None and self._lost(cond, rng):
            count -= 1
        if count == 0:
            self.counters.dropped_loss += 1
            return
        if cond.corrupt and rng.random() < cond.corrupt:
            pkt = self.frames.corrupt(pkt, rng)
            self.counters.corrupted += 1
        wire = self.frames.wire_len(pkt)
        if self.depth >= cond.limit or self._qbytes + wire > BYTE_LIMIT:
            self.counters.dropped_limit += 1
            return
        if count > 1:
            self.counters.duplicated += 1
            self._one(now, pkt, cond, False)
        if cond.gap == 0 or self._counter < cond.gap - 1 or rng.random() >= cond.reorder:
            delay = sample_delay(rng, cond.delay, cond.jitter, cond.distribution)
            if cond.rate or cond.trace:
                start = max(now + delay, self._last_tts)
                tts = self._trace_departure(start, wire) if cond.trace else \
                    start + wire * 8_000_000_000 // cond.rate
            else:
                tts = now + delay
            self._counter += 1
            self._push(tts, now, wire, pkt)
        else:
            self._counter = 0
            self.counters.reordered += 1
            self._head.append((now, wire, pkt))
            self._qbytes += wire

    def _lost(self, cond: Conditions, rng: Random) -> bool:
        loss = cond.loss
        assert loss is not None
        if loss.model == "random":
            return rng.random() < loss.p
        if not self._bad:  # netem's loss_gilb_ell: move, then lose by the state it was in
            if rng.random() < loss.p:
                self._bad = True
            return rng.random() < 1.0 - loss.k
        if rng.random() < loss.r:
            self._bad = False
        return rng.random() < 1.0 - loss.h

    def _trace_departure(self, start: int, nbytes: int) -> int:
        trace, period, n = self._trace, self._period, len(self._trace)
        if self._k < 0 or self._opp(self._k) < start:
            rel = max(0, start - self._base)
            cycles, within = divmod(rel, period)
            i = bisect.bisect_left(trace, within)
            if i == n:
                cycles, i = cycles + 1, 0
            self._k = cycles * n + i
            self._left = TRACE_MTU
        while nbytes > self._left:
            nbytes -= self._left
            self._k += 1
            self._left = TRACE_MTU
        self._left -= nbytes
        tts = self._opp(self._k)
        if self._left == 0:
            self._k += 1
            self._left = TRACE_MTU
        return tts

    def _opp(self, k: int) -> int:
        cycles, i = divmod(k, len(self._trace))
        return self._base + cycles * self._period + self._trace[i]

    def _push(self, tts: int, arrival: int, wire: int, pkt: bytes) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (tts, self._seq, arrival, wire, pkt))
        self._qbytes += wire
        if tts > self._last_tts:
            self._last_tts = tts

    def release(self, now: int, lead: int = 0) -> list[bytes]:
        """Every packet due at ``now + lead``, in sending order (reordered ones first).

        ``lead`` is the driver's measured wake-up latency: what it releases up to
        ``lead`` early reaches the wire on time, on average.
        """
        out: list[bytes] = []
        c = self.counters
        delays = self._delays
        while self._head:
            arrival, wire, pkt = self._head.popleft()
            self._qbytes -= wire
            c.passed_bytes += wire
            delays.append(now - arrival)
            out.append(pkt)
        heap = self._heap
        due = now + lead
        while heap and heap[0][0] <= due:
            _tts, _seq, arrival, wire, pkt = heapq.heappop(heap)
            self._qbytes -= wire
            c.passed_bytes += wire
            delays.append(now - arrival)
            out.append(pkt)
        c.passed += len(out)
        return out

    def flush(self) -> int:
        """Drop everything queued (the cable was pulled). Returns how many."""
        n = self.depth
        self._heap.clear()
        self._head.clear()
        self._qbytes = 0
        self.counters.dropped_down += n
        return n

    def note_passthrough(self, npkts: int, nbytes: int) -> None:
        """Count packets the driver forwarded without queueing them (no conditions)."""
        self.counters.received += npkts
        self.counters.passed += npkts
        self.counters.passed_bytes += nbytes

    def stats(self) -> dict[str, Any]:
        c = self.counters
        delays = sorted(self._delays)
        return {
            "conditions": self.cond.to_dict() if self.cond else {},
            "received": c.received, "passed": c.passed, "passed_bytes": c.passed_bytes,
            "dropped": c.dropped, "dropped_loss": c.dropped_loss, "dropped_limit": c.dropped_limit,
            "dropped_down": c.dropped_down, "duplicated": c.duplicated, "corrupted": c.corrupted,
            "reordered": c.reordered, "queue": self.depth, "queue_bytes": self._qbytes,
            "delay_p50_ms": percentile(delays, 0.5) / 1e6, "delay_p99_ms": percentile(delays, 0.99) / 1e6,
        }
