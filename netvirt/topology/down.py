"""Tear a lab down from its state record alone (``netvirt down``), also after kill -9."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from netvirt.errors import EnvironmentProblem
from netvirt.topology.journal import (
    STATE_ROOT,
    DownReport,
    LabState,
    lab_dir,
    owner_alive,
    read_info,
    remove_journalled_netns,
    sweep_host_links,
)


def stop_owner(lab: str, root: Path = STATE_ROOT, timeout: float = 10.0) -> bool:
    """SIGTERM the live process that owns ``lab`` and wait for it. True if one was stopped.

    Only the recorded process is signalled (same pid *and* start time: after a
    kill -9 the pid may belong to someone else by now). If it does not exit in
    time, EnvironmentProblem: its lab is not touched under its feet.
    """
    info = read_info(lab, root)
    pid = int(info.get("pid") or 0)
    if not pid or pid == os.getpid() or not owner_alive(info):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not owner_alive(info):
            return True
        time.sleep(0.05)
    raise EnvironmentProblem(f"lab {lab!r}: its process {pid} did not stop within {timeout:.0f} s "
                             f"after SIGTERM; nothing was removed (try again, or stop pid {pid})")


async def down_lab(lab: str, root: Path = STATE_ROOT) -> DownReport:
    """Stop the lab's process if alive (it tears down itself), then clean what remains."""
    report = DownReport(lab)
    if not lab_dir(lab, root).is_dir():
        report.found = False
        return report
    report.stopped_pid = stop_owner(lab, root)
    if lab_dir(lab, root).is_dir():
        await sweep_host_links(lab, root, report)
        remove_journalled_netns(lab, root, report)
        LabState(lab, root=root).release()
    return report


__all__ = ["DownReport", "down_lab", "stop_owner"]
