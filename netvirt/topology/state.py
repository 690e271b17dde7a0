"""The state record of a lab: what it created, written *before* each creation.

Layout: ``/run/netvirt/<lab>/`` holds ``lab.json`` (lab name, pid, scenario
file, start time) and ``journal.jsonl``, one JSON object per line, appended
and flushed before the kernel object exists:

    {"op": "netns", "name": "nv-lab-left"}                  intent
    {"op": "netns-done", "name": "nv-lab-left", "ino": 4026532177}
    {"op": "link", "netns": null, "ifname": "nvx0", "alias": "netvirt:lab"}

``down`` (also after ``kill -9``) replays the journal backwards and deletes a
namespace only if its inode still matches the recorded one, and a host link
only if it still carries the lab's alias; it never deletes anything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netvirt.errors import NameTakenError, UsageError

STATE_ROOT = Path(os.environ.get("NETVIRT_STATE_DIR", "/run/netvirt"))


def check_lab_name(lab: str) -> str:
    """``lab`` if it is a valid lab name, else UsageError.

    Every path under the state root is built from a lab name: an unchecked
    one ("", ".", "/x") would point ``down`` at another directory.
    """
    from netvirt.topology._checks import name_problem

    problem = name_problem(lab, "lab name")
    if problem:
        raise UsageError(problem)
    return lab


def lab_dir(lab: str, root: Path = STATE_ROOT) -> Path:
    return root / check_lab_name(lab)


def lab_alias(lab: str) -> str:
    return f"netvirt:{lab}"


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
    from netvirt.errors import EnvironmentProblem

    raise EnvironmentProblem(f"lab {lab!r}: its process {pid} did not stop within {timeout:.0f} s "
                             f"after SIGTERM; nothing was removed (try again, or stop pid {pid})")
