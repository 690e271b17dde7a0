"""Kernel tests of processes: after each test, nothing of this test process may run."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from netvirt.procs import cgroup, stop_journaled


@pytest.fixture(autouse=True)
def no_processes_left() -> Iterator[None]:
    yield
    root = cgroup.root()
    mine = root / f"p{os.getpid()}" if root is not None else None
    if mine is None or not mine.exists():
        return
    left = cgroup.procs(mine)
    stop_journaled([{"op": "cgroup", "path": str(mine)}], timeout=0.5)  # clean up, then fail
    assert not left, f"processes left running: {left}"
    raise AssertionError(f"cgroups left: {mine}")
