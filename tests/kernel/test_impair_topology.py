"""Impaired links in a live lab: the builder, ``topo.link()``, steps, ``netvirt link`` against a
detached lab, ``status``, and SIGKILL + ``down`` leaving nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import time
from pathlib import Path

import pytest

from netvirt.devices import Tap
from netvirt.errors import UsageError
from netvirt.scenario import load_text
from netvirt.topology import Topology, run_steps
from tests.conftest import unique
from tests.kernel.helpers import assert_lab_gone, netvirt

pytestmark = pytest.mark.root

LAB = """\
name: imptopo
nodes:
  a:
    interfaces:
      eth0: {addresses: [10.240.0.1/24]}
      eth1: {addresses: [10.240.1.1/24]}
  b: {interfaces: {eth0: {addresses: [10.240.0.2/24]}}}
  c: {interfaces: {eth0: {addresses: [10.240.1.2/24]}}}
links:
  - endpoints: [a:eth0, b:eth0]
    impair: {a:eth0: {delay: 15ms}}
  - [a:eth1, c:eth0]
steps:
  - ping: {from: a, to: 10.240.0.2, count: 3, rtt: {min: "15ms..17ms"}}
  - impair: {endpoint: b:eth0, delay: 10ms}
  - ping: {from: a, to: 10.240.0.2, count: 3, rtt: {min: "25ms..27ms"}}
  - link: {endpoint: a:eth0, state: down}
  - ping: {from: a, to: 10.240.0.2, count: 2, expect: failure}
  - link: {endpoint: a:eth0, state: up}
  - ping: {from: a, to: 10.240.0.2, count: 2, retry: {for: 5s, every: 0.2s}}
  - throughput: {from: a, to: "10.240.0.2:5301", proto: tcp, seconds: 1, expect: ">= 100mbit"}
"""


async def test_a_lab_with_an_impaired_link() -> None:
    lab = unique()
    async with Topology(load_text(LAB).with_name(lab)) as topo:
        tap = topo.device("a", "eth0")
        assert isinstance(tap, Tap)  # the link's ends are taps, named as the veth ends
        results = await run_steps(topo)
        assert all(r.ok for r in results), [(r.title, r.detail) for r in results if not r.ok]
        end = topo.link("a:eth0")
        await end.impair(loss="100%")
        st = end.stats()
        assert st["conditions"] == {"loss": "100%"} and st["backend"] == "userspace (tap pair)"
        await end.reset(both=True)
        assert topo.link("b:eth0").conditions is None
        with pytest.raises(UsageError, match="plain veth"):
            topo.link("a:eth1")
        with pytest.raises(UsageError, match="not an end"):
            topo.link("b:eth7")
        pid = end.link.stats()["pid"]
        assert Path(f"/proc/{pid}").exists()
    assert not Path(f"/proc/{pid}").exists()
    assert_lab_gone(lab)


def test_netvirt_link_against_a_detached_lab(tmp_path: Path) -> None:
    f = tmp_path / "lab.yaml"
    f.write_text(textwrap.dedent(LAB))
    lab = unique()
    up = netvirt("up", str(f), "--name", lab, "--detach", check=True)
    assert "is up" in up.stdout
    try:
        shown = netvirt("link", lab, "a:eth0", "show", "--json", check=True)
        assert json.loads(shown.stdout)["directions"]["a:eth0"]["conditions"] == {"delay": "15ms"}
        netvirt("link", lab, "a:eth0", "set", "--delay", "30ms", "--loss", "0%", "--both", check=True)
        ping = netvirt("exec", lab, "a", "--", "ping", "-c", "2", "-i", "0.2", "10.240.0.2", check=True)
        rtts = [float(x.split("time=")[1].split()[0]) for x in ping.stdout.splitlines() if "time=" in x]
        assert rtts and min(rtts) >= 60.0  # 30 ms each way, set from another process
        netvirt("link", lab, "a:eth0", "down", check=True)
        assert netvirt("exec", lab, "a", "--", "ping", "-c", "1", "-W", "1", "10.240.0.2").returncode != 0
        netvirt("link", lab, "a:eth0", "up", check=True)
        bad = netvirt("link", lab, "a:eth1", "show")
        assert bad.returncode == 2 and "plain veth" in bad.stderr
        time.sleep(1.2)  # the owner publishes link counters every second
        status = json.loads(netvirt("status", lab, "--json", check=True).stdout)
        links = status[0]["links"]
        assert list(links) == ["a:eth0--b:eth0"]
        assert links["a:eth0--b:eth0"]["directions"]["b:eth0"]["conditions"]["delay"] == "30ms"
        assert "link a:eth0--b:eth0" in netvirt("status", lab, check=True).stdout
        # SIGKILL the lab's process: its datapath goes with it; down removes the rest
        info = json.loads(Path(f"/run/netvirt/{lab}/lab.json").read_text())
        worker = links["a:eth0--b:eth0"]["pid"]
        os.kill(info["pid"], signal.SIGKILL)
        for _ in range(100):
            if not Path(f"/proc/{worker}").exists():
                break
            time.sleep(0.05)
        assert not Path(f"/proc/{worker}").exists()
    finally:
        netvirt("down", lab)
    assert_lab_gone(lab)
    gone = netvirt("link", lab, "a:eth0", "show")
    assert gone.returncode == 3 and "no process serves" in gone.stderr


def _my_workers() -> list[int]:
    """Datapath processes that are children of this test process."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == os.getpid() and b"netvirt.impair._worker" in cmd:
            out.append(int(pid))
    return out


async def test_a_failed_build_with_impaired_links_leaves_nothing() -> None:
    lab = unique()
    topo = Topology(load_text(LAB).with_name(lab))

    def hook(n: int, what: str) -> None:
        if what.startswith("route") or what.startswith("link a:eth1"):
            raise RuntimeError("boom")

    topo._hook = hook
    with pytest.raises(RuntimeError, match="boom"):
        await topo.build()
    for _ in range(40):
        if not _my_workers():
            break
        await asyncio.sleep(0.05)
    assert _my_workers() == []
    assert_lab_gone(lab)
