"""Pure tests of topology pictures: DOT, Mermaid, and SVG/PNG through graphviz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from netvirt.errors import UnsupportedError, UsageError
from netvirt.scenario import Scenario, load
from netvirt.scenario.graph import render, to_dot, to_mermaid

DATA = Path(__file__).parents[1] / "data" / "good"
SCENARIOS = ["s4-tunnel.yaml", "every-kind.yaml", "star.py"]


@pytest.fixture(params=SCENARIOS)
def scenario(request: pytest.FixtureRequest) -> Scenario:
    return load(DATA / request.param)


def test_dot_has_every_node_interface_and_link(scenario: Scenario) -> None:
    dot = to_dot(scenario)
    assert dot.startswith(f'graph "{scenario.name}" {{') and dot.rstrip().endswith("}")
    for name, node in scenario.nodes.items():
        assert f'subgraph "cluster_{name}"' in dot
        for iface in node.interfaces.values():
            assert f'"{iface.endpoint}" [label="{iface.name}' in dot
    for link in scenario.links:
        assert f'"{link.a}" -- "{link.b}"' in dot


def test_mermaid_has_every_node_interface_and_link(scenario: Scenario) -> None:
    mmd = to_mermaid(scenario)
    assert "flowchart LR" in mmd
    for name, node in scenario.nodes.items():
        assert f'["{name}"]' in mmd
        for iface in node.interfaces.values():
            assert f'"{iface.name}' in mmd
    edges = [line for line in mmd.splitlines() if " --- " in line or " ---|" in line]
    assert len(edges) == len(scenario.links)


def test_dot_draws_ports_parents_programs_and_mtu() -> None:
    s = load(DATA / "every-kind.yaml")
    dot = to_dot(s)
    assert '"hv:tap0" -- "hv:br0" [style=bold' in dot  # bridge port
    assert '"host:mv0" -- "host:eth0" [style=dashed, label="macvlan private"]' in dot
    assert '"lan:mvt0" -- "host:eth0" [style=dashed, label="macvtap bridge"]' in dot
    assert "program: responder" in dot and "program: python mylab.guests:echo" in dot
    assert "shape=box3d" in dot  # the bridge
    assert "tun0 (tun)\\n192.168.3.11/24\\nprogram: sink" in dot
    assert 'label="mtu 9000"' in to_dot(load(DATA / "s4-tunnel.yaml"))
    mmd = to_mermaid(s)
    assert " === " in mmd and " -.-|macvlan private| " in mmd


def test_text_formats_by_suffix(tmp_path: Path) -> None:
    s = load(DATA / "s4-tunnel.yaml")
    assert render(s, tmp_path / "t.dot").read_text() == to_dot(s)
    assert render(s, tmp_path / "t.mmd").read_text() == to_mermaid(s)
    with pytest.raises(UsageError, match=r"must end in \.svg, \.png, \.dot or \.mmd"):
        render(s, tmp_path / "t.jpg")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
@pytest.mark.parametrize("suffix", [".svg", ".png"])
def test_images_through_graphviz(tmp_path: Path, suffix: str) -> None:
    s = load(DATA / "every-kind.yaml")
    out = render(s, tmp_path / f"lab{suffix}")
    data = out.read_bytes()
    if suffix == ".svg":
        text = data.decode()
        assert "<svg" in text
        for name in s.nodes:
            assert name in text
    else:
        assert data.startswith(b"\x89PNG")


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz dot is not installed")
def test_dot_output_is_valid_graphviz(scenario: Scenario) -> None:
    proc = subprocess.run(["dot", "-Tcanon"], input=to_dot(scenario).encode(),
                          capture_output=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()


def test_images_need_graphviz(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(UnsupportedError, match=r"apt-get install graphviz"):
        render(load(DATA / "s4-tunnel.yaml"), tmp_path / "t.svg")
