"""``impair:`` on links and the link/measure steps in scenario files: typed specs, located problems."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from netvirt.errors import ScenarioError
from netvirt.impair import Conditions, Loss
from netvirt.scenario import load, load_text
from netvirt.scenario.model import Endpoint, ImpairStep, LinkStep, PingStep, ThroughputStep

BASE = """\
name: imp
nodes:
  a: {interfaces: {eth0: {addresses: [10.0.0.1/24]}, eth1: {addresses: [10.0.1.1/24]}}}
  b: {interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
  c: {interfaces: {eth0: {addresses: [10.0.1.2/24]}}}
links:
"""


def scenario(links: str, steps: str = "") -> str:
    if "a:eth1" not in links:
        links = textwrap.dedent(links) + "- [a:eth1, c:eth0]\n"
    text = BASE + textwrap.indent(textwrap.dedent(links), "  ")
    if steps:
        text += "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  ")
    return text


def problems(text: str) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ScenarioError) as err:
        load_text(text, "x.yaml")
    return [(p.path, p.line, p.message) for p in err.value.problems]


def test_both_directions_and_per_endpoint() -> None:
    s = load_text(scenario("""\
        - endpoints: [a:eth0, b:eth0]
          impair: {delay: 20ms, jitter: 2ms, loss: 1%, rate: 10mbit}
        - endpoints: [a:eth1, c:eth0]
          impair:
            a:eth1: {delay: 50ms, jitter: 5ms, distribution: normal}
            c:eth0: {loss: {model: gilbert-elliott, p: 1%, r: 20%}, rate: 1mbit, limit: 100}
        """))
    first, second = s.links
    both = Conditions(delay=20_000_000, jitter=2_000_000, loss=Loss("random", 0.01), rate=10**7)
    assert first.impair == {"a:eth0": both, "b:eth0": both} and first.served
    assert second.impair is not None and second.impair["a:eth1"].distribution == "normal"
    assert second.impair["c:eth0"].loss == Loss("gilbert-elliott", 0.01, 0.2, 0.0, 1.0)
    assert second.impair["c:eth0"].limit == 100


def test_plain_links_stay_veth_unless_a_step_controls_them() -> None:
    s = load_text(scenario("""\
        - [a:eth0, b:eth0]
        - [a:eth1, c:eth0]
        """, """\
        - link: {endpoint: a:eth1, state: down}
        - ping: {from: a, to: 10.0.1.2, expect: failure}
        - link: {endpoint: c:eth0, state: up}
        - impair: {endpoint: c:eth0, delay: 5ms, both: true}
        - impair: {endpoint: c:eth0, reset: true}
        """))
    plain, controlled = s.links
    assert not plain.served and controlled.served and controlled.impair is None
    kinds = [st.params for st in s.steps]
    assert kinds[0] == LinkStep(Endpoint("a", "eth1"), "down")
    assert kinds[3] == ImpairStep(Endpoint("c", "eth0"), Conditions(delay=5_000_000), False, True)
    assert kinds[4] == ImpairStep(Endpoint("c", "eth0"), None, True, False)


def test_problems_are_located() -> None:
    got = problems(scenario("""\
        - endpoints: [a:eth0, b:eth0]
          impair:
            delay: soon
            reorder: 10%
        - endpoints: [a:eth1, c:eth0]
          impair:
            a:eth1: {loss: 200%}
            b:eth0: {delay: 1ms}
        """))
    paths = {(p, line) for p, line, _m in got}
    assert ("links[0].impair.delay", 9) in paths
    assert ("links[0].impair.reorder", 10) in paths  # reordering needs a delay
    assert ("links[1].impair.a:eth1.loss", 13) in paths
    assert ("links[1].impair.b:eth0", 14) in paths  # not an end of this link
    assert all(m for _p, _l, m in got)


def test_step_problems_are_located() -> None:
    got = problems(scenario("""\
        - [a:eth0, b:eth0]
        """, """\
        - link: {endpoint: a:eth9, state: sideways}
        - impair: {endpoint: a:eth0}
        - impair: {endpoint: a:eth0, reset: true, delay: 5ms}
        - throughput: {from: a, to: "10.0.0.2:5201", proto: tcp, rate: 10mbit, expect: "fast"}
        - ping: {from: a, to: 10.0.0.2, loss: "lots", rtt: {median: 5ms}, retry: {every: 1s}}
        """))
    msgs = " | ".join(f"{p}: {m}" for p, _l, m in got)
    for want in ("steps[0].link.endpoint", "steps[0].link.state", "needs netem keys",
                 "either resets", "proto: udp only", "steps[3].throughput.expect",
                 "steps[4].ping.loss", "steps[4].ping.rtt.median", "steps[4].ping.retry"):
        assert want in msgs, (want, msgs)


def test_measuring_steps_are_typed() -> None:
    s = load_text(scenario("""\
        - endpoints: [a:eth0, b:eth0]
          impair: {delay: 20ms}
        """, """\
        - ping: {from: a, to: 10.0.0.2, count: 10, interval: 0.1, loss: "<= 15%",
                 rtt: {avg: "40ms..44ms", max: "60ms"}, retry: {for: 30s, every: 0.5s}}
        - throughput: {from: a, to: "10.0.0.2:5201", proto: udp, seconds: 2, rate: 20mbit,
                       expect: "9mbit..11mbit", loss: "<= 5%"}
        - wait: 1
        """))
    ping, tput, _wait = s.steps
    assert isinstance(ping.params, PingStep) and ping.params.interval == 0.1
    assert ping.params.loss is not None and ping.params.loss.holds(0.15)
    assert ping.params.rtt["avg"].holds(42e6) and not ping.params.rtt["max"].holds(61e6)
    assert ping.retry is not None and (ping.retry.seconds, ping.retry.every) == (30.0, 0.5)
    assert isinstance(tput.params, ThroughputStep) and tput.params.server == "b"
    assert tput.params.rate == 20 * 10**6 and tput.params.expect is not None
    assert tput.params.expect.holds(10e6)


def test_trace_is_relative_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "traces").mkdir()
    (tmp_path / "traces" / "t.trace").write_text("1\n2\n")
    f = tmp_path / "s.yaml"
    f.write_text(scenario("""\
        - endpoints: [a:eth0, b:eth0]
          impair: {a:eth0: {rate: {trace: traces/t.trace}}}
        """))
    s = load(f)
    assert s.links[0].impair is not None and s.links[0].impair["a:eth0"].trace == (1, 2)
    assert "b:eth0" not in s.links[0].impair


def test_shipped_wan_scenario_validates() -> None:
    root = Path(__file__).resolve().parents[2]
    s = load(root / "scenarios" / "s8-wan.yaml")
    assert all(link.served for link in s.links)
    assert {st.kind for st in s.steps} >= {"ping", "throughput", "link", "impair"}


def test_graph_shows_the_conditions_on_the_links() -> None:
    from netvirt.scenario.graph import to_dot, to_mermaid

    s = load_text(scenario("""\
        - endpoints: [a:eth0, b:eth0]
          impair: {delay: 20ms, loss: 1%}
        - endpoints: [a:eth1, c:eth0]
          impair: {a:eth1: {delay: 50ms}}
        """))
    dot = to_dot(s)
    assert "delay 20ms, loss 1%" in dot and "color=blue" in dot
    assert "a:eth1 -> delay 50ms; c:eth0 -> none" in dot
    assert "delay 20ms, loss 1%" in to_mermaid(s)


def test_no_datapath_on_a_link_between_machines() -> None:
    text = """\
name: impm
machines:
  m1: {ssh: "root@198.18.0.1", underlay: 198.18.0.1}
  m2: {ssh: "root@198.18.0.2", underlay: 198.18.0.2}
nodes:
  a: {machine: m1, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b: {machine: m2, interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links:
  - endpoints: [a:eth0, b:eth0]
    impair: {delay: 5ms}
"""
    got = problems(text)
    assert any(p == "links[0].impair" and "different machines" in m for p, _l, m in got), got
