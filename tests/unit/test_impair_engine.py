"""netem's semantics on a virtual clock: every key, seeds, distributions, GE, rate and trace timing."""

from __future__ import annotations

import math
from random import Random

import pytest

from netvirt.impair import Conditions, Direction, Loss
from netvirt.impair.dist import TABLES, cdf, sample_delay
from netvirt.impair.engine import percentile

MS = 1_000_000


def pkt(i: int, size: int = 100) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def seq(p: bytes) -> int:
    return int.from_bytes(p[:4], "big")


def run(cond: Conditions, n: int, *, every: int = MS, size: int = 100) -> list[tuple[int, int]]:
    """Offer n packets, one per ``every`` ns; return (release time, seq) as released."""
    d = Direction(cond, now=0)
    out: list[tuple[int, int]] = []
    t = 0
    for i in range(n):
        t = i * every
        nxt = d.next_deadline()
        while nxt is not None and nxt <= t:  # release what fell due before this arrival
            out += [(nxt, seq(p)) for p in d.release(nxt)]
            nxt = d.next_deadline()
        d.enqueue(t, pkt(i, size))
        out += [(t, seq(p)) for p in d.release(t)]
    while (nxt := d.next_deadline()) is not None:
        out += [(nxt, seq(p)) for p in d.release(nxt)]
    return out


def binomial_99(n: int, p: float) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 2.576 * sd, n * p + 2.576 * sd


def test_constant_delay_is_exact() -> None:
    out = run(Conditions(delay=10 * MS), 50)
    assert [s for _t, s in out] == list(range(50))
    assert all(t == s * MS + 10 * MS for t, s in out)


def test_no_conditions_pass_at_once() -> None:
    d = Direction(None)
    assert d.passthrough
    d.enqueue(5, b"x")
    assert d.release(5) == [b"x"] and d.next_deadline() is None


def test_next_deadline_is_the_earliest_time_to_send() -> None:
    d = Direction(Conditions(delay=10 * MS), now=0)
    d.enqueue(0, b"a")
    d.enqueue(3 * MS, b"b")
    assert d.next_deadline() == 10 * MS
    assert d.release(10 * MS - 1) == []
    assert d.release(10 * MS) == [b"a"] and d.next_deadline() == 13 * MS
    assert d.release(20 * MS) == [b"b"]  # everything due in one wake-up


def ks(samples: list[float], law: str, mu: float, sigma: float) -> float:
    xs = sorted(samples)
    n = len(xs)
    return max(max(abs(cdf(law, mu, sigma, x) - i / n), abs(cdf(law, mu, sigma, x) - (i + 1) / n))
               for i, x in enumerate(xs))


@pytest.mark.parametrize("law", ["uniform", "normal", "pareto", "paretonormal"])
def test_jitter_follows_its_distribution(law: str) -> None:
    rng = Random(7)
    mu, sigma = 100 * MS, 10 * MS  # far from 0: no clamping
    xs = [sample_delay(rng, mu, sigma, law) for _ in range(20000)]
    assert ks(xs, law, mu, sigma) < 0.015  # Kolmogorov-Smirnov distance
    other = "normal" if law != "normal" else "uniform"
    assert ks(xs, other, mu, sigma) > 0.03  # and the test can tell the laws apart


def test_distribution_tables_shapes() -> None:
    # netem's tables: normal symmetric with sd ~1, pareto skewed right, 4096 entries of 1/8192
    for table in TABLES.values():
        assert len(table) == 4096
    normal = TABLES["normal"]
    sd = math.sqrt(sum(v * v for v in normal) / len(normal)) / 8192
    assert 0.97 < sd < 1.03 and abs(sum(normal)) / len(normal) < 50
    pareto = sorted(TABLES["pareto"])
    assert pareto[2048] < 0 < pareto[-1] and pareto[-1] == 32767


def test_uniform_jitter_stays_in_its_window() -> None:
    rng = Random(1)
    xs = [sample_delay(rng, 20 * MS, 2 * MS, "uniform") for _ in range(5000)]
    assert min(xs) >= 18 * MS and max(xs) < 22 * MS
    assert sample_delay(rng, 1 * MS, 5 * MS, "uniform") >= 0  # never negative


