"""A lab across namespace-machines, driven in-process: build, steps, failures, down."""

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

from netvirt.errors import MachineError, ScenarioError
from netvirt.multi.down import down_multi
from netvirt.multi.driver import MultiLab
from netvirt.multi.machines import MultiScenario, load_text
from netvirt.multi.testing import ROOT, NsMachines
from tests.conftest import unique

pytestmark = pytest.mark.root

PAIR = """\
nodes:
  a: {machine: m1, interfaces: {eth0: {addresses: [10.0.0.1/24]}}}
  b: {machine: m2, interfaces: {eth0: {addresses: [10.0.0.2/24]}}}
links:
  - LINK
steps:
  - ping: {from: a, to: 10.0.0.2, count: 3}
  - connect: {from: a, to: "10.0.0.2:5000", proto: tcp, bytes: 100000}
  - connect: {from: b, to: "10.0.0.1:5000", proto: udp, bytes: 5000}
"""


def pair(h: NsMachines, lab: str, link: str = "[a:eth0, b:eth0]",
         machines: tuple[str, ...] = ("m1", "m2")) -> MultiScenario:
    text = f"name: {lab}\n" + h.machines_yaml(machines) + PAIR.replace("LINK", link)
    return load_text(text.replace("machine: m2", f"machine: {machines[1]}"), f"{lab}.yaml")


def driver(h: NsMachines, ms: MultiScenario) -> MultiLab:
    return MultiLab(ms, ssh_config=[str(h.ssh_config)], netns=h.driver_netns)


async def test_two_machines_ping_and_connect_across_then_nothing_left(ns_machines: NsMachines) -> None:
    lab = unique()
    async with driver(ns_machines, pair(ns_machines, lab)) as multi:
        assert {b["lab"] for b in multi.built.values()} == {f"{lab}-1", f"{lab}-2"}
        assert ns_machines.lab_traces(lab) == [
            f"nv-{lab}-1-a", f"nv-{lab}-2-b", f"/run/netvirt/{lab}", f"/run/netvirt/{lab}-1",
            f"/run/netvirt/{lab}-2"]
        vx = subprocess.run(["ip", "-n", f"nv-{lab}-1-a", "-d", "-j", "link", "show", "eth0"],
                            capture_output=True, text=True).stdout
        assert '"info_kind":"vxlan"' in vx and '"mtu":1450' in vx  # 1500 underlay - 50
        results = await multi.run_steps()
        assert [r.ok for r in results] == [True, True, True], results
    assert ns_machines.lab_traces(lab) == []


async def test_a_build_failing_on_the_second_machine_leaves_nothing_on_either(ns_machines: NsMachines) -> None:
    lab = unique()
    squatter = f"nv-{lab}-2-b"  # a namespace that is not the lab's, where m2's node must go
    subprocess.run(["ip", "netns", "add", squatter], check=True)
    try:
        with pytest.raises(MachineError) as ei:
            await driver(ns_machines, pair(ns_machines, lab)).build()
        assert ei.value.machine == "m2" and ei.value.exit_code == 3
        assert "exists already" in str(ei.value)
        assert ns_machines.lab_traces(lab) == [squatter], "m1's share must be gone, the squatter kept"
    finally:
        subprocess.run(["ip", "netns", "del", squatter], check=True)


async def test_an_unreachable_machine_is_exit_3_with_its_name(ns_machines: NsMachines) -> None:
    lab = unique()
    ms = pair(ns_machines, lab, machines=("m1", "m3"))  # m3 has no sshd
    with pytest.raises(MachineError) as ei:
        await driver(ns_machines, ms).build()
    assert ei.value.machine == "m3" and ei.value.exit_code == 3
    assert "cannot reach root@198.18.0.3 over SSH" in str(ei.value)
    assert ns_machines.lab_traces(lab) == []


