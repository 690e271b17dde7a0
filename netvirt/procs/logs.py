"""``netvirt logs LAB NODE[.NAME] [-f]``: find a process's log and show or follow it."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from netvirt.errors import UsageError


def find_log(state_dir: Path, target: str) -> Path:
    """The log of ``NODE.NAME``, or of ``NODE``'s only process; UsageError naming the choices."""
    logs = state_dir / "logs"
    node, _, name = target.partition(".")
    if name:
        path = logs / f"{node}.{name}.log"
        if path.is_file():
            return path
    mine = sorted(p for p in logs.glob(f"{node}.*.log")) if logs.is_dir() else []
    if not name and len(mine) == 1:
        return mine[0]
    choices = ", ".join(p.name[:-4] for p in mine) or "none"
    what = f"process {target!r}" if name else f"one process in node {node!r}"
    raise UsageError(f"no log of {what} in lab {state_dir.name!r} (logs: {choices}); "
                     f"name one as NODE.NAME")


def follow(path: Path, write: Callable[[bytes], object], *, keep_going: Callable[[], bool],
           poll: float = 0.2) -> None:
    """Write what ``path`` holds, then what is appended, until ``keep_going()`` turns False
    (the lab is gone) or the file is deleted. Ctrl-C ends it (KeyboardInterrupt)."""
    with open(path, "rb") as f:
        while True:
            chunk = f.read(65536)
            if chunk:
                write(chunk)
                continue
            if not keep_going() or not os.path.exists(path):
                return
            time.sleep(poll)


__all__ = ["find_log", "follow"]
