"""LabProcesses: a lab's processes started in order, watched, listed, stopped; logs found."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from pathlib import Path

import pytest

from netvirt.errors import UsageError
from netvirt.netns import Namespace
from netvirt.procs import ProcessError, parse_ready, pids
from netvirt.procs.lab import LabProcesses, read_status
from netvirt.procs.logs import find_log, follow
from netvirt.procs.spec import ProcessSpec
from tests.conftest import unique

pytestmark = pytest.mark.root


async def test_start_in_order_watch_list_and_stop(tmp_path: Path) -> None:
    ns = await Namespace.create(unique())
    failures = []
    lab = LabProcesses(tmp_path, on_failure=failures.append)
    try:
        lab.view("srv", ns.name, files={"app/app.conf": b"port 7100\n"}, private=["/var/run/nvtest"])
        await lab.start_all([
            ("srv", ProcessSpec("web", f"exec {sys.executable} -m http.server "
                                "$(sed 's/port //' /etc/app/app.conf)",
                                ready=parse_ready({"tcp": 7100, "timeout": 10}))),
            ("srv", ProcessSpec("fragile", "echo up; sleep 0.6; echo dying >&2; exit 4",
                                ready=parse_ready({"log": "^up", "timeout": 5}))),
        ])
        rows = {r["name"]: r for r in read_status(tmp_path)["processes"]}
        assert rows["web"]["state"] == "running" and rows["fragile"]["state"] == "running"
        await asyncio.sleep(1.2)  # the watcher sees 'fragile' die on its own
        assert [f.name for f in failures] == ["fragile"]
        assert "exited with code 4" in str(failures[0]) and "dying" in str(failures[0])
        assert [f.name for f in lab.failures()] == ["fragile"]
        rows = {r["name"]: r for r in read_status(tmp_path)["processes"]}
        assert rows["fragile"]["state"] == "failed" and rows["fragile"]["returncode"] == 4
        assert find_log(tmp_path, "srv.fragile").read_text() == "up\ndying\n"
        with pytest.raises(UsageError, match="srv.fragile, srv.web"):
            find_log(tmp_path, "srv")
        web = lab.procs[("srv", "web")]
        ident = [(p, pids.start_time(p)) for p in web.members()]
    finally:
        await lab.close()
        await ns.close()
    assert [p for p, st in ident if pids.is_same(p, st)] == []
    assert {r["state"] for r in read_status(tmp_path)["processes"]} == {"stopped", "failed"}


async def test_a_process_that_never_gets_ready_fails_the_start_with_its_log(tmp_path: Path) -> None:
    ns = await Namespace.create(unique())
    lab = LabProcesses(tmp_path)
    try:
        lab.view("r1", ns.name)
        with pytest.raises(ProcessError, match=r"(?s)r1.daemon: not ready within 0.3 s.*listening soon"):
            await lab.start("r1", ProcessSpec("daemon", "echo listening soon; sleep 60",
                                              ready=parse_ready({"udp": 5353, "timeout": "300ms"})))
        with pytest.raises(ProcessError, match=r"r1.oops: exited with code 2 right after it started"):
            await lab.start("r1", ProcessSpec("oops", ("sh", "-c", "exit 2")))
    finally:
        await lab.close()
        await ns.close()


def test_follow_writes_what_is_appended_until_the_lab_goes(tmp_path: Path) -> None:
    log = tmp_path / "n.p.log"
    log.write_bytes(b"one\n")
    got: list[bytes] = []
    alive = threading.Event()
    alive.set()
    t = threading.Thread(target=follow, args=(log, got.append), kwargs={"keep_going": alive.is_set,
                                                                        "poll": 0.01})
    t.start()
    with open(log, "ab") as f:
        f.write(b"two\n")
    for _ in range(200):
        if b"".join(got) == b"one\ntwo\n":
            break
        threading.Event().wait(0.01)
    alive.clear()
    t.join(5)
    assert not t.is_alive() and b"".join(got) == b"one\ntwo\n"
    assert os.path.exists(log)
