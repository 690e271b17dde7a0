"""Shared test setup: every async test runs on asyncio AND uvloop; nothing may leak.

Layout: ``tests/unit/`` holds pure tests (no root, no kernel objects: ``.ci/run``
runs them as an unprivileged user), ``tests/kernel/`` the real-kernel tests, all of
which are marked ``root`` here at collection. A test in ``tests/unit/`` that asks
for ``root`` is a collection error.

Real-kernel tests name what they create with ``unique()`` (``nvt``, a tag of
this process, random hex) and are marked ``root``. The autouse fixture
``no_leaks`` records this process's namespaces, fds and root-namespace links
before each root test and fails the test if any is left afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, object]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


#: names made by this test process start with this (so parallel runs, e.g. xdist
#: workers, never blame each other for leftovers)
PROC_TAG = f"nvt{os.getpid() % 4096:03x}"


def unique() -> str:
    """A name no other test or process will use (10 chars: fits lab names)."""
    return f"{PROC_TAG}{secrets.token_hex(2)}"


def _netns_names() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def _host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line}


_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        where = Path(str(item.path)).resolve()
        if where.is_relative_to(_HERE / "kernel"):
            item.add_marker(pytest.mark.root)
        elif where.is_relative_to(_HERE / "unit") and item.get_closest_marker("root") is not None:
            raise pytest.UsageError(f"{item.nodeid}: a unit test may not need root: move it to tests/kernel/")


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("root") is None:
        yield
        return
    if os.geteuid() != 0:
        pytest.fail("real-kernel tests need root: run the suite as root (see README)")
    ns0, fd0, links0 = _netns_names(), _fds(), _host_links()
    yield
    ns1, fd1, links1 = _netns_names(), _fds(), _host_links()
    mine = {n for n in ns1 - ns0 if n.startswith((PROC_TAG, f"nv-{PROC_TAG}"))}
    assert not mine, f"namespaces left behind: {sorted(mine)}"
    new_links = {n for n in links1 - links0 if n.startswith(PROC_TAG)}
    assert not new_links, f"links left in the host namespace: {sorted(new_links)}"
    import netvirt.netns

    leaked = fd1 - fd0 - {netvirt.netns._home_fd}  # the pool's one fd on the host namespace
    # give the loop's own fds (epoll, self-pipe of a fresh loop) a pass: check device fds only
    leaked_dev = set()
    for fd in leaked:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(("/dev/net/tun", "/dev/tap", "/run/netns")) or "net:[" in target:
            leaked_dev.add(target)
    assert not leaked_dev, f"fds left open: {sorted(leaked_dev)}"
