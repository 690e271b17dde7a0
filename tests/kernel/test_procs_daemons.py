"""Real daemons (Debian's FRR) and the owner's death: what ``down`` finds from the journal alone."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netvirt.devices import Veth
from netvirt.netns import Namespace
from netvirt.procs import NodeView, Process, cgroup, parse_ready, pids, run_command, stop_journaled, wait_ready
from tests.conftest import unique
from tests.kernel.helpers import ROOT

pytestmark = pytest.mark.root

DAEMONS = (b'zebra=yes\nospfd=yes\nvtysh_enable=yes\n'
           b'zebra_options="-A 127.0.0.1"\nospfd_options="-A 127.0.0.1"\n')


def _frr_conf(n: int) -> bytes:
    return (f"frr defaults traditional\nhostname r{n}\nservice integrated-vtysh-config\n"
            f"interface eth0\n ip ospf network point-to-point\n ip ospf hello-interval 1\n"
            f" ip ospf dead-interval 3\nexit\n"
            f"router ospf\n ospf router-id 10.255.0.{n}\n network 10.0.0.0/8 area 0\nexit\n").encode()


async def test_two_frr_instances_in_two_nodes_do_not_collide_and_peer(tmp_path: Path) -> None:
    a, b = await Namespace.create(unique()), await Namespace.create(unique())
    procs: list[Process] = []
    views: list[NodeView] = []
    try:
        veth = Veth("eth0", "eth0", netns=a, peer_netns=b, addresses=["10.1.0.1/30"],
                    peer_addresses=["10.1.0.2/30"])
        await veth.create()
        for n, ns in ((1, a), (2, b)):
            await ns.sysctl("net.ipv4.ip_forward", 1)
            view = NodeView(ns.name, tmp_path / f"r{n}", private=("/var/run/frr",))
            view.prepare({"frr/daemons": DAEMONS, "frr/frr.conf": _frr_conf(n)})
            views.append(view)
            proc = await Process.start(view, ["/usr/lib/frr/frrinit.sh", "start"], name=f"r{n}.frr",
                                       log=tmp_path / f"r{n}.log")
            procs.append(proc)
        for proc in procs:
            await wait_ready(proc, parse_ready({"exec": "vtysh -c 'show version'", "timeout": 30}))
            # frrinit.sh exited, the daemons it started run
            assert await asyncio.wait_for(proc.wait(), 30) == 0 and proc.alive
            names = {Path(f"/proc/{p}/comm").read_text().strip() for p in proc.members()}
            assert {"watchfrr", "zebra", "ospfd"} <= names
        # each instance has its own sockets and pid files, in its own private /var/run/frr
        for view in views:
            files = set(os.listdir(view.private_source(0, "/var/run/frr")))
            assert {"zebra.pid", "ospfd.pid", "zserv.api"} <= files
        ids = [(await run_command(v, ["vtysh", "-c", "show ip ospf"], timeout=10)).stdout for v in views]
        assert "10.255.0.1" in ids[0] and "10.255.0.2" in ids[1]
        deadline = time.monotonic() + 20
        while True:  # they talk: the adjacency reaches Full
            out = (await run_command(views[0], ["vtysh", "-c", "show ip ospf neighbor"], timeout=10)).stdout
            if "Full" in out or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert "10.255.0.2" in out and "Full" in out, out
        everything = [(p, pids.start_time(p)) for proc in procs for p in proc.members()]
        for proc in procs:
            await proc.stop()
        assert [p for p, st in everything if pids.is_same(p, st)] == []
        for view in views:
            await view.close()
        assert pids.in_netns(os.stat(f"/run/netns/{a.name}").st_ino) == []
    finally:
        for proc in procs:
            await proc.kill()
        for view in views:
            await view.close()
        await a.close()
        await b.close()


OWNER = """
import asyncio, json, sys
from pathlib import Path
from netvirt.netns import Namespace
from netvirt.procs import NodeView, Process, open_lab_cgroup

async def main():
    journal = open(sys.argv[1], "a", buffering=1)
    def record(**e):
        journal.write(json.dumps(e) + "\\n")
    group = open_lab_cgroup(sys.argv[2], record)
    ns = await Namespace.borrow(sys.argv[3])
    view = NodeView(ns.name, cgroup_parent=group)
    await Process.start(view, ["sleep", "350"], name="n.sleeper", journal=record)
    await Process.start(view, ["sh", "-c", "setsid sleep 351 & setsid sleep 352 & exit 0"], name="n.forker",
                        journal=record)
    print("started", flush=True)
    await asyncio.sleep(300)

asyncio.run(main())
"""


async def test_sigkill_of_the_owner_then_the_journal_stops_everything(tmp_path: Path) -> None:
    lab = unique()
    ns = await Namespace.create(unique())
    journal = tmp_path / "journal.jsonl"
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(journal), lab, ns.name], cwd=ROOT,
                             stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    bystander = subprocess.Popen(["sleep", "353"])  # not the lab's: must survive
    try:
        assert owner.stdout is not None
        assert owner.stdout.readline() == b"started\n"
        ino = os.stat(f"/run/netns/{ns.name}").st_ino
        deadline = time.monotonic() + 10
        while len(pids.in_netns(ino)) != 3 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)  # the forker's sh exits once both daemons run
        inside = [(p, pids.start_time(p)) for p in pids.in_netns(ino)]
        assert len(inside) == 3  # sleeper + two setsid daemons
        owner.send_signal(signal.SIGKILL)
        owner.wait()
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        # a record whose pid is now someone else's (same number, other start time) is never signalled
        entries.append({"op": "proc", "name": "n.old", "cgroup": None})
        entries.append({"op": "proc-pid", "name": "n.old", "pid": bystander.pid,
                        "start": (pids.start_time(bystander.pid) or 0) - 7, "pgid": bystander.pid})
        report = stop_journaled(entries, timeout=2)
        assert report.left == []
        assert [p for p, st in inside if pids.is_same(p, st)] == []
        assert pids.in_netns(ino) == []
        assert bystander.poll() is None, "a process with a reused pid was signalled"
        lab_group = cgroup.root() / lab if cgroup.root() else None
        assert lab_group is None or not lab_group.exists()
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        bystander.kill()
        bystander.wait()
        leftover = cgroup.root() / lab if cgroup.root() else None
        if leftover is not None and leftover.exists():
            stop_journaled([{"op": "cgroup", "path": str(leftover)}], timeout=0.5)
        await ns.close()
