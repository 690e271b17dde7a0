"""Pure tests of scenario loading and validation (no root, no kernel).

Bad scenarios live in tests/data/bad/: each file says in comments what is
wrong and which problems it must produce, one ``# expect: LINE PATH ~ PHRASE``
line per problem (PATH ``-`` for the scenario as a whole). The file must give
exactly those problems: each at that line, with that key path, and a message
containing that phrase.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import textwrap
from pathlib import Path

import pytest

from netvirt.errors import ScenarioError
from netvirt.scenario import (
    Endpoint,
    InterfaceSpec,
    Scenario,
    load,
    load_text,
    validate,
)
from netvirt.scenario.model import ConnectStep, CountersStep, ExecStep, FdbStep, PingStep, WaitStep

DATA = Path(__file__).parents[1] / "data"
EXPECT = re.compile(r"^# expect: (\d+) (\S+) ~ (.+)$")


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ScenarioError) as info:
        load_text(textwrap.dedent(text))
    return [(p.line, p.path, p.message) for p in info.value.problems]


# --- good scenarios ----------------------------------------------------------------------


def test_s4_short_and_long_links() -> None:
    s = load(DATA / "good" / "s4-tunnel.yaml")
    assert s.name == "s4-tunnel"
    assert s.source == str(DATA / "good" / "s4-tunnel.yaml")
    assert [str(link.a) for link in s.links] == ["left:eth0", "left:eth1"]
    assert [str(link.b) for link in s.links] == ["right:eth0", "right:eth1"]
    assert s.links[0].mtu is None and s.links[1].mtu == 9000
    left = s.nodes["left"]
    # eth1 is named only by the long link: created as a bare veth end with the link's MTU
    eth1 = left.interfaces["eth1"]
    assert (eth1.kind, eth1.mtu, eth1.place) == ("veth", 9000, "links[1].endpoints[0]")
    tun0 = s.interface(Endpoint("left", "tun0"))
    assert tun0.kind == "tun"
    assert tun0.addresses == (ipaddress.ip_interface("192.168.1.11/24"),)
    assert tun0.program is not None and tun0.program.name == "udp-tunnel"
    assert tun0.program.params == {"local": "172.16.1.11:6000", "remote": "172.16.1.12:6000"}
    assert tun0.place == "nodes.left.interfaces.tun0"
    assert left.sysctls == {"net.ipv4.ip_forward": "1"}
    route = left.routes[0]
    assert route.to == ipaddress.ip_network("10.9.0.0/16")
    assert route.via == ipaddress.ip_address("192.168.1.12") and route.dev is None
    assert s.nodes["right"].interfaces["eth0"].addresses[1].version == 6
    ping, tcp, udp6, counters = s.steps
    assert ping.params == PingStep(src="left", to="192.168.1.12", count=3, expect="success",
                                   timeout=1.0)
    assert (ping.place, ping.line) == ("steps[0]", 26)
    assert isinstance(tcp.params, ConnectStep) and isinstance(udp6.params, ConnectStep)
    assert tcp.params.server == "right" and tcp.params.port == 5000
    assert tcp.params.bytes == 100000 and tcp.params.proto == "tcp"
    assert udp6.params.address == "fd00:1::12" and udp6.params.to == "[fd00:1::12]:5000"
    assert counters.params == CountersStep(device=Endpoint("left", "tun0"), equals={},
                                           at_least={"tun_rx": 3}, timeout=counters.params.timeout)


def test_every_kind_and_every_step() -> None:
    s = load(DATA / "good" / "every-kind.yaml")
    hv = s.nodes["hv"].interfaces
    assert hv["br0"].kind == "bridge" and hv["br0"].ageing_time == 30.0
    assert hv["br0"].forward_delay == 0.5 and hv["br0"].stp is False
    assert (hv["tap0"].master, hv["tap0"].queues, hv["tap0"].offload) == ("br0", 2, True)
    assert hv["eth0"].kind == "veth" and hv["eth0"].master == "br0"
    assert (hv["tap1"].persist, hv["tap1"].owner, hv["tap1"].group, hv["tap1"].up) == \
        (True, 1000, 1000, False)
    # an unquoted MAC that YAML 1.1 would read as a base-60 number stays a string
    assert s.nodes["net"].interfaces["uplink"].mac == "52:54:00:12:34:56"
    mvt = s.nodes["lan"].interfaces["mvt0"]
    assert mvt.parent == Endpoint("host", "eth0") and mvt.mode == "bridge"
    assert mvt.program is not None and mvt.program.name == "python"
    assert mvt.program.params == {"python": "mylab.guests:echo", "delay": 1}
    mv0 = s.nodes["host"].interfaces["mv0"]
    assert (mv0.parent, mv0.mode, mv0.mac) == (Endpoint("host", "eth0"), "private",
                                              "02:00:00:00:00:02")
    assert s.nodes["c1"].interfaces["tun0"].program.name == "sink"  # type: ignore[union-attr]
    routes = s.nodes["net"].routes
    assert routes[0].to == ipaddress.ip_network("0.0.0.0/0")
    assert routes[1].dev == "uplink" and routes[1].via is None
    assert [st.kind for st in s.steps] == ["ping", "connect", "exec", "counters", "fdb",
                                           "wait", "wait"]
    ping, connect, exec_, counters, fdb, wait1, wait2 = (st.params for st in s.steps)
    assert isinstance(ping, PingStep) and isinstance(connect, ConnectStep)
    assert isinstance(counters, CountersStep)
    assert ping.count == 4 and ping.timeout == 2.0
    assert connect.expect == "failure" and connect.server == "hv"
    assert exec_ == ExecStep(node="net", cmd="ip -br link", exit=0, stdout="uplink.*UP", timeout=30.0)
    assert counters.equals == {"rx_icmp": 4} and counters.at_least == {"rx_packets": 4}
    assert fdb == FdbStep(bridge=Endpoint("hv", "br0"), mac="52:54:00:12:34:56", port="eth0")
    assert wait1 == WaitStep(seconds=0.5) and wait2 == WaitStep(seconds=1.0)


def test_python_scenario_with_params() -> None:
    path = DATA / "good" / "star.py"
    s = load(path)
    assert s.name == "star4" and set(s.nodes) == {"sw", "n1", "n2", "n3", "n4"}
    assert s.params == {} and s.source == str(path)
    s = load(path, {"n": "6", "mtu": "9000", "stp": "yes"})
    assert s.name == "star6" and len(s.links) == 6
    assert s.params == {"n": "6", "mtu": "9000", "stp": "yes"}
    assert s.nodes["sw"].interfaces["p1"].mtu == 9000  # int from the default's type
    assert s.nodes["sw"].interfaces["br0"].stp is True  # bool from the annotation
    assert all(st.line is None for st in s.steps)


def test_star_of_100_nodes() -> None:
    s = load(DATA / "good" / "star.py", {"n": "100"})
    assert len(s.nodes) == 101 and len(s.links) == 100
    assert len(s.nodes["sw"].interfaces) == 101


def test_python_param_problems(tmp_path: Path) -> None:
    path = DATA / "good" / "star.py"
    with pytest.raises(ScenarioError) as info:
        load(path, {"n": "four", "colour": "red"})
    msgs = {p.path: p.message for p in info.value.problems}
    assert "must be int, not 'four'" in msgs["params.n"]
    assert "unknown parameter 'colour'" in msgs["params.colour"]
    assert "this scenario takes: n, mtu, stp, prefix" in msgs["params.colour"]
    required = tmp_path / "req.py"
    required.write_text("def scenario(n: int):\n    return {}\n")
    with pytest.raises(ScenarioError, match="parameter 'n' is required"):
        load(required)


def test_python_scenario_errors_carry_lines(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("def scenario():\n    x = {}\n    return x['name']\n")
    with pytest.raises(ScenarioError) as info:
        load(broken)
    (p,) = info.value.problems
    assert (p.line, p.file) == (3, str(broken)) and "KeyError" in p.message
    invalid = tmp_path / "invalid.py"
    invalid.write_text("def scenario():\n    return {'name': 'x', 'nodes': {'a': {'host': 1}}}\n")
    with pytest.raises(ScenarioError) as info:
        load(invalid)
    (p,) = info.value.problems
    assert (p.path, p.line, p.file) == ("nodes.a.host", None, str(invalid))
    assert "true or false" in p.message
    nofunc = tmp_path / "nofunc.py"
    nofunc.write_text("SCENARIO = {}\n")
    with pytest.raises(ScenarioError, match=r"must define a function scenario\(\*\*params\)"):
        load(nofunc)


def test_yaml_rejects_params_and_bad_suffix(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="parameters apply to Python scenarios only"):
        load(DATA / "good" / "s4-tunnel.yaml", {"n": "3"})
    other = tmp_path / "lab.json"
    other.write_text("{}")
    with pytest.raises(ScenarioError, match=r"ends in \.yaml, \.yml or \.py"):
        load(other)
    with pytest.raises(ScenarioError, match="cannot read the scenario"):
        load(tmp_path / "missing.yaml")


def test_model_helpers() -> None:
    s = load(DATA / "good" / "s4-tunnel.yaml")
    renamed = s.with_name("t-1234")
    assert renamed.name == "t-1234" and renamed.nodes is s.nodes and s.name == "s4-tunnel"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(KeyError, match="no interface left:nope"):
        s.interface(Endpoint("left", "nope"))
    assert str(Endpoint("left", "eth0")) == "left:eth0"
    assert Endpoint.parse("eth0", default_node="a") == Endpoint("a", "eth0")
    with pytest.raises(ValueError):
        Endpoint.parse("eth0")
    assert isinstance(dataclasses.asdict(s), dict)  # plain containers: state records can use it
    assert all(isinstance(i, InterfaceSpec) for i in s.interfaces())


def test_validate_plain_dict() -> None:
    s = validate({"name": "d", "nodes": {"a": {"interfaces": {"t": {"kind": "tun"}}}}})
    assert isinstance(s, Scenario) and s.nodes["a"].interfaces["t"].kind == "tun"
    assert s.description == "" and s.links == () and s.steps == ()


def test_empty_and_non_mapping() -> None:
    assert problems_of("") == [(1, "", "the scenario is empty: it needs at least name and nodes")]
    ((line, path, msg),) = problems_of("- a\n- b\n")
    assert (line, path) == (1, "") and "must be a mapping, not a list" in msg


def test_program_string_shorthand_and_defaults() -> None:
    s = load_text(textwrap.dedent("""
        name: t
        nodes:
          a:
            interfaces:
              tap0: {kind: tap, program: responder}
    """))
    tap = s.nodes["a"].interfaces["tap0"]
    assert tap.program is not None and tap.program.name == "responder"
    assert tap.program.params == {} and tap.program.place == "nodes.a.interfaces.tap0.program"
    assert (tap.up, tap.queues, tap.mtu, tap.mac, tap.master) == (True, 1, None, None, None)


def test_inline_problems_carry_file_and_line() -> None:
    with pytest.raises(ScenarioError) as info:
        load_text("name: ok\nnodes:\n  a:\n    interfaces: {x: {kind: tun, mtu: 40}}\n",
                  source="inline.yaml")
    (p,) = info.value.problems
    assert (p.file, p.line, p.path) == ("inline.yaml", 4, "nodes.a.interfaces.x.mtu")
    assert "mtu must be an integer from 68 to 65535, not 40" in p.message
    assert str(p).startswith("inline.yaml:4: nodes.a.interfaces.x.mtu: ")


def test_passthru_must_be_alone() -> None:
    got = problems_of("""
        name: t
        nodes:
          a:
            interfaces:
              m1: {kind: macvlan, parent: eth0, mode: passthru}
              m2: {kind: macvtap, parent: eth0}
          b: {}
        links: [[a:eth0, b:eth0]]
    """)
    assert got == [(6, "nodes.a.interfaces.m1.mode",
                    "a passthru child must be the only macvlan or macvtap on a:eth0, which has 2")]


def test_address_on_bridge_port_and_host_nodes() -> None:
    got = problems_of("""
        name: t
        nodes:
          a:
            host: true
            interfaces:
              br0: {kind: bridge}
              tap0: {kind: tap, master: br0, addresses: [10.0.0.1/24]}
          b: {host: true}
    """)
    assert got == [
        (8, "nodes.a.interfaces.tap0.addresses",
         "'tap0' is a port of bridge 'br0': put its addresses on 'br0' instead"),
        (9, "nodes.b.host", "only one node may be the host namespace; 'a' is already"),
    ]


# --- bad scenarios -----------------------------------------------------------------------

BAD = sorted((DATA / "bad").glob("*.yaml"))


def expectations(path: Path) -> list[tuple[int, str, str]]:
    found = []
    for line in path.read_text().splitlines():
        m = EXPECT.match(line)
        if m:
            found.append((int(m.group(1)), "" if m.group(2) == "-" else m.group(2), m.group(3)))
    return found


def test_bad_fixtures_exist() -> None:
    assert len(BAD) >= 20
    for path in BAD:
        assert expectations(path), f"{path.name} has no '# expect:' line"


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_scenario(path: Path) -> None:
    with pytest.raises(ScenarioError) as info:
        load(path)
    problems = info.value.problems
    expected = expectations(path)
    got = [(p.line, p.path, p.message) for p in problems]
    for line, key, phrase in expected:
        assert any(p.line == line and p.path == key and phrase in p.message for p in problems), \
            f"expected {line} {key} ~ {phrase!r}; got:\n" + "\n".join(map(str, got))
    assert len(problems) == len(expected), "unexpected extra problems:\n" + \
        "\n".join(map(str, got))
    assert all(p.file == str(path) for p in problems)


def test_many_errors_are_reported_at_once() -> None:
    path = DATA / "bad" / "many-errors.yaml"
    with pytest.raises(ScenarioError) as info:
        load(path)
    assert len(info.value.problems) == len(expectations(path)) >= 7
    lines = [p.line or 0 for p in info.value.problems]
    assert lines == sorted(lines)  # reported in file order
    assert str(info.value).count(f"{path}:") == len(lines)  # one line per problem


# --- programs: the one registry's own checks ------------------------------------------------


def test_program_params_checked_by_registry() -> None:
    got = problems_of("""
        name: t
        nodes:
          a:
            interfaces:
              tun0:
                kind: tun
                program:
                  name: udp-tunnel
                  local: "10.0.0.1:6000"
                  colour: red
    """)
    assert {(line, path) for line, path, _ in got} == {
        (8, "nodes.a.interfaces.tun0.program.remote"),  # missing: the program's line
        (11, "nodes.a.interfaces.tun0.program.colour"),  # unknown: its own line
    }


def test_program_names() -> None:
    with pytest.raises(ScenarioError) as info:
        load(DATA / "bad" / "unknown-program.yaml")
    assert [(p.line, p.path) for p in info.value.problems] == [
        (9, "nodes.a.interfaces.tun0.program.name"),
        (10, "nodes.a.interfaces.tun1.program.name"),
        (11, "nodes.a.interfaces.tun2.program.python"),
    ]
