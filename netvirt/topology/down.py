"""Tear a lab down from its state record alone (``netvirt down``), also after kill -9."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from netvirt.errors import NoSuchObjectError
from netvirt.netns import Namespace, netns_path, remove_netns
from netvirt.topology.state import STATE_ROOT, LabState, lab_dir, read_journal, stop_owner


@dataclass
class DownReport:
    lab: str
    stopped_pid: bool = False
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    found: bool = True


def remove_journalled_netns(lab: str, root: Path = STATE_ROOT, report: DownReport | None = None) -> None:
    """Remove each namespace the journal says this lab created, if it is still that one.

    A namespace whose creation was cut short (an intent with no "done" record)
    is removed only if it never got mounted (the empty file ``O_EXCL`` made);
    a mounted one cannot be proven ours and is reported, not touched.
    """
    entries = list(read_journal(lab, root))
    done = {e.get("name") for e in entries if e.get("op") == "netns-done"}
    for entry in reversed(entries):
        if entry.get("op") == "netns" and entry.get("name") not in done:
            _cut_short(entry["name"], report)
        if entry.get("op") != "netns-done":
            continue
        name = entry["name"]
        try:
            ino = os.stat(netns_path(name)).st_ino
        except FileNotFoundError:
            continue
        if ino != entry.get("ino"):
            if report:
                report.skipped.append(f"namespace {name} (not the one this lab created)")
            continue
        if remove_netns(name) and report:
            report.namespaces.append(name)


def _cut_short(name: str, report: DownReport | None) -> None:
    path = netns_path(name)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not os.path.ismount(path) and st.st_size == 0:
        os.unlink(path)  # O_EXCL made it, the bind mount never happened
        if report:
            report.namespaces.append(name)
    elif report:
        report.skipped.append(f"namespace {name} (its creation was interrupted, so it cannot be "
                              f"proven this lab's: 'ip netns del {name}' removes it if it is)")


async def sweep_host_links(lab: str, root: Path = STATE_ROOT, report: DownReport | None = None) -> None:
    """Delete the host-namespace links the journal names, if they carry this lab's tag."""
    names = [e["ifname"] for e in read_journal(lab, root) if e.get("op") == "link" and e.get("netns") is None]
    if not names:
        return
    from netvirt.topology.state import lab_alias

    tag = lab_alias(lab)
    host = await Namespace.host()
    try:
        def sweep() -> None:
            nl = host.netlink
            for name in reversed(names):
                index = nl.find(name)
                if index is None:
                    continue
                if nl.link(index).alias != tag:
                    if report:
                        report.skipped.append(f"link {name} (not tagged {tag})")
                    continue
                with contextlib.suppress(NoSuchObjectError):
                    nl.link_del(index)
                if report:
                    report.links.append(name)

        await host.call(sweep)
    finally:
        await host.close()


async def down_lab(lab: str, root: Path = STATE_ROOT) -> DownReport:
    """Stop the lab's process if alive (it tears down itself), then clean what remains."""
    report = DownReport(lab)
    if not lab_dir(lab, root).is_dir():
        report.found = False
        return report
    report.stopped_pid = stop_owner(lab, root)
    if lab_dir(lab, root).is_dir():
        from netvirt.procs import stop_journaled

        procs = stop_journaled(read_journal(lab, root))  # before their namespaces go
        report.processes = procs.stopped
        report.skipped += [f"process {pid} (still alive after SIGKILL)" for pid in procs.left]
        await sweep_host_links(lab, root, report)
        remove_journalled_netns(lab, root, report)
        LabState(lab, root=root).release()
    return report


__all__ = ["DownReport", "down_lab", "remove_journalled_netns", "sweep_host_links"]
