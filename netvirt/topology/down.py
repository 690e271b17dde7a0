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
    found: bool = True
    #: processes that keep a removed namespace (and its devices) alive: "nv-x-a: pid 12 (qemu) holds tap0"
    holders: list[str] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)


def remove_journalled_netns(lab: str, root: Path = STATE_ROOT,
                            report: DownReport | None = None) -> dict[int, str]:
    """Remove each namespace the journal says this lab created, if it is provably that one.

    Done records carry the namespace's inode: it must still match. A creation cut
    short (an intent with no done record: a kill between the create and the
    journal line) is proven by the tag the namespace carries from its first
    instant (``netns_tag``); anything else of that name is someone else's and is
    reported, never touched.
    """
    from netvirt.netns import netns_tag
    from netvirt.topology.state import lab_alias

    entries = list(read_journal(lab, root))
    done = {e.get("name") for e in entries if e.get("op") == "netns-done"}
    gone: dict[int, str] = {}  # inode -> name of each namespace of this lab that was removed or is nameless
    for entry in reversed(entries):
        if entry.get("op") == "netns" and entry.get("name") not in done:
            name = entry["name"]
            if not os.path.lexists(netns_path(name)):
                continue
            if netns_tag(name) == lab_alias(lab):
                with contextlib.suppress(OSError):
                    gone[os.stat(netns_path(name)).st_ino] = name
                if remove_netns(name) and report:
                    report.namespaces.append(name)
            elif report:
                report.skipped.append(f"namespace {name} (not tagged {lab_alias(lab)}: not this lab's)")
        if entry.get("op") != "netns-done":
            continue
        name = entry["name"]
        if entry.get("ino"):
            gone[int(entry["ino"])] = name
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
    return gone


def find_holders(gone: dict[int, str], report: DownReport, *, kill: bool) -> None:
    """Report (and with ``kill``, stop) the processes that keep removed namespaces alive."""
    from netvirt.holders import holders, kill_holders

    found = holders(set(gone))
    if kill and found:
        every = [h for hs in found.values() for h in hs]
        left = set(kill_holders(every))
        report.killed += [f"{gone[ino]}: {h}" for ino, hs in found.items() for h in hs if h not in left]
        found = {ino: [h for h in hs if h in left] for ino, hs in found.items()}
    report.holders += [f"{gone[ino]}: {h}" for ino, hs in found.items() for h in hs]


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


async def down_lab(lab: str, root: Path = STATE_ROOT, *, kill_holders: bool = False) -> DownReport:
    """Stop the lab's process if alive (it tears down itself), then clean what remains.

    A namespace that some process still holds (qemu on a persistent tap, a shell
    that entered it) lives on after its name is gone, with its devices: those
    processes are reported in ``holders`` and the state record is kept, so that a
    later ``down`` (``kill_holders=True`` stops them) finds the namespaces again.
    """
    report = DownReport(lab)
    if not lab_dir(lab, root).is_dir():
        report.found = False
        return report
    report.stopped_pid = stop_owner(lab, root)
    if lab_dir(lab, root).is_dir():
        await sweep_host_links(lab, root, report)
        gone = remove_journalled_netns(lab, root, report)
        find_holders(gone, report, kill=kill_holders)
        if not report.holders:
            LabState(lab, root=root).release()
    return report


__all__ = ["DownReport", "down_lab", "find_holders", "remove_journalled_netns", "sweep_host_links"]
