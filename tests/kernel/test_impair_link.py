"""Impaired links on a real kernel: every key's effect on real traffic, link control, teardown."""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
from pathlib import Path

import pytest

from netvirt.impair import Conditions, End, ImpairedLink
from netvirt.netns import Namespace
from tests.conftest import unique
from tests.kernel.impair_helpers import B_IP, Pair, pair, probe, tcp_transfer
from tests.test_devices_support import ip_link, sh

__all__ = ["pair"]
pytestmark = pytest.mark.root
MS = 1_000_000


def within_binomial(k: int, n: int, p: float) -> bool:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 3.3 * sd <= k <= n * p + 3.3 * sd  # 99.9%: the suite must not flake


async def test_delay(pair: Pair) -> None:
    await pair.link.impair("a:eth0", delay="20ms")
    res = await probe(pair.a, pair.b, 50, interval=0.004)
    assert len(res.got) == 50
    d = sorted(res.delays_ms)
    assert d[0] >= 19.9 and d[len(d) // 2] < 21.0 and d[int(len(d) * 0.9)] < 23, d
    st = pair.link.stats("a:eth0")
    assert st["conditions"] == {"delay": "20ms"} and 19.9 < st["delay_p50_ms"] < 20.5
    # the other direction is untouched
    assert pair.link.stats("b:eth0")["conditions"] == {}


async def test_jitter_spreads_delays(pair: Pair) -> None:
    await pair.link.impair(0, delay="20ms", jitter="5ms", distribution="uniform")
    res = await probe(pair.a, pair.b, 300, interval=0.001)
    d = res.delays_ms
    assert len(d) == 300
    inside = [x for x in d if 14.9 <= x < 25.5]
    assert min(d) >= 14.9 and len(inside) >= 0.95 * len(d)  # late outliers: a loaded machine
    assert min(d) < 16.5 and max(d) > 23.5  # the window is used
    assert 2.2 < statistics.pstdev(d) < 3.7  # uniform over +-5 ms: sd 2.89
    assert res.seqs != sorted(res.seqs)  # jitter without a rate reorders, as in netem


async def test_random_loss(pair: Pair) -> None:
    await pair.link.impair(0, loss="20%", seed=1)
    res = await probe(pair.a, pair.b, 3000)
    lost = res.sent - len(res.got)
    assert within_binomial(lost, 3000, 0.2), lost
    assert pair.link.stats(0)["dropped_loss"] == lost


async def test_gilbert_elliott_loss_comes_in_bursts(pair: Pair) -> None:
    await pair.link.impair(0, loss={"model": "gilbert-elliott", "p": "5%", "r": "25%"}, seed=3)
    res = await probe(pair.a, pair.b, 4000)
    got = set(res.seqs)
    lost = [i not in got for i in range(4000)]
    rate = sum(lost) / 4000
    assert 0.1 < rate < 0.26  # long-run 5 / 30 = 16.7%
    both = sum(1 for i in range(1, 4000) if lost[i] and lost[i - 1])
    assert both / max(1, sum(lost)) > 0.5  # after a loss, another one is likely (1 - r = 75%)


async def test_duplicate(pair: Pair) -> None:
    await pair.link.impair(0, duplicate="30%", seed=2)
    res = await probe(pair.a, pair.b, 2000)
    dups = len(res.got) - len(set(res.seqs))
    assert set(res.seqs) == set(range(2000))
    assert within_binomial(dups, 2000, 0.3)
    assert pair.link.stats(0)["duplicated"] == dups


async def test_corrupt_is_seen_and_dropped_by_the_receiver(pair: Pair) -> None:
    await pair.link.impair(0, corrupt="30%", seed=4)
    res = await probe(pair.a, pair.b, 2000, size=200)
    corrupted = pair.link.stats(0)["corrupted"]
    assert within_binomial(corrupted, 2000, 0.3)
    # the receiver's checksums catch the flipped bit (a flip in the source MAC passes harmlessly)
    assert 2000 - corrupted <= len(res.got) <= 2000 - corrupted * 0.85
    pad = bytes(200 - 12)
    assert all(p[12:] == pad for p in res.payloads)  # nothing corrupted was delivered
    rc, out, _ = await sh("ip", "netns", "exec", str(pair.b.name), "cat", "/proc/net/snmp")
    udp = [line.split() for line in out.splitlines() if line.startswith("Udp:")]
    fields = dict(zip(udp[0], udp[1], strict=True))
    assert int(fields["InCsumErrors"]) > 0


async def test_reorder(pair: Pair) -> None:
    await pair.link.impair(0, delay="10ms", reorder={"probability": "50%", "gap": 1}, seed=5)
    res = await probe(pair.a, pair.b, 400, interval=0.0005)
    assert sorted(res.seqs) == list(range(400))
    fast = [d for d in res.delays_ms if d < 9]  # jumped the queue: not delayed by 10 ms
    reordered = pair.link.stats(0)["reordered"]
    assert within_binomial(reordered, 400, 0.5) and reordered - 3 <= len(fast) <= reordered
    assert res.seqs != sorted(res.seqs)


async def test_rate_limits_tcp(pair: Pair) -> None:
    await pair.link.impair(0, rate="20mbit")
    seconds, intact = await tcp_transfer(pair.a, pair.b, 2_500_000)
    assert intact
    wire_bits = 2_500_000 * 1514 / 1448 * 8  # TCP segments with their headers on the wire
    achieved = wire_bits / seconds
    assert 0.85 * 20e6 < achieved < 1.03 * 20e6, achieved


async def test_mahimahi_trace(pair: Pair, tmp_path: Path) -> None:
    trace = tmp_path / "link.trace"
    trace.write_text("".join(f"{ms}\n" for ms in range(1, 11)))  # one 1500 B slot per ms: 12 Mbit/s
    await pair.link.impair(0, rate={"trace": str(trace)})
    seconds, intact = await tcp_transfer(pair.a, pair.b, 1_500_000)
    assert intact
    achieved = 1_500_000 * 1514 / 1448 * 8 / seconds
    assert 0.8 * 12e6 < achieved < 1.05 * 12e6, achieved


async def test_limit_bounds_the_queue(pair: Pair) -> None:
    await pair.link.impair(0, rate="1mbit", limit=20)
    res = await probe(pair.a, pair.b, 200, size=1000, settle=0.6)
    st = pair.link.stats(0)
    assert 20 <= len(res.got) <= 24
    assert st["dropped_limit"] == 200 - len(res.got)


async def test_same_seed_same_decisions(pair: Pair) -> None:
    runs = []
    for port in (7001, 7002, 7003):
        seed = 7 if port != 7003 else 8
        await pair.link.impair(0, loss="30%", duplicate="10%", seed=seed)
        res = await probe(pair.a, pair.b, 500, port=port)
        runs.append(sorted(res.seqs))
    assert runs[0] == runs[1] and runs[0] != runs[2]


async def test_down_pulls_the_carrier_of_both_ends_and_up_restores(pair: Pair) -> None:
    ping = ("ip", "netns", "exec", str(pair.a.name), "ping", "-c", "1", "-W", "1", B_IP)
    assert (await sh(*ping))[0] == 0
    await pair.link.down()
    for ns in (pair.a, pair.b):
        info = await ip_link(ns, "eth0")
        assert info is not None and "NO-CARRIER" in info["flags"] and "UP" in info["flags"]
    assert (await sh(*ping))[0] != 0  # no carrier: the stack does not even send
    back = ("ip", "netns", "exec", str(pair.b.name), "ping", "-c", "1", "-W", "1", "10.231.0.1")
    assert (await sh(*back))[0] != 0
    await pair.link.up()
    for _ in range(20):
        if (await sh(*ping))[0] == 0:
            break
    else:
        pytest.fail("ping still fails after up()")
    info = await ip_link(pair.b, "eth0")
    assert info is not None and "NO-CARRIER" not in info["flags"]


async def test_changing_conditions_under_load_loses_nothing(pair: Pair) -> None:
    link = pair.link
    stop = asyncio.Event()

    async def churn() -> int:
        n = 0
        plans = [{"delay": "1ms"}, {"delay": "5ms", "jitter": "1ms"}, {}, {"rate": "500mbit"},
                 {"delay": "2ms"}]
        while not stop.is_set():
            keys = plans[n % len(plans)]
            if keys:
                await link.impair(0, both=True, **keys)
            else:
                await link.reset(0, both=True)
            n += 1
            await asyncio.sleep(0.03)
        return n

    task = asyncio.create_task(churn())
    _seconds, intact = await tcp_transfer(pair.a, pair.b, 30_000_000)
    stop.set()
    changes = await task
    assert intact and changes >= 5
    for side in (0, 1):
        st = link.stats(side)
        assert st["dropped"] == 0 and st["dropped_write"] == 0


async def test_offload_carries_super_packets(pair: Pair) -> None:
    await pair.link.impair(0, delay="2ms")
    seconds, intact = await tcp_transfer(pair.a, pair.b, 20_000_000)
    st = pair.link.stats(0)
    assert intact and st["passed_bytes"] / st["passed"] > 8000  # GSO frames, not 1514-byte ones


async def test_no_cpu_at_rest(pair: Pair) -> None:
    await pair.link.impair(0, delay="10ms", jitter="1ms", loss="1%")
    await asyncio.sleep(0.1)
    st = pair.link.stats()
    pid, before = st["pid"], _wakeups(pair)
    cpu0 = _cpu_ticks(pid)
    await asyncio.sleep(1.0)
    assert _wakeups(pair) - before <= 1  # the stats request itself: no timer, no polling
    assert _cpu_ticks(pid) - cpu0 <= 1  # clock ticks (10 ms each) in a second at rest


def _wakeups(pair: Pair) -> int:
    assert pair.link.datapath is not None
    return int(pair.link.datapath.stats()["wakeups"])


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


async def test_teardown_leaves_nothing() -> None:
    a = await Namespace.create(unique())
    b = await Namespace.create(unique())
    try:
        link = ImpairedLink(End(a, "eth0", ["10.232.0.1/24"]), End(b, "eth0", ["10.232.0.2/24"]),
                            {0: Conditions(delay=5 * MS)})
        async with link:
            assert await ip_link(a, "eth0") is not None
            pid = link.stats()["pid"]
            assert Path(f"/proc/{pid}").exists()
        await link.aclose()  # twice is fine
        assert not Path(f"/proc/{pid}").exists()  # the datapath process is gone (and reaped)
        for ns in (a, b):
            assert await ip_link(ns, "eth0") is None
            rc, out, _ = await sh("tc", "-n", str(ns.name), "-j", "qdisc", "show")
            assert rc == 0 and all(q.get("dev") == "lo" for q in json.loads(out or "[]"))
            rc, out, _ = await sh("tc", "-n", str(ns.name), "-j", "filter", "show", "dev", "lo")
    finally:
        await b.close()
        await a.close()


async def test_a_failed_create_leaves_nothing() -> None:
    a = await Namespace.create(unique())
    try:
        # the second end's namespace does not exist: the first tap must go again
        link = ImpairedLink(End(a, "eth0"), End(f"{unique()}-missing", "eth0"))
        with pytest.raises(Exception):  # noqa: B017 - whatever the kernel says
            await link.create()
        assert await ip_link(a, "eth0") is None
        assert link.datapath is None
    finally:
        await a.close()
    assert os.path.exists("/dev/net/tun")
