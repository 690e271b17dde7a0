"""Step runners that act on links and measure (SPEC.md sections 7 and 8).

``link`` pulls or restores a link, ``impair`` sets or resets the conditions
of a direction, ``throughput`` runs netvirt's own sender and receiver
(:mod:`netvirt.impair.throughput`), and ``ping`` reports sent, received,
loss and rtt min/avg/p50/p99/max and checks its ``loss`` and ``rtt`` bounds.
``retry`` on any step is ``steps.run_step``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netvirt.errors import StepFailed
from netvirt.impair.expect import Bound
from netvirt.scenario.model import ImpairStep, LinkStep, PingStep, ThroughputStep
from netvirt.topology.probes import ping

if TYPE_CHECKING:
    from netvirt.topology.builder import Topology

__all__ = ["ping_step", "rtt_summary", "run_impair", "run_link", "run_throughput"]


def _pct(sorted_ms: list[float], q: float) -> float:
    i = min(len(sorted_ms) - 1, max(0, int(q * len(sorted_ms) + 0.5) - 1))
    return sorted_ms[i]


def rtt_summary(rtts_ms: list[float]) -> dict[str, float]:
    if not rtts_ms:
        return {}
    s = sorted(rtts_ms)
    return {"min": s[0], "avg": sum(s) / len(s), "p50": _pct(s, 0.5), "p99": _pct(s, 0.99), "max": s[-1]}


def _check(bound: Bound, value: float, what: str, shown: str) -> str | None:
    return None if bound.holds(value) else f"{what} {shown} is not {bound.text}"


async def ping_step(topo: Topology, p: PingStep) -> str:
    n, rtts = await ping(topo, p.src, p.to, count=p.count, timeout=p.timeout, interval=p.interval)
    loss = 1 - n / p.count
    stats = rtt_summary([r * 1000 for r in rtts])
    summary = f"{n}/{p.count} replies, loss {loss:.1%}"
    if stats:
        summary += ", rtt " + "/".join(f"{stats[k]:.2f}" for k in ("min", "avg", "p50", "p99", "max")) \
            + " ms (min/avg/p50/p99/max)"
    if p.expect == "failure":
        if n:
            raise StepFailed(f"{summary}; expected none")
        return summary
    bad = []
    if p.loss is not None:
        bad.append(_check(p.loss, loss, "loss", f"{loss:.1%}"))
    elif n != p.count:
        bad.append("not every echo was answered")
    for key, bound in p.rtt.items():
        if key not in stats:
            bad.append(f"rtt {key}: no replies")
        else:
            bad.append(_check(bound, stats[key] * 1e6, f"rtt {key}", f"{stats[key]:.2f} ms"))
    errors = [b for b in bad if b]
    if errors:
        raise StepFailed(f"{summary}: {'; '.join(errors)}")
    return summary


async def run_link(topo: Topology, p: LinkStep) -> str:
    end = topo.link(str(p.endpoint))
    await (end.down() if p.state == "down" else end.up())
    return f"link of {p.endpoint} {'pulled: no carrier on both ends' if p.state == 'down' else 'restored'}"


async def run_impair(topo: Topology, p: ImpairStep) -> str:
    end = topo.link(str(p.endpoint))
    where = "both directions" if p.both else f"what leaves {p.endpoint}"
    if p.reset or p.conditions is None:
        await end.reset(both=p.both)
        return f"conditions removed ({where})"
    await end.impair(p.conditions, both=p.both)
    return f"{p.conditions.describe()} ({where})"


async def run_throughput(topo: Topology, p: ThroughputStep) -> str:
    from netvirt.impair.throughput import measure_throughput

    res = await measure_throughput(topo.node(p.src), topo.node(p.server), p.address, p.port,
                                   proto=p.proto, seconds=p.seconds, rate=p.rate)
    text = res.describe()
    bad = []
    if p.expect is not None and not p.expect.holds(res.bits_per_second):
        bad.append(f"rate is not {p.expect.text}")
    if p.loss is not None and not p.loss.holds(res.loss):
        bad.append(f"loss {res.loss:.1%} is not {p.loss.text}")
    if bad:
        raise StepFailed(f"{text}: {'; '.join(bad)}")
    return text
