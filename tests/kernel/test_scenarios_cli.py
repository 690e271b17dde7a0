"""Every shipped scenario runs green through ``python -m netvirt run``; exit codes per SPEC."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import unique
from tests.kernel.helpers import SCENARIOS, assert_lab_gone, netvirt

pytestmark = pytest.mark.root

SCENARIO_FILES = sorted(p.name for p in SCENARIOS.iterdir() if p.suffix in (".yaml", ".py"))
#: labs across machines need machines: tests/multi runs them against the namespace-machines
LOCAL_FILES = [f for f in SCENARIO_FILES if "split" not in f]


def test_scenario_list_is_complete() -> None:
    # the reference setups S1-S6 must ship (README, the table of scenarios)
    for prefix in ("s1a", "s1b", "s2", "s3a", "s3b", "s3c", "s4", "s5", "s6"):
        assert any(f.startswith(prefix) for f in SCENARIO_FILES), f"no scenario for {prefix}"


@pytest.mark.parametrize("name", LOCAL_FILES)
def test_scenario_runs_green(name: str) -> None:
    lab = unique()
    res = netvirt("run", f"scenarios/{name}", "--name", lab, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["ok"] and report["steps"], report
    assert all(s["ok"] for s in report["steps"])
    assert_lab_gone(lab)


def test_star_of_100_nodes() -> None:
    lab = unique()
    res = netvirt("run", "scenarios/s3b_star.py", "--param", "n=100", "--name", lab, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert [s["title"] for s in report["steps"]][0].startswith("ping h1 -> 10.2.0.101")
    assert_lab_gone(lab)


def test_failing_check_exits_1(tmp_path) -> None:
    lab = unique()
    f = tmp_path / "fail.yaml"
    f.write_text(textwrap.dedent(f"""
        name: {lab}
        nodes:
          a: {{interfaces: {{eth0: {{addresses: [10.9.0.1/24]}}}}}}
          b: {{interfaces: {{eth0: {{addresses: [10.9.0.2/24]}}}}}}
        links: [[a:eth0, b:eth0]]
        steps:
          - ping: {{from: a, to: 10.9.0.2, count: 1}}
          - ping: {{from: a, to: 10.9.0.3, count: 1, timeout: 0.3}}
    """))
    res = netvirt("run", str(f))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "PASS" in res.stdout and "FAIL" in res.stdout and "0/1 replies" in res.stdout
    assert_lab_gone(lab)


def test_bad_scenario_exits_2_and_names_the_place(tmp_path) -> None:
    lab = unique()
    f = tmp_path / "bad.yaml"
    f.write_text(f"name: {lab}\nnodes:\n  a:\n    interfaces:\n      eth0: {{addresses: [10.0.0.300/24]}}\n")
    res = netvirt("run", str(f))
    assert res.returncode == 2
    assert "bad.yaml:5" in res.stderr and "addresses[0]" in res.stderr
    assert_lab_gone(lab)
    assert netvirt("validate", str(f)).returncode == 2


def test_usage_errors_exit_2() -> None:
    assert netvirt("run").returncode == 2
    assert netvirt("run", "scenarios/s3b_star.py", "--param", "nokv").returncode == 2
    assert netvirt("validate", "scenarios/does-not-exist.yaml").returncode == 2


def test_validate_and_graph(tmp_path) -> None:
    res = netvirt("validate", "scenarios/s4-udp-tunnel.yaml", "--json")
    assert res.returncode == 0 and json.loads(res.stdout)["nodes"] == 2
    for suffix in ("dot", "mmd", "svg", "png"):
        out = tmp_path / f"g.{suffix}"
        res = netvirt("graph", "scenarios/s2-vm-tap-bridge.yaml", "-o", str(out))
        assert res.returncode == 0, res.stderr
        assert out.stat().st_size > 100
    assert "tap0" in (tmp_path / "g.dot").read_text()
