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
from tests.kernel.devices_support import ip_link, sh
from tests.kernel.impair_helpers import B_IP, Pair, pair, probe, tcp_transfer

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
    assert min(d) >= 14.9 and len(inside) >= 0.9 * len(d)  # late outliers: a loaded machine
    assert min(d) < 16.5 and max(d) > 23.5  # the window is used
    q = statistics.quantiles(d, n=4)
    assert 3.8 < q[2] - q[0] < 6.5  # uniform over +-5 ms: an interquartile range of 5 ms
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
    # 10 ms of trace, wrapping: slots at 1, 2 and 10 ms (1500 B each): 3 frames per 10 ms
    trace.write_text("1\n2\n10\n")
    await pair.link.impair(0, rate={"trace": str(trace)})
    res = await probe(pair.a, pair.b, 60, size=1400, settle=0.4)  # one 1442 B frame per slot
    assert len(res.got) == 60
    arrivals = sorted(r for _s, _t, r in res.got)
    span = (arrivals[-1] - arrivals[0]) / 1e6
    assert 180 <= span <= 215, span  # 60 frames, 3 slots per 10 ms: 20 periods, minus the first's head
    # the slots are used in their pattern: arrivals cluster 1 ms apart, then a gap of 8 ms
    gaps = [(b - a) / 1e6 for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert sum(1 for g in gaps if g > 6) >= 15


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
            await asyncio.sleep(0.01)
        return n

    task = asyncio.create_task(churn())
    _seconds, intact = await tcp_transfer(pair.a, pair.b, 60_000_000)
    stop.set()
    changes = await task
    assert intact
    assert changes >= 3, f"the transfer ended after {changes} changes"
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


async def test_throughput_sender_and_receiver(pair: Pair) -> None:
    from netvirt.impair.throughput import measure_throughput

    await pair.link.impair(0, rate="40mbit")
    tcp = await measure_throughput(pair.a, pair.b, B_IP, 7200, proto="tcp", seconds=1.5)
    goodput = 40e6 * 1448 / 1514  # a full frame per 1448-byte segment
    assert 0.85 * goodput < tcp.bits_per_second < 1.03 * goodput, tcp.describe()
    udp = await measure_throughput(pair.a, pair.b, B_IP, 7201, proto="udp", seconds=1.0,
                                   rate=10_000_000)
    assert udp.sent > 800 and udp.loss < 0.02, udp.describe()  # 10 Mbit/s fit in 40
    await pair.link.impair(0, rate="5mbit", limit=50)
    udp = await measure_throughput(pair.a, pair.b, B_IP, 7202, proto="udp", seconds=1.0,
                                   rate=10_000_000)
    assert 0.35 < udp.loss < 0.65, udp.describe()  # twice what the link carries
    assert 0.8 * 5e6 < udp.bits_per_second * 1442 / 1400 < 1.1 * 5e6, udp.describe()


async def test_control_socket_serves_link_commands(pair: Pair, tmp_path: Path) -> None:
    from netvirt.errors import EnvironmentProblem, UsageError
    from netvirt.impair.control import ControlServer, request

    server = ControlServer(tmp_path / "control.sock", pair.link.end)
    await server.start()
    try:
        def ask(**req: object) -> dict[str, object]:
            return request(tmp_path, {"endpoint": "a:eth0", **req})  # type: ignore[no-any-return]

        shown = await asyncio.to_thread(ask, op="show")
        assert shown["carrier"] is True
        await asyncio.to_thread(ask, op="set", keys={"delay": "30ms"})
        res = await probe(pair.a, pair.b, 10, interval=0.002)
        assert min(res.delays_ms) >= 29.9  # the command changed the real traffic
        st = await asyncio.to_thread(ask, op="set", keys={"loss": "5%"}, both=True)
        assert st["directions"]["b:eth0"]["conditions"] == {"loss": "5%"}
        await asyncio.to_thread(ask, op="down")
        info = await ip_link(pair.b, "eth0")
        assert info is not None and "NO-CARRIER" in info["flags"]
        await asyncio.to_thread(ask, op="up")
        await asyncio.to_thread(ask, op="reset", both=True)
        assert pair.link.stats(0)["conditions"] == {} and pair.link.carrier
        with pytest.raises(UsageError, match="not an end"):
            await asyncio.to_thread(request, tmp_path, {"endpoint": "c:eth9", "op": "show"})
        with pytest.raises(UsageError, match="delay"):
            await asyncio.to_thread(ask, op="set", keys={"delay": "soon"})
    finally:
        await server.aclose()
    assert not (tmp_path / "control.sock").exists()
    with pytest.raises(EnvironmentProblem, match="no process serves"):
        request(tmp_path, {"endpoint": "a:eth0", "op": "show"})


CHILD = """
import asyncio, sys
from netvirt.impair import End, ImpairedLink
from netvirt.netns import Namespace

async def main(a_name, b_name):
    a = await Namespace.create(a_name)
    b = await Namespace.create(b_name)
    link = ImpairedLink(End(a, "eth0", ["10.233.0.1/24"]), End(b, "eth0", ["10.233.0.2/24"]))
    await link.create()
    await link.impair(0, delay="10ms")
    print(link.stats()["pid"], flush=True)
    await asyncio.sleep(60)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_sigkill_of_the_owner_leaves_no_datapath_and_no_taps() -> None:
    import signal
    import sys

    from netvirt.netns import remove_netns
    from tests.kernel.helpers import ROOT

    names = (unique(), unique())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *names, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        worker = int(line)
        assert Path(f"/proc/{worker}").exists() and await ip_link(names[0], "eth0") is not None
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        for _ in range(100):  # the kernel kills the worker (PR_SET_PDEATHSIG); the taps go with it
            if not Path(f"/proc/{worker}").exists() and await ip_link(names[0], "eth0") is None:
                break
            await asyncio.sleep(0.05)
        assert not Path(f"/proc/{worker}").exists()
        for ns in names:
            assert await ip_link(ns, "eth0") is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        for ns in names:
            remove_netns(ns)