def test_jitter_reorders_without_a_rate_like_netem_tfifo() -> None:
    out = run(Conditions(delay=10 * MS, jitter=5 * MS, seed=3), 500, every=MS // 10)
    order = [s for _t, s in out]
    assert sorted(order) == list(range(500)) and order != list(range(500))
    times = [t for t, _s in out]
    assert times == sorted(times)


def test_same_seed_same_decisions() -> None:
    cond = Conditions(delay=5 * MS, jitter=2 * MS, loss=Loss("random", 0.1), duplicate=0.05,
                      reorder=0.1, gap=3, seed=1234)
    a, b = run(cond, 2000), run(cond, 2000)
    assert a == b
    c = run(Conditions(**{**cond.__dict__, "seed": 99}), 2000)
    assert c != a


@pytest.mark.parametrize("p", [0.01, 0.10])
def test_random_loss_within_binomial_interval(p: float) -> None:
    n = 100_000
    d = Direction(Conditions(loss=Loss("random", p), seed=5))
    for i in range(n):
        d.enqueue(i, b"x")
        d.release(i)
    lo, hi = binomial_99(n, p)
    assert lo <= d.counters.dropped_loss <= hi
    assert d.counters.passed + d.counters.dropped_loss == n


def test_gilbert_elliott_statistics() -> None:
    loss = Loss("gilbert-elliott", p=0.01, r=0.2, h=0.1, k=0.995)
    d = Direction(Conditions(loss=loss, seed=11))
    n = 200_000
    lost = []
    for i in range(n):
        d.enqueue(i, b"x")
        lost.append(not d.release(i))
    rate = sum(lost) / n
    assert abs(rate - loss.mean()) < 0.15 * loss.mean()  # ~4.5% long-run
    # bursts: losses cluster (GE), unlike Bernoulli at the same rate
    after_loss = sum(1 for i in range(1, n) if lost[i] and lost[i - 1]) / max(1, sum(lost[:-1]))
    assert after_loss > 3 * rate
    # pure Gilbert (h=0, k=1): bursts have mean length 1/r
    d = Direction(Conditions(loss=Loss("gilbert-elliott", p=0.02, r=0.25), seed=2))
    runs, cur = [], 0
    for i in range(n):
        d.enqueue(i, b"x")
        if not d.release(i):
            cur += 1
        elif cur:
            runs.append(cur)
            cur = 0
    assert 3.6 < sum(runs) / len(runs) < 4.4


def test_duplicate() -> None:
    n = 20_000
    out = run(Conditions(duplicate=0.2, seed=4), n, every=1)
    counts: dict[int, int] = {}
    for _t, s in out:
        counts[s] = counts.get(s, 0) + 1
    dup = sum(1 for c in counts.values() if c == 2)
    lo, hi = binomial_99(n, 0.2)
    assert lo <= dup <= hi and max(counts.values()) == 2 and len(counts) == n


def test_corrupt_flips_one_bit() -> None:
    d = Direction(Conditions(corrupt=1.0, seed=1))
    original = bytes(range(200))
    d.enqueue(0, original)
    (got,) = d.release(0)
    diff = [a ^ b for a, b in zip(got, original, strict=True) if a != b]
    assert len(diff) == 1 and bin(diff[0]).count("1") == 1
    assert d.counters.corrupted == 1


def test_reorder_with_gap() -> None:
    cond = Conditions(delay=10 * MS, reorder=0.25, gap=5, seed=8)
    out = run(cond, 5000, every=MS // 10)
    d = Direction(cond)
    jumped = [s for (t, s) in out if t == s * (MS // 10)]  # sent at arrival: jumped the queue
    assert jumped, "some packets must be reordered"
    # inside a gap nothing jumps: between two jumpers at least gap-1 packets are delayed
    assert all(b - a >= 5 for a, b in zip(jumped, jumped[1:], strict=False))
    # after a jump, gap-1 packets go the normal way, then each may jump with p = 25%:
    # one jump per (gap - 1) + 1/p packets on average
    expected = 5000 / (4 + 1 / 0.25)
    assert abs(len(jumped) - expected) < 0.1 * expected
    assert d.counters.reordered == 0  # a fresh direction counted nothing


def test_rate_serialises_packets() -> None:
    # 1 Mbit/s, 1250-byte packets: 10 ms each on the wire
    out = run(Conditions(rate=10**6), 20, every=0, size=1250)
    times = [t for t, _s in out]
    assert times == [(i + 1) * 10 * MS for i in range(20)]


def test_rate_after_delay_like_netem() -> None:
    # tts = max(now + delay, last tts) + len / rate
    d = Direction(Conditions(delay=5 * MS, rate=8 * 10**6), now=0)  # 1 byte/us
    d.enqueue(0, bytes(1000))
    d.enqueue(0, bytes(1000))
    assert d.next_deadline() == 5 * MS + 1000 * 1000
    d.release(6 * MS)
    assert d.next_deadline() == 5 * MS + 2000 * 1000
    d.release(100 * MS)
    d.enqueue(100 * MS, bytes(1000))  # link idle again: delay then serialise
    assert d.next_deadline() == 105 * MS + 1000 * 1000


@pytest.mark.parametrize("bits", [10**6, 10**8, 10**9])
def test_rate_accuracy(bits: int) -> None:
    n, size = 2000, 1500
    out = run(Conditions(rate=bits, limit=n), n, every=0, size=size)
    achieved = n * size * 8 / (out[-1][0] / 1e9)
    assert abs(achieved / bits - 1) < 0.001


def test_mahimahi_trace_timing_and_wrap() -> None:
    # opportunities at 1, 1, 2, 5 ms, repeating every 5 ms; 1500 bytes each
    cond = Conditions(trace=(1, 1, 2, 5))
    d = Direction(cond, now=0)
    for i in range(8):
        d.enqueue(0, pkt(i, 1500))
    times = []
    while (t := d.next_deadline()) is not None:
        times += [t] * len(d.release(t))
    assert times == [1 * MS, 1 * MS, 2 * MS, 5 * MS, 6 * MS, 6 * MS, 7 * MS, 10 * MS]
    # a 3000-byte packet needs two opportunities; two 750-byte packets share one
    d = Direction(cond, now=0)
    d.enqueue(0, bytes(3000))
    d.enqueue(0, bytes(750))
    d.enqueue(0, bytes(750))
    assert d.next_deadline() == 1 * MS
    assert len(d.release(1 * MS)) == 1
    assert d.next_deadline() == 2 * MS and len(d.release(2 * MS)) == 2
    # an idle link wastes its opportunities (Mahimahi): the next packet takes the next one
    d.enqueue(12 * MS + 500_000, bytes(100))
    assert d.next_deadline() == 15 * MS


def test_limit_drops_and_counts() -> None:
    d = Direction(Conditions(rate=10**6, limit=10), now=0)
    for i in range(25):
        d.enqueue(0, pkt(i, 1000))
    assert d.depth == 10 and d.counters.dropped_limit == 15


def test_configure_keeps_the_queue() -> None:
    d = Direction(Conditions(delay=50 * MS), now=0)
    d.enqueue(0, b"a")
    d.configure(Conditions(delay=1 * MS), 1 * MS)
    d.enqueue(1 * MS, b"b")
    assert d.release(2 * MS) == [b"b"] and d.release(50 * MS) == [b"a"]
    d.configure(None, 60 * MS)
    assert d.passthrough and d.counters.dropped == 0


def test_flush_counts_what_the_pulled_cable_lost() -> None:
    d = Direction(Conditions(delay=50 * MS), now=0)
    for i in range(7):
        d.enqueue(0, pkt(i))
    assert d.flush() == 7 and d.depth == 0 and d.counters.dropped_down == 7


def test_stats_give_achieved_delay_percentiles() -> None:
    d = Direction(Conditions(delay=10 * MS, jitter=1 * MS, seed=1), now=0)
    for i in range(1000):
        d.enqueue(i * MS, pkt(i))
    while (t := d.next_deadline()) is not None:
        d.release(t)
    s = d.stats()
    assert 9.8 < s["delay_p50_ms"] < 10.2 and 10.8 < s["delay_p99_ms"] <= 11.0
    assert s["passed"] == 1000 and s["conditions"] == {"delay": "10ms", "jitter": "1ms",
                                                       "distribution": "uniform", "seed": 1}
    assert percentile([], 0.5) == 0 and percentile([1, 2, 3], 0.5) == 2
