"""Regressions found by the review of 0.1.0, pure side: lab names, host nodes, persistent
taps, pid reuse, cancellation-proof cleanup."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

import netvirt
from netvirt._aio import complete
from netvirt.errors import ScenarioError
from netvirt.topology.down import stop_owner
from netvirt.topology.journal import process_start


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
