"""Regressions for what the code review found: names, pids, cancellation, routes, exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netvirt
from netvirt._aio import complete
from netvirt.errors import ScenarioError, UsageError
from netvirt.scenario.model import check_lab_name
from netvirt.topology.down import stop_owner
from netvirt.topology.journal import process_start
from tests.conftest import unique
from tests.kernel.helpers import ROOT, assert_lab_gone
from tests.kernel.helpers import netvirt as cli


@pytest.mark.parametrize("bad", ["", ".", "..", "/", "/tmp", "a/../../b", "UPPER", "x" * 13])
def test_lab_names_are_checked_before_any_path_is_built(bad: str) -> None:
    with pytest.raises(UsageError):
        check_lab_name(bad)
    # before the check, `down ""` removed /run/netvirt itself and `down /tmp` removed /tmp
    res = cli("down", bad)
    assert res.returncode == 2 and "lab name" in res.stderr, res.stderr


def test_host_node_cannot_change_routes_or_sysctls() -> None:
    with pytest.raises(ScenarioError) as info:
        netvirt.load_text("name: x\nnodes:\n  me:\n    host: true\n"
                          "    sysctls: {net.ipv4.ip_forward: 1}\n")
    assert "host node cannot set sysctls" in str(info.value)


def test_persistent_tap_cannot_also_run_a_program() -> None:
    with pytest.raises(ScenarioError) as info:
        netvirt.load_text("name: x\nnodes:\n  n:\n    interfaces:\n"
                          "      tap0: {kind: tap, persist: true, program: {name: sink}}\n")
    assert "persistent tun/tap" in str(info.value)


def test_down_never_signals_a_reused_pid(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        lab_dir = tmp_path / "lab1"
        lab_dir.mkdir()
        start = process_start(other.pid)
        assert start is not None
        (lab_dir / "lab.json").write_text(json.dumps({"lab": "lab1", "pid": other.pid,
                                                       "pid_start": start + 1}))
        assert stop_owner("lab1", tmp_path) is False  # same pid, another process: left alone
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


async def test_complete_finishes_its_work_through_repeated_cancellation() -> None:
    finished = asyncio.Event()

    async def cleanup() -> None:
        await asyncio.sleep(0.05)
        finished.set()

    task = asyncio.ensure_future(complete(cleanup()))
    for _ in range(3):
        await asyncio.sleep(0.005)
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()


@pytest.mark.root
async def test_ipv6_default_route_keeps_its_family(tmp_path: Path) -> None:
    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(f"""name: {lab}
nodes:
  a:
    interfaces: {{eth0: {{addresses: ["fd00:7::1/64"]}}}}
    routes: [{{to: "::/0", dev: eth0}}]
  b:
    interfaces: {{eth0: {{addresses: ["fd00:7::2/64"]}}}}
links: [[a:eth0, b:eth0]]
""")
    async with netvirt.Topology(netvirt.load(f)) as topo:
        v6 = await topo.node("a").exec("ip -6 route show default")
        v4 = await topo.node("a").exec("ip -4 route show default")
        assert "default dev eth0" in v6.stdout and v4.stdout.strip() == ""
    assert_lab_gone(lab)


@pytest.mark.root
def test_run_keep_ends_on_sigterm_with_the_steps_verdict() -> None:
    from netvirt.topology.journal import read_info

    lab = unique()
    proc = subprocess.Popen([sys.executable, "-m", "netvirt", "run", "scenarios/s1a-tun-sink.yaml",
                             "--name", lab, "--keep"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not read_info(lab).get("ready"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "all checks passed" in out
    assert_lab_gone(lab)
    assert os.path.exists(ROOT / "scenarios" / "s1a-tun-sink.yaml")
