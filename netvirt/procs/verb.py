"""The ``exec`` verb: become a command inside a running lab's node, as its processes run.

The verb's process is not the lab's owner: it joins the lab's cgroup itself
(so the lab's teardown and ``down`` stop whatever it leaves running), and
enters the node's mount namespace through the anchor the owner recorded in
``nodes/<node>/anchor.json`` (pid and start time, checked *after* opening
its namespace, so a reused pid is never entered). Without an anchor (nothing
ran in the node yet) ``_enter.py`` makes the node's mounts for this one command.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from netvirt.procs import pids
from netvirt.procs.stop import lab_cgroup
from netvirt.procs.view import NodeView, helper_argv


def _anchor_fd(node_dir: Path) -> int | None:
    """An fd on the mount namespace of the node's anchor, if the anchor is still that process."""
    try:
        rec = json.loads((node_dir / "anchor.json").read_text())
        pid, start = int(rec["pid"]), int(rec["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY)
    except OSError:
        return None
    os.set_inheritable(fd, True)  # nsenter opens it as /proc/self/fd/N
    if pids.start_time(pid) != start:  # the number is someone else's now
        os.close(fd)
        return None
    return fd


def exec_verb_argv(lab: str, node: str, netns: str | None, argv: Sequence[str],
                   state_dir: Path) -> list[str]:
    """Join the lab's cgroup (this process, about to exec) and return the command line to exec."""
    group = lab_cgroup(lab)
    if group is not None and group.is_dir():
        with contextlib.suppress(OSError):
            (group / "cgroup.procs").write_text(str(os.getpid()))
    fd = _anchor_fd(state_dir / "nodes" / node)
    if fd is not None:
        net = [f"--net=/run/netns/{netns}"] if netns else []
        return ["nsenter", *net, f"--mount=/proc/self/fd/{fd}", f"--wd={os.getcwd()}", "--", *argv]
    node_dir = state_dir / "nodes" / node
    shared = state_dir / "hosts.shared"
    if not (node_dir / "view.json").exists() and shared.exists():
        # a node nothing ran in yet: its view was left for its first use (the lab's hosts only)
        with contextlib.suppress(OSError):
            NodeView(netns, node_dir).prepare(links={"hosts": shared})
    try:  # no anchor (nothing ran in the node yet): make the node's mounts for this command only
        rec = json.loads((node_dir / "view.json").read_text())
        view = NodeView(rec["netns"], node_dir, private=tuple(rec["private"]))
    except (OSError, ValueError, KeyError, TypeError):
        view = None
    if view is not None:
        return helper_argv(view.spec(), argv)
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", netns, *argv]


__all__ = ["exec_verb_argv"]
