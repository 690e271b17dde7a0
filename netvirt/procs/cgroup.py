"""cgroup v2 as the exact set of a lab's processes (also of the daemons that setsid away).

A process joins its cgroup before it can fork (``_enter.py`` does it first), and
its children inherit it; ``setsid`` or double forks do not leave it. So a cgroup
answers "is anything of this process left?" (``cgroup.events``: populated) and
kills it all at once, forks in flight included (``cgroup.kill``, Linux 5.14).

Layout, in the cgroup2 hierarchy (``/sys/fs/cgroup`` on a unified host,
``/sys/fs/cgroup/unified`` on a hybrid one)::

    netvirt/<lab>/               the lab: cgroup.kill here stops everything of it
    netvirt/<lab>/<node>.<name>  one per process (and per exec step)

No controller is enabled: netvirt uses the hierarchy only to find processes.
Without a cgroup2 mount (or without rights to write it), :func:`root` is None
and the launcher falls back to process groups and the node's netns inode.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import time
from pathlib import Path

_root: Path | None | bool = False  # False: not probed yet


@functools.cache
def _find_mount() -> Path | None:
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


def root() -> Path | None:
    """``<cgroup2 mount>/netvirt`` if this machine lets netvirt use cgroups, else None."""
    global _root
    if _root is False:
        mount = _find_mount()
        _root = None
        if mount is not None and os.access(mount, os.W_OK) and (mount / "cgroup.procs").exists():
            _root = mount / "netvirt"
    return _root if isinstance(_root, Path) else None


def make(path: Path) -> None:
    """Create ``path`` (and its parents up to the cgroup mount). An existing one is an error
    only for the leaf: a leaf is the cgroup of exactly one launch."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()


def procs(path: Path) -> list[int]:
    """The pids in ``path`` and every cgroup below it (empty if it is gone)."""
    out: list[int] = []
    if not path.is_dir():
        return out
    for dirpath, _dirs, _files in os.walk(path):
        with contextlib.suppress(OSError, ValueError):
            out.extend(int(x) for x in Path(dirpath, "cgroup.procs").read_text().split())
    return out


def populated(path: Path) -> bool:
    try:
        for line in (path / "cgroup.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "populated":
                return value.strip() == "1"
    except OSError:
        return False
    return False


def contains(path: Path, pid: int) -> bool:
    """Whether process ``pid`` is in ``path`` or below (read from /proc/PID/cgroup)."""
    mount = _find_mount()
    if mount is None:
        return False
    rel = "/" + str(path.relative_to(mount))
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    cg = line[3:].strip()
                    return cg == rel or cg.startswith(rel + "/")
    except OSError:
        return False
    return False


def kill(path: Path) -> bool:
    """SIGKILL everything in ``path`` and below at once. False if ``cgroup.kill`` is missing."""
    try:
        (path / "cgroup.kill").write_text("1")
        return True
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENODEV):
            return False
        raise


def wait_empty(path: Path, timeout: float) -> bool:
    """Wait until nothing runs in ``path`` any more (zombies do not count)."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while populated(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    return True


def remove(path: Path, *, up_to: Path | None = None) -> bool:
    """rmdir ``path`` and the cgroups below it (bottom up); then its empty parents up to
    ``up_to`` (excluded). False if something in it still runs."""
    if not path.is_dir():
        return True
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda t: -len(t[0])):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                return False
            raise
    parent = path.parent
    while up_to is not None and parent != up_to and up_to in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = parent.parent
    return True


__all__ = ["contains", "kill", "make", "populated", "procs", "remove", "root", "wait_empty"]
