"""The split of a lab over machines: placement, shares, VNIs, MTU (pure: no root)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from netvirt.errors import ScenarioError
from netvirt.multi import wire
from netvirt.multi.machines import MultiScenario, from_raw, load, load_text
from netvirt.multi.split import place, plan, share_name, step_node, vni_base

ROOT = Path(__file__).resolve().parents[2]

TWO = """\
name: duo
machines:
  m1: {ssh: "root@192.0.2.1", underlay: 192.0.2.1}
  m2: {ssh: "root@192.0.2.2", underlay: 192.0.2.2, command: "/opt/nv/bin/python -m netvirt"}
"""


def star(n: int, machines: int = 2, **sw: str) -> MultiScenario:
    nodes: dict = {"sw": {"interfaces": {"br0": {"kind": "bridge"}}, **sw}}
    links = []
    for i in range(1, n + 1):
        nodes["sw"]["interfaces"][f"p{i}"] = {"master": "br0"}
        nodes[f"h{i}"] = {"interfaces": {"eth0": {"addresses": [f"10.2.0.{i}/24"]}}}
        links.append([f"h{i}:eth0", f"sw:p{i}"])
    ms = {f"m{k}": {"ssh": f"root@192.0.2.{k}", "underlay": f"192.0.2.{k}"} for k in range(1, machines + 1)}
    return from_raw({"name": "star", "machines": ms, "nodes": nodes, "links": links,
                     "steps": [{"ping": {"from": "h1", "to": f"10.2.0.{n}"}}, {"wait": {"seconds": 0}}]},
                    "star.py")


def test_two_machines_one_crossing_link() -> None:
    ms = load_text(TWO + textwrap.dedent("""\
        nodes:
          a: {machine: m1, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
          b: {machine: m2, interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
        links:
          - [a:eth0, b:eth0]
        """))
    assert ms.layout.machines["m2"].command == "/opt/nv/bin/python -m netvirt"
    assert ms.layout.machines["m1"].command == "netvirt"
    p = plan(ms.scenario, ms.layout)
    assert dict(p.placement) == {"a": "m1", "b": "m2"}
    (c,) = p.crossing
    assert c.vni == vni_base("duo") and c.a.local == c.b.remote and c.a.remote == c.b.local
    assert (c.a.mtu, c.b.mtu) == (1450, 1450)  # 1500 underlay - 50 bytes of VXLAN over IPv4
    s1, s2 = p.shares["m1"], p.shares["m2"]
    assert (s1.lab, s2.lab) == ("duo-1", "duo-2")
    assert (share_name("duo", s1.machine), share_name("duo", s2.machine)) == ("duo-1", "duo-2")
    assert list(s1.scenario.nodes) == ["a"] and s1.scenario.links == () and s1.scenario.name == "duo-1"
    assert "eth0" in s1.scenario.nodes["a"].interfaces  # kept: the machine makes a VXLAN for it
    assert [e.endpoint for e in s1.vxlans] == [c.link.a]


def test_placement_balances_and_keeps_the_bridge_ports_together() -> None:
    ms = star(4)
    p = plan(ms.scenario, ms.layout)
    assert dict(p.placement) == {"sw": "m1", "h1": "m1", "h2": "m1", "h3": "m2", "h4": "m2"}
    assert len(p.crossing) == 2 and len({c.vni for c in p.crossing}) == 2
    assert [len(s.scenario.links) for s in p.shares.values()] == [2, 0]
    assert p.step_machine(ms.scenario.steps[0]) == "m1" and p.step_machine(ms.scenario.steps[1]) is None


def test_placement_honours_machine_keys_and_fills_the_rest() -> None:
    ms = star(6, machines=3, machine="m3")
    placed = place(ms.scenario, ms.layout)
    assert placed["sw"] == "m3"
    counts = {m: list(placed.values()).count(m) for m in ("m1", "m2", "m3")}
    assert counts == {"m1": 2, "m2": 2, "m3": 3}  # ceil(7 / 3) = 3 at most each


def test_macvlan_stays_with_its_parent() -> None:
    raw = {"name": "mv", "machines": {"m1": {"ssh": "a", "underlay": "192.0.2.1"},
                                      "m2": {"ssh": "b", "underlay": "192.0.2.2"}},
           "nodes": {"p": {"interfaces": {"eth0": {}}},
                     "c": {"interfaces": {"mv0": {"kind": "macvlan", "parent": "p:eth0"}}},
                     "q": {"interfaces": {"eth0": {}}}},
           "links": [["p:eth0", "q:eth0"]]}
    ms = from_raw(raw, "mv.py")
    placed = place(ms.scenario, ms.layout)
    assert placed["p"] == placed["c"]
    raw["nodes"]["p"]["machine"] = "m1"
    raw["nodes"]["c"]["machine"] = "m2"
    with pytest.raises(ScenarioError, match="a macvlan and its parent cannot be on two hosts"):
        from_raw(raw, "mv.py")


def test_mtu_that_cannot_fit_is_a_located_error() -> None:
    text = TWO + textwrap.dedent("""\
        nodes:
          a: {machine: m1, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
          b: {machine: m2, interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
        links:
          - {endpoints: [a:eth0, b:eth0], mtu: 1500}
        """)
    ms = load_text(text, "duo.yaml")
    with pytest.raises(ScenarioError) as ei:
        plan(ms.scenario, ms.layout)
    (problem,) = ei.value.problems
    assert (problem.file, problem.line, problem.path) == ("duo.yaml", 9, "links[0]")
    assert "1500 of a:eth0 + 50 bytes of VXLAN over IPv4 = 1550 > underlay MTU 1500" in problem.message
    assert "at most 1450" in problem.message
    ok = plan(ms.scenario, ms.layout, {"m1": 9000, "m2": 1600})  # jumbo underlays: it fits
    assert ok.crossing[0].a.mtu == 1500


def test_machine_problems_come_all_at_once_with_lines() -> None:
    text = textwrap.dedent("""\
        name: much-too-long
        machines:
          m1: {ssh: "root@192.0.2.1", underlay: 192.0.2.1, colour: red}
          m2: {ssh: "root@192.0.2.2", underlay: 192.0.2.1, mtu: 20}
          M3: {ssh: x, underlay: 2001:db8::1}
        nodes:
          a: {machine: m9, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
          b: {interfaces: {eth0: {addresses: [10.0.0.300/24]}}}
        links:
          - [a:eth0, b:eth0]
        """)
    with pytest.raises(ScenarioError) as ei:
        load_text(text, "bad.yaml")
    got = {(p.path, p.line) for p in ei.value.problems}
    assert ("name", 1) in got and ("machines.m1.colour", 3) in got and ("machines.m2.mtu", 4) in got
    assert ("machines.M3", 5) in got and ("nodes.a.machine", 7) in got
    assert ("nodes.b.interfaces.eth0.addresses[0]", 8) in got  # the ordinary validator's, too
    with pytest.raises(ScenarioError, match="needs a top-level machines"):
        from_raw({"name": "x", "nodes": {"a": {"machine": "m1"}}}, None)


def test_shares_and_steps_cross_the_wire_intact() -> None:
    ms = star(3)
    p = plan(ms.scenario, ms.layout)
    for share in p.shares.values():
        back = wire.decode(wire.loads(wire.dumps({"s": wire.encode(share.scenario)}))["s"])
        assert back == share.scenario
        ends = wire.decode(wire.encode(share.vxlans))
        assert ends == share.vxlans
    step = ms.scenario.steps[0]
    assert wire.decode(wire.encode(step)) == step and step_node(step) == "h1"


def test_plain_scenarios_load_without_machines() -> None:
    ms = load(ROOT / "scenarios" / "s4-udp-tunnel.yaml")
    assert not ms.layout and ms.scenario.name == "s4-udp-tun"


def test_every_spec_of_a_tunnel_share_crosses_the_wire() -> None:
    ms = load(ROOT / "scenarios" / "s4-udp-tunnel-split.yaml")
    p = plan(ms.scenario, ms.layout)
    for share in p.shares.values():
        assert wire.decode(wire.encode(share.scenario)) == share.scenario  # ProgramSpec too
    from dataclasses import dataclass

    @dataclass
    class Foreign:
        x: int

    with pytest.raises(TypeError, match="only netvirt's specs"):
        wire.encode(Foreign(1))
    with pytest.raises(TypeError, match="not one of netvirt's specs"):
        wire.decode({"$": "os:system", "command": "true"})  # never imported, never called
    assert wire.decode(wire.encode(p.crossing)) == p.crossing


def test_ssh_targets() -> None:
    from netvirt.multi.remote import parse_ssh

    assert parse_ssh("root@192.0.2.1") == ("root", "192.0.2.1", None)
    assert parse_ssh("lab-host") == (None, "lab-host", None)
    assert parse_ssh("me@h:2222") == ("me", "h", 2222)
    assert parse_ssh("root@[2001:db8::1]:22") == ("root", "2001:db8::1", 22)
    assert parse_ssh("2001:db8::1") == (None, "2001:db8::1", None)


def chain(n: int, ring: bool = False, machines: int = 2) -> MultiScenario:
    nodes = {f"n{i}": {"interfaces": {"l": {}, "r": {}}} for i in range(n)}
    links = [[f"n{i}:r", f"n{i + 1}:l"] for i in range(n - 1)]
    if ring:
        links.append([f"n{n - 1}:r", "n0:l"])
    else:
        nodes["n0"]["interfaces"].pop("l")
        nodes[f"n{n - 1}"]["interfaces"].pop("r")
    ms = {f"m{k}": {"ssh": f"h{k}", "underlay": f"192.0.2.{k}"} for k in range(1, machines + 1)}
    return from_raw({"name": "chain", "machines": ms, "nodes": nodes, "links": links}, "chain.py")


@pytest.mark.parametrize(("n", "ring", "machines", "cut"), [(4, False, 2, 1), (9, False, 3, 2),
                                                             (6, True, 2, 2), (8, True, 4, 4)])
def test_placement_cuts_chains_and_rings_as_little_as_balance_allows(n: int, ring: bool, machines: int,
                                                                     cut: int) -> None:
    ms = chain(n, ring, machines)
    p = plan(ms.scenario, ms.layout)
    assert len(p.crossing) == cut
    counts = sorted(list(p.placement.values()).count(m) for m in ms.layout.machines)
    assert counts[-1] - counts[0] <= 1


def test_graph_colours_nodes_by_machine_and_marks_crossing_links() -> None:
    from netvirt.scenario.graph import to_dot, to_mermaid

    s = load(ROOT / "scenarios" / "s3b_star_split.py", {"n": "4"}).scenario
    dot = to_dot(s)
    assert 'label="sw (machine m1)"; style="rounded,filled"; fillcolor="#dbeafe";' in dot
    assert 'label="h4 (machine m2)"; style="rounded,filled"; fillcolor="#dcfce7";' in dot
    assert '"h4:eth0" -- "sw:p4" [style=dashed, color=blue, penwidth=2, label="vxlan mtu 1450"]' in dot
    assert '"h1:eth0" -- "sw:p1" [label="mtu 1450"]' in dot  # local: an ordinary link
    mmd = to_mermaid(s)
    assert "h3 (machine m2)" in mmd and "fill:#dcfce7" in mmd and "|vxlan mtu 1450|" in mmd
    plain = to_dot(load(ROOT / "scenarios" / "s3b_star.py").scenario)
    assert "machine" not in plain and "vxlan" not in plain


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netvirt", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli_validate_names_the_machines_and_up_refuses_a_lab_across_machines() -> None:
    res = _cli("validate", "scenarios/s4-udp-tunnel-split.yaml")
    assert res.returncode == 0 and res.stdout.rstrip().endswith("on machines m1, m2"), res.stderr
    res = _cli("up", "scenarios/s4-udp-tunnel-split.yaml")
    assert res.returncode == 2 and "use 'netvirt run --keep'" in res.stderr
    res = _cli("--version")
    assert res.returncode == 0 and res.stdout.split()[0] == "netvirt"
    res = _cli("run", "scenarios/s4-udp-tunnel-split.yaml", "--name", "elevenchars")
    assert res.returncode == 2 and "a lab across machines has at most 10" in res.stderr


async def test_a_driver_that_cannot_write_its_record_says_so_before_reaching_anything() -> None:
    from netvirt.errors import EnvironmentProblem
    from netvirt.multi.driver import MultiLab

    ms = load(ROOT / "scenarios" / "s4-udp-tunnel-split.yaml")
    lab = MultiLab(ms, state_root=Path("/dev/null/netvirt"))
    with pytest.raises(EnvironmentProblem, match="cannot write the driver's state record"):
        await lab.build()
    assert lab.remotes == {}
