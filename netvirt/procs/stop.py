"""Stopping from the journal alone: what ``down`` (and a teardown) runs for a lab's processes.

The journal holds, written before each launch: the lab's cgroup (``{"op":
"cgroup", "path": ...}``, before it is made), each process's own cgroup
(``"proc"``) and its pid and start time (``"proc-pid"``). After the owner was
SIGKILLed this is enough: every process of the lab is in the lab's cgroup
(nothing leaves it on its own), so SIGTERM to each member (through a pidfd,
checked to still be a member), a wait, then ``cgroup.kill`` stops all of it,
the daemons that ``setsid`` away included. A recorded pid is signalled only
if its start time still matches (pids get reused).
"""

from __future__ import annotations

import functools
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netvirt.procs import cgroup, pids

Journal = Callable[..., None]


@dataclass
class StopReport:
    stopped: list[str] = field(default_factory=list)  # "node.name pid 123" or a cgroup
    killed: int = 0  # processes that needed SIGKILL
    left: list[int] = field(default_factory=list)  # pids that did not die (D state)


def lab_cgroup(lab: str) -> Path | None:
    root = cgroup.root()
    return root / lab if root is not None else None


def open_lab_cgroup(lab: str, journal: Journal) -> Path | None:
    """Journal then create the lab's cgroup (None without cgroup v2)."""
    path = lab_cgroup(lab)
    if path is None:
        return None
    journal(op="cgroup", path=str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir(exist_ok=True)  # a leftover of this lab name is this lab's: its journal said so
    return path


def _term_then_kill(paths: list[Path], timeout: float, report: StopReport) -> None:
    for path in paths:
        for pid in cgroup.procs(path):
            if pids.signal_if(pid, signal.SIGTERM, functools.partial(cgroup.contains, path)):
                report.stopped.append(f"pid {pid}")
    deadline = time.monotonic() + timeout
    for path in paths:
        if cgroup.wait_empty(path, max(0.0, deadline - time.monotonic())):
            continue
        report.killed += len(cgroup.procs(path))
        if not cgroup.kill(path):
            for pid in cgroup.procs(path):
                pids.signal_if(pid, signal.SIGKILL, functools.partial(cgroup.contains, path))
        if not cgroup.wait_empty(path, 10.0):
            report.left.extend(cgroup.procs(path))


def _stop_by_pid(pid: int, start: int | None, pgid: int | None, timeout: float) -> None:
    """TERM, wait, KILL: the recorded process (if still the same) and its process group."""
    if not pids.is_same(pid, start):
        return  # gone, or the number belongs to another process by now

    def ours(p: int) -> bool:
        s = pids.stat(p)
        return s is not None and (p == pid and s.start == start or pgid is not None and s.pgid == pgid)

    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = pids.in_group(pgid) if pgid else [pid]
        for m in members:
            pids.signal_if(m, sig, ours)
        deadline = time.monotonic() + timeout
        while any(ours(m) and pids.is_same(m, None) for m in members) and time.monotonic() < deadline:
            time.sleep(0.02)


def stop_journaled(entries: Iterable[dict[str, Any]], *, timeout: float = 5.0) -> StopReport:
    """Stop every process the journal ``entries`` name, and remove their cgroups."""
    entries = list(entries)
    report = StopReport()
    lab_groups = [Path(e["path"]) for e in entries if e.get("op") == "cgroup" and e.get("path")]
    leaves = [Path(e["cgroup"]) for e in entries if e.get("op") == "proc" and e.get("cgroup")]
    under_lab = [leaf for leaf in leaves if any(g in leaf.parents for g in lab_groups)]
    others = [leaf for leaf in leaves if leaf not in under_lab]
    # processes recorded without a cgroup (no cgroup v2): by pid + start time, and their group
    for e in entries:
        if e.get("op") != "proc-pid" or not e.get("pid"):
            continue
        named = next((x for x in entries if x.get("op") == "proc" and x.get("name") == e.get("name")
                      and x.get("cgroup")), None)
        if named is not None:
            continue
        _stop_by_pid(int(e["pid"]), e.get("start"), e.get("pgid"), timeout)
        report.stopped.append(f"{e.get('name')} pid {e['pid']}")
    groups = [g for g in lab_groups + others if g.is_dir()]
    if groups:
        _term_then_kill(groups, timeout, report)
    root = cgroup.root()
    for g in groups:
        cgroup.remove(g, up_to=root.parent if root is not None else None)
    return report


async def close_lab_cgroup(path: Path | None, timeout: float = 5.0) -> StopReport:
    """Stop whatever is still in the lab's cgroup and remove it (the teardown's last word)."""
    import asyncio

    if path is None or not path.is_dir():
        return StopReport()
    return await asyncio.to_thread(stop_journaled, [{"op": "cgroup", "path": str(path)}], timeout=timeout)


__all__ = ["StopReport", "close_lab_cgroup", "lab_cgroup", "open_lab_cgroup", "stop_journaled"]
