"""The state record of a lab: what it created, written *before* each creation.

Layout: ``/run/netvirt/<lab>/`` holds ``lab.json`` (lab name, pid, scenario
file, start time) and ``journal.jsonl``, one JSON object per line, appended
and flushed before the kernel object exists:

    {"op": "netns", "name": "nv-lab-left"}                  intent
    {"op": "netns-done", "name": "nv-lab-left", "ino": 4026532177}
    {"op": "link", "netns": null, "ifname": "nvx0", "alias": "netvirt:lab"}

The replay (:func:`remove_journalled_netns`, :func:`sweep_host_links`), used by
teardown and by ``down`` (also after ``kill -9``), walks the journal backwards and
deletes a namespace only if its inode still matches the recorded one, and a host
link only if it still carries the lab's alias; it never deletes anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netvirt.errors import NameTakenError, NoSuchObjectError
from netvirt.netns import Namespace, netns_path, netns_tag, remove_netns
from netvirt.scenario.model import check_lab_name, lab_alias

STATE_ROOT = Path(os.environ.get("NETVIRT_STATE_DIR", "/run/netvirt"))


def lab_dir(lab: str, root: Path = STATE_ROOT) -> Path:
    return root / check_lab_name(lab)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def process_start(pid: int) -> int | None:
    """A process's start time (clock ticks after boot, /proc/PID/stat field 22), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def owner_alive(info: dict[str, Any]) -> bool:
    """Whether the process recorded in ``info`` is still that process (pids get reused)."""
    pid = int(info.get("pid") or 0)
    if not pid or not pid_alive(pid):
        return False
    recorded = info.get("pid_start")
    return recorded is None or process_start(pid) == recorded


@dataclass
class LabState:
    lab: str
    root: Path = STATE_ROOT
    info: dict[str, Any] = field(default_factory=dict)
    claimed: bool = False  # this object created the lab's directory (and so may remove it)
    #: the ops journalled by this process (a teardown skips the sweeps of ops it never made)
    ops: set[str] = field(default_factory=set)
    _journal: Any = None

    def __post_init__(self) -> None:
        check_lab_name(self.lab)

    @property
    def dir(self) -> Path:
        return lab_dir(self.lab, self.root)

    # -- writing (the building process) ------------------------------------
    def claim(self, *, scenario: str | None, detail: dict[str, Any] | None = None) -> None:
        """Create the lab's state directory; fail if the lab exists (alive or stale)."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            self.dir.mkdir()
        except FileExistsError:
            other = read_info(self.lab, self.root)
            deadline = time.monotonic() + 2.0
            while not other and time.monotonic() < deadline:
                # its creator writes lab.json right after the directory: wait for it
                time.sleep(0.01)
                other = read_info(self.lab, self.root)
            if not other:
                raise NameTakenError(
                    f"lab {self.lab!r} exists already, with an incomplete state record "
                    f"({self.dir}); if no netvirt is creating it, run 'netvirt down {self.lab}'"
                ) from None
            pid = int(other.get("pid", 0))
            if owner_alive(other):
                raise NameTakenError(
                    f"lab {self.lab!r} is already running (pid {pid}); "
                    f"stop it with 'netvirt down {self.lab}' or use another lab name"
                ) from None
            raise NameTakenError(
                f"lab {self.lab!r} has leftovers of a run that did not finish; "
                f"run 'netvirt down {self.lab}' first"
            ) from None
        self.claimed = True
        self.info = {"lab": self.lab, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                     "scenario": scenario,
                     "started": time.time(), **(detail or {})}
        self.write_info()
        self._journal = open(self.dir / "journal.jsonl", "a", buffering=1)  # noqa: SIM115 (closed by release)

    def write_info(self) -> None:
        tmp = self.dir / "lab.json.tmp"
        tmp.write_text(json.dumps(self.info, indent=1))
        tmp.replace(self.dir / "lab.json")

    def record(self, **entry: Any) -> None:
        self.ops.add(str(entry.get("op")))
        self._journal.write(json.dumps(entry, separators=(",", ":")) + "\n")

    def release(self) -> None:
        """Everything is gone: remove the state directory."""
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        shutil.rmtree(self.dir, ignore_errors=True)


def read_info(lab: str, root: Path = STATE_ROOT) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((lab_dir(lab, root) / "lab.json").read_text())
        return data
    except (OSError, ValueError):
        return {}


def read_journal(lab: str, root: Path = STATE_ROOT) -> Iterator[dict[str, Any]]:
    try:
        lines = (lab_dir(lab, root) / "journal.jsonl").read_text().splitlines()
    except OSError:
        return
    for line in lines:
        with contextlib.suppress(ValueError):
            yield json.loads(line)


def list_labs(root: Path = STATE_ROOT) -> list[str]:
    try:
        return sorted(p.name for p in root.iterdir() if p.is_dir())
    except OSError:
        return []


# --- replay: delete what the journal names, if it is still this lab's ------------------


@dataclass
class DownReport:
    lab: str
    stopped_pid: bool = False
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # what of its processes had to be stopped
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
    reported, never touched. Returns inode -> name of every namespace of the lab
    that is gone from /run/netns (for ``find_holders``).
    """
    entries = list(read_journal(lab, root))
    done = {e.get("name") for e in entries if e.get("op") == "netns-done"}
    gone: dict[int, str] = {}
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
            # a removal cut short between the unmount and the unlink leaves the name file
            # we created, with our tag as its content (see Namespace.create)
            if not os.path.ismount(netns_path(name)) and netns_tag(name) == lab_alias(lab):
                if remove_netns(name) and report:
                    report.namespaces.append(name)
            elif report:
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
    """Delete the host-namespace links the journal names, if they are provably this lab's.

    A record with an ``index`` (the ifindex the link was created with, journaled
    before the create) proves it: a link of that name *and* index is this lab's,
    tagged yet or not (a kill between the create and the ifalias); a link of that
    name with another index is someone else's, even if it carries the lab's tag.
    A record without an index (0.1.0's journals, the datapath's taps) falls back
    to the tag.
    """
    entries = [e for e in read_journal(lab, root) if e.get("op") == "link" and e.get("netns") is None]
    if not entries:
        return
    tag = lab_alias(lab)
    host = await Namespace.host()
    try:
        def sweep() -> None:
            nl = host.netlink
            for entry in reversed(entries):
                name = entry["ifname"]
                index = nl.find(name)
                if index is None:
                    continue
                recorded = entry.get("index")
                ours = index == recorded if recorded else nl.link(index).alias == tag
                if not ours:
                    if report:
                        report.skipped.append(f"link {name} (not the one this lab created)" if recorded
                                              else f"link {name} (not tagged {tag})")
                    continue
                with contextlib.suppress(NoSuchObjectError):
                    nl.link_del(index)
                if report:
                    report.links.append(name)

        await host.call(sweep)
    finally:
        await host.close()