async def test_an_mtu_that_cannot_fit_fails_before_anything_is_created(ns_machines: NsMachines) -> None:
    lab = unique()
    ms = pair(ns_machines, lab, link="{endpoints: [a:eth0, b:eth0], mtu: 1480}")
    multi = driver(ns_machines, ms)
    with pytest.raises(ScenarioError) as ei:
        await multi.build()  # the machines' underlay MTU (1500) is known only once asked
    (problem,) = ei.value.problems
    assert problem.path == "links[0]" and problem.line == 9
    assert "1480 of a:eth0 + 50 bytes of VXLAN over IPv4 = 1530 > underlay MTU 1500" in problem.message
    assert ns_machines.lab_traces(lab) == []


async def test_a_lost_connection_fails_the_run_and_the_machine_cleans_up(ns_machines: NsMachines) -> None:
    lab = unique()
    multi = driver(ns_machines, pair(ns_machines, lab))
    await multi.build()
    try:
        multi.remotes["m2"].abort()
        with pytest.raises(MachineError) as ei:
            await multi.run_steps()
        assert ei.value.machine == "m2" and "lost" in str(ei.value)
    finally:
        with pytest.raises(MachineError, match="netvirt down"):
            await multi.teardown()  # m1 confirms; m2 could not: the record stays for down
    deadline = time.monotonic() + 20
    while f"/run/netvirt/{lab}-2" in ns_machines.lab_traces(lab) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)  # m2's agent saw its channel end: it tears down by itself
    assert ns_machines.lab_traces(lab) == [f"/run/netvirt/{lab}"]
    await down_multi(lab, ssh_config=[str(ns_machines.ssh_config)], netns=ns_machines.driver_netns)
    assert ns_machines.lab_traces(lab) == []


