"""``python -m netvirt`` as the driver of labs across namespace-machines, as a user runs it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from netvirt.multi.testing import ROOT, NsMachines
from tests.conftest import unique

pytestmark = pytest.mark.root


def wait_kept(proc: subprocess.Popen[str], timeout: float = 90) -> list[str]:
    """Read the driver's stderr until a kept lab says it is up (its steps are done then)."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    assert proc.stderr is not None
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if " is up on " in line:
            return seen
    raise AssertionError(f"the kept lab never came up: {''.join(seen)}")


@pytest.mark.parametrize(("file", "params"), [("s3b_star_split.py", ["--param", "n=6"]),
                                              ("s4-udp-tunnel-split.yaml", [])])
def test_shipped_split_scenarios_pass_through_netvirt_run(ns_machines: NsMachines, file: str,
                                                          params: list[str]) -> None:
    lab = unique()
    res = ns_machines.netvirt("run", str(ROOT / "scenarios" / file), *params, "--name", lab, "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] and set(doc["machines"]) == {"m1", "m2"}
    assert doc["steps"] and all(s["ok"] for s in doc["steps"])
    assert ns_machines.lab_traces(lab) == []


def test_an_unreachable_machine_is_exit_3_naming_it(ns_machines: NsMachines, tmp_path) -> None:
    lab = unique()
    path = tmp_path / "pair.yaml"
    path.write_text(f"name: {lab}\n" + ns_machines.machines_yaml(("m1", "m3")).replace(
        ', command: "python3 -m netvirt"', "") + """\
nodes:
  a: {machine: m1, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b: {machine: m3, interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links:
  - [a:eth0, b:eth0]
""")
    res = ns_machines.netvirt("run", str(path))
    assert res.returncode == 3, res.stdout + res.stderr
    assert "netvirt: error: machine m3: cannot reach root@198.18.0.3 over SSH" in res.stderr
    assert ns_machines.lab_traces(lab) == []


def test_sigkill_of_netvirt_run_then_down_from_the_driver_cleans_both(ns_machines: NsMachines) -> None:
    lab = unique()
    proc = subprocess.Popen(ns_machines.driver_argv("run", str(ROOT / "scenarios" / "s4-udp-tunnel-split.yaml"),
                                                    "--name", lab, "--keep"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ns_machines.env())
    try:
        deadline = time.monotonic() + 60
        while len(ns_machines.lab_traces(lab)) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(ns_machines.lab_traces(lab)) == 5, ns_machines.lab_traces(lab)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    assert f"/run/netvirt/{lab}" in ns_machines.lab_traces(lab)
    res = ns_machines.netvirt("down", lab)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "down on 2 machines" in res.stdout
    assert ns_machines.lab_traces(lab) == []


def test_ctrl_c_of_a_kept_run_tears_down_every_machine(ns_machines: NsMachines) -> None:
    lab = unique()
    proc = subprocess.Popen(ns_machines.driver_argv("run", str(ROOT / "scenarios" / "s3b_star_split.py"),
                                                    "--name", lab, "--keep"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ns_machines.env(),
                            text=True)
    try:
        wait_kept(proc)
        assert len(ns_machines.lab_traces(lab)) == 8  # 5 namespaces (n=4), 3 state records
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + err  # Ctrl-C is how a kept lab ends: the steps' verdict
    assert "all checks passed" in out
    assert ns_machines.lab_traces(lab) == []


def test_status_and_exec_of_a_lab_across_machines_point_to_the_machines(ns_machines: NsMachines) -> None:
    lab = unique()
    proc = subprocess.Popen(ns_machines.driver_argv("run", str(ROOT / "scenarios" / "s4-udp-tunnel-split.yaml"),
                                                    "--name", lab, "--keep"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ns_machines.env(),
                            text=True)
    try:
        wait_kept(proc)
        res = ns_machines.netvirt("status", lab)
        assert res.returncode == 0, res.stderr
        assert "node left  (on machine m1, share" in res.stdout and "node right  (on machine m2" in res.stdout
        res = ns_machines.netvirt("exec", lab, "right", "--", "true")
        assert res.returncode == 2 and f"in its share '{lab}-2'" in res.stderr
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert ns_machines.lab_traces(lab) == []


def test_down_of_a_kept_lab_stops_its_driver_which_unwinds_every_machine(ns_machines: NsMachines) -> None:
    lab = unique()
    proc = subprocess.Popen(ns_machines.driver_argv("run", str(ROOT / "scenarios" / "s4-udp-tunnel-split.yaml"),
                                                    "--name", lab, "--keep"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=ns_machines.env(),
                            text=True)
    try:
        wait_kept(proc)
        res = ns_machines.netvirt("down", lab)
        assert res.returncode == 0, res.stdout + res.stderr
        assert "torn down by the driver" in res.stdout
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "all checks passed" in out  # SIGTERM ends a kept run: its verdict
    assert ns_machines.lab_traces(lab) == []