DRIVER_SCRIPT = """
import asyncio, sys
from netvirt.multi.driver import MultiLab
from netvirt.multi.machines import load

async def main():
    lab = MultiLab(load(sys.argv[1]))
    await lab.build()
    print("built", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_sigkill_of_the_driver_then_down_cleans_both(ns_machines: NsMachines, tmp_path) -> None:
    lab = unique()
    path = tmp_path / f"{lab}.yaml"
    path.write_text(f"name: {lab}\n" + ns_machines.machines_yaml() + PAIR.replace("LINK", "[a:eth0, b:eth0]"))
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{ns_machines.driver_netns}", sys.executable, "-c",
                             DRIVER_SCRIPT, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=ROOT, env=ns_machines.env())
    try:
        line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
        assert line == b"built\n", proc.stderr.read()  # type: ignore[union-attr]
        assert len(ns_machines.lab_traces(lab)) == 5
        # the worst case: the agents die with the driver, so no machine cleans up by itself
        for k in (1, 2):
            agent = json.loads(Path(f"/run/netvirt/{lab}-{k}/lab.json").read_text())["pid"]
            os.kill(agent, signal.SIGKILL)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
    await asyncio.sleep(0.5)
    assert len(ns_machines.lab_traces(lab)) == 5, "both shares and the driver's record are left"
    done = await down_multi(lab, ssh_config=[str(ns_machines.ssh_config)], netns=ns_machines.driver_netns)
    assert set(done) == {"m1", "m2"}
    assert ns_machines.lab_traces(lab) == []


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_cancelled_while_the_shares_build_unwinds_every_machine(ns_machines: NsMachines) -> None:
    lab = unique()
    building = asyncio.Event()

    def progress(what: str) -> None:
        if what.startswith("building"):
            building.set()

    multi = MultiLab(pair(ns_machines, lab), ssh_config=[str(ns_machines.ssh_config)],
                     netns=ns_machines.driver_netns, progress=progress)
    task = asyncio.ensure_future(multi.build())
    await building.wait()
    task.cancel()  # as Ctrl-C does
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ns_machines.lab_traces(lab) == []


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_down_on_one_machine_alone_cleans_its_share(ns_machines: NsMachines) -> None:
    lab = unique()
    multi = driver(ns_machines, pair(ns_machines, lab))
    await multi.build()
    try:
        res = await asyncio.to_thread(subprocess.run, [
            "nsenter", f"--net=/run/netns/{ns_machines.driver_netns}", "ssh", "-F",
            str(ns_machines.ssh_config), "-o", "BatchMode=yes", "root@198.18.0.1",
            f"python3 -m netvirt down {lab}-1"], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert f"lab {lab}-1: down" in res.stdout
        traces = ns_machines.lab_traces(lab)
        assert f"nv-{lab}-1-a" not in traces and f"/run/netvirt/{lab}-1" not in traces
        assert f"nv-{lab}-2-b" in traces, "the other machine's share is not that down's business"
        with pytest.raises(MachineError) as ei:
            await multi.run_steps()
        assert ei.value.machine == "m1"
    finally:
        with pytest.raises(MachineError):
            await multi.teardown()
    await down_multi(lab, ssh_config=[str(ns_machines.ssh_config)], netns=ns_machines.driver_netns)
    assert ns_machines.lab_traces(lab) == []


@pytest.mark.parametrize(("command", "message"), [
    ("sh -c 'echo netvirt 0.0.9' --", "runs netvirt 0.0.9, this driver"),
    ("/nonexistent/netvirt", "'/nonexistent/netvirt' is not there"),
])
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_another_version_or_no_netvirt_on_a_machine_is_exit_3(ns_machines: NsMachines, command: str,
                                                                    message: str) -> None:
    lab = unique()
    ms = pair(ns_machines, lab)
    ms = ns_machines.adapt(ms)
    from dataclasses import replace

    m2 = replace(ms.layout.machines["m2"], command=command)
    ms = replace(ms, layout=replace(ms.layout, machines={**ms.layout.machines, "m2": m2}))
    with pytest.raises(MachineError) as ei:
        await driver(ns_machines, ms).build()
    assert ei.value.machine == "m2" and ei.value.exit_code == 3 and message in str(ei.value), str(ei.value)
    assert ns_machines.lab_traces(lab) == []


@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_two_labs_across_the_same_machines_side_by_side(ns_machines: NsMachines) -> None:
    one, two = unique(), unique()
    a, b = driver(ns_machines, pair(ns_machines, one)), driver(ns_machines, pair(ns_machines, two))
    assert a.plan.crossing[0].vni != b.plan.crossing[0].vni  # a VNI block per lab name
    await asyncio.gather(a.build(), b.build())
    try:
        ra, rb = await asyncio.gather(a.run_steps(), b.run_steps())
        assert all(r.ok for r in ra + rb), [r.detail for r in ra + rb if not r.ok]
    finally:
        await asyncio.gather(a.teardown(), b.teardown())
    assert ns_machines.lab_traces(one) == [] and ns_machines.lab_traces(two) == []


async def test_down_with_a_machine_out_of_reach_keeps_the_record_and_says_so(ns_machines: NsMachines,
                                                                            tmp_path: Path) -> None:
    lab = unique()
    (tmp_path / lab).mkdir()
    record = {"lab": lab, "pid": 0, "multi": {"machines": {"m3": {
        "ssh": "root@198.18.0.3", "command": "python3 -m netvirt", "share": f"{lab}-3",
        "underlay": "198.18.0.3", "nodes": ["a"]}}}}
    (tmp_path / lab / "lab.json").write_text(json.dumps(record))
    with pytest.raises(MachineError) as ei:
        await down_multi(lab, root=tmp_path, ssh_config=[str(ns_machines.ssh_config)],
                         netns=ns_machines.driver_netns)
    assert ei.value.machine == "m3" and "cannot reach root@198.18.0.3" in str(ei.value)
    assert "is kept: run 'netvirt down" in str(ei.value) and (tmp_path / lab / "lab.json").exists()
