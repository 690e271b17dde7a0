"""The live Topology: rollback at every build step, signals, down after kill -9, clashes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import netvirt
from netvirt.topology import load
from netvirt.topology.builder import Topology
from tests.conftest import unique
from tests.kernel.helpers import ROOT, SCENARIOS, assert_lab_gone, netns_of_lab
from tests.kernel.helpers import netvirt as cli

pytestmark = pytest.mark.root


class Boom(Exception):
    pass


def _count_steps(path: Path) -> int:
    steps: list[str] = []

    async def count() -> None:
        topo = Topology(load(path).with_name(unique()), step_hook=lambda k, what: steps.append(what))
        async with topo:
            pass

    asyncio.run(count())
    return len(steps)


@pytest.mark.parametrize("scenario", ["s2-vm-tap-bridge.yaml", "s4-udp-tunnel.yaml", "s6-macvtap.yaml",
                                      "s3c-openstack-chain.yaml"])
async def test_failure_at_every_build_step_leaves_nothing(scenario: str) -> None:
    base = load(SCENARIOS / scenario)
    total = []
    lab = unique()
    async with Topology(base.with_name(lab), step_hook=lambda k, w: total.append(w)):
        pass
    assert len(total) >= 4
    for k in range(1, len(total) + 1):
        lab = unique()

        def hook(step: int, what: str, k: int = k) -> None:
            if step == k:
                raise Boom(f"injected at step {k}: {what}")

        with pytest.raises(Boom):
            async with Topology(base.with_name(lab), step_hook=hook):
                pass
        assert_lab_gone(lab)


@pytest.mark.parametrize("k", [1, 2, 4])
async def test_a_kernel_failure_inside_the_bulk_links_leaves_nothing(monkeypatch: pytest.MonkeyPatch,
                                                                     k: int) -> None:
    """The bulk path (topology/bulk.py) creates the links of a star on one worker: a
    failure at its k-th pair (after the pair is made, before its peer end is finished)
    must unwind the whole lab."""
    from netvirt.devices.veth import Veth

    calls = []
    real = Veth.add_here

    def failing(self: Veth, nl: object) -> int:
        index = real(self, nl)  # type: ignore[arg-type]
        calls.append(self.name)
        if len(calls) == k:
            raise Boom(f"injected after pair {k}")
        return index

    monkeypatch.setattr(Veth, "add_here", failing)
    lab = unique()
    with pytest.raises(Boom):
        async with Topology(load(SCENARIOS / "s3b_star.py", {"n": "5"}).with_name(lab)):
            pass
    assert len(calls) == k
    assert_lab_gone(lab)


async def test_veth_ends_get_an_ipv6_link_local_only_with_ipv6_or_when_asked(tmp_path: Path) -> None:
    """An IPv4-only end stays quiet (no DAD, MLD or RS at link-up: a bridge floods them to
    every port); an end with an IPv6 address, or ipv6_linklocal: true, gets fe80::/64."""
    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(textwrap.dedent(f"""\
        name: {lab}
        nodes:
          a: {{interfaces: {{eth0: {{addresses: [10.0.0.1/24]}}, eth1: {{addresses: ["fd00::1/64"]}},
                            eth2: {{ipv6_linklocal: true}}}}}}
          b: {{interfaces: {{eth0: {{addresses: [10.0.0.2/24]}}, eth1: {{addresses: ["fd00::2/64"]}},
                            eth2: {{ipv6_linklocal: false}}}}}}
        links: [[a:eth0, b:eth0], [a:eth1, b:eth1], [a:eth2, b:eth2]]
        """))
    async with Topology(load(f)) as topo:
        def linklocal(node: str) -> set[str]:
            out = subprocess.run(["ip", "-n", topo.node(node).ns.name, "-6", "-o", "addr", "show",
                                  "scope", "link"], capture_output=True, text=True, check=True).stdout
            return {line.split()[1] for line in out.splitlines()}

        for _ in range(100):  # the kernel adds it at link-up, asynchronously to nothing here
            if linklocal("a") >= {"eth1", "eth2"} and "eth1" in linklocal("b"):
                break
            await asyncio.sleep(0.02)
        assert linklocal("a") == {"eth1", "eth2"}
        assert linklocal("b") == {"eth1"}
    assert_lab_gone(lab)


async def test_lab_bridges_snoop_multicast_only_when_asked(tmp_path: Path) -> None:
    """No querier in a lab: snooped groups would expire after 260 s; off unless asked."""
    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(f"name: {lab}\nnodes:\n  sw: {{interfaces: {{br0: {{kind: bridge}}, "
                 f"br1: {{kind: bridge, multicast_snooping: true}}}}}}\n")
    async with Topology(load(f)) as topo:
        def snooping(br: str) -> str:
            out = subprocess.run(["ip", "-n", topo.node("sw").ns.name, "-d", "link", "show", br],
                                 capture_output=True, text=True, check=True).stdout
            return out.split("mcast_snooping ")[1].split()[0]

        assert snooping("br0") == "0"
        assert snooping("br1") == "1"
    assert_lab_gone(lab)


MIXED = """\
name: {lab}
nodes:
  r1:
    sysctls: {{net.ipv4.ip_forward: 1}}
    interfaces:
      eth0: {{addresses: [10.1.0.1/24]}}
      eth1: {{addresses: [10.2.0.1/24]}}
      eth2: {{addresses: [10.3.0.1/24]}}
  a: {{interfaces: {{eth0: {{addresses: [10.1.0.2/24]}}, eth1: {{addresses: [10.9.0.1/24]}}}},
      routes: [{{to: default, via: 10.1.0.1}}]}}
  b: {{interfaces: {{eth0: {{addresses: [10.2.0.2/24]}}}}, routes: [{{to: default, via: 10.2.0.1}}]}}
  c: {{interfaces: {{eth0: {{addresses: [10.9.0.2/24]}}}}}}
  d: {{interfaces: {{eth0: {{addresses: [10.3.0.2/24]}}}}, routes: [{{to: default, via: 10.3.0.1}}]}}
links:
  - [a:eth0, r1:eth0]
  - [r1:eth1, b:eth0]
  - [a:eth1, c:eth0]
  - {{endpoints: [d:eth0, r1:eth2], impair: {{delay: 5ms}}}}
"""


async def test_the_bulk_path_mixes_with_local_work_leaf_links_and_served_links(tmp_path: Path) -> None:
    """A node with local work (sysctls) is created first, the others while their plain links
    are made (a leaf-to-leaf link among them), a served link after; every route works, and
    a failure at any build step leaves nothing."""
    from netvirt.topology.probes import ping

    f = tmp_path / "mixed.yaml"
    lab = unique()
    f.write_text(MIXED.format(lab=lab))
    steps: list[str] = []
    async with Topology(load(f), step_hook=lambda k, w: steps.append(w)) as topo:
        for src, dst in (("a", "10.2.0.2"), ("b", "10.1.0.2"), ("c", "10.9.0.1"), ("d", "10.1.0.2")):
            got, rtts = await ping(topo, src, dst, count=2)
            assert got == 2, (src, dst)
        assert min(rtts) >= 0.0095  # d's link is the datapath's, 5 ms each way
    assert_lab_gone(lab)
    for k in range(1, len(steps) + 1):
        lab = unique()
        f.write_text(MIXED.format(lab=lab))

        def hook(step: int, what: str, k: int = k) -> None:
            if step == k:
                raise Boom(f"injected at step {k}: {what}")

        with pytest.raises(Boom):
            async with Topology(load(f), step_hook=hook):
                pass
        assert_lab_gone(lab)


async def test_exception_in_test_body_tears_down() -> None:
    lab = unique()
    with pytest.raises(RuntimeError):
        async with Topology(load(SCENARIOS / "s3a-veth-pair.yaml").with_name(lab)):
            assert netns_of_lab(lab) == [f"nv-{lab}-a", f"nv-{lab}-b"]
            raise RuntimeError("test failed")
    assert_lab_gone(lab)


async def test_cancellation_during_build_leaves_nothing() -> None:
    lab = unique()
    scenario = load(SCENARIOS / "s3b_star.py", {"n": "30"}).with_name(lab)
    seen = asyncio.Event()

    def hook(step: int, what: str) -> None:
        if step == 20:
            seen.set()

    task = asyncio.ensure_future(Topology(scenario, step_hook=hook).build())
    await seen.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_lab_gone(lab)


async def test_two_labs_side_by_side_and_api() -> None:
    s = netvirt.load(SCENARIOS / "s1a-tun-sink.yaml")
    l1, l2 = unique(), unique()
    async with netvirt.Topology(s.with_name(l1)) as t1, netvirt.Topology(s.with_name(l2)) as t2:
        assert netns_of_lab(l1) and netns_of_lab(l2)
        n, _ = await netvirt.ping(t1, "host", "192.168.3.12", count=2, timeout=0.3)
        assert n == 0
        await asyncio.sleep(0.05)
        assert t1.program("host", "tun1").counters["rx_icmp"] == 2
        assert t2.program("host", "tun1").counters["rx_icmp"] == 0
        res = await t2.node("host").exec("ip -o addr show tun1")
        assert "192.168.3.11/24" in res.stdout
    assert_lab_gone(l1)
    assert_lab_gone(l2)


async def test_device_io_through_the_api(tmp_path: Path) -> None:
    """A test author drives packets through a tun with await (no program on it)."""
    from netvirt import packets

    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(f"name: {lab}\nnodes:\n  n:\n    interfaces:\n"
                 "      tun0: {kind: tun, addresses: [10.7.0.1/24]}\n")
    async with netvirt.Topology(netvirt.load(f)) as topo:
        tun = topo.device("n", "tun0")
        pinger = asyncio.ensure_future(netvirt.ping(topo, "n", "10.7.0.9", count=1, timeout=2))
        request = await asyncio.wait_for(tun.read(), 2)
        assert packets.parse_echo(request) is not None
        await tun.write(packets.echo_reply_ip(request))
        replies, _ = await pinger
        assert replies == 1
    assert_lab_gone(lab)


def test_clashing_namespace_is_not_touched(tmp_path: Path) -> None:
    lab = unique()
    victim = f"nv-{lab}-b"
    subprocess.run(["ip", "netns", "add", victim], check=True)
    try:
        res = cli("run", "scenarios/s3a-veth-pair.yaml", "--name", lab)
        assert res.returncode == 3, res.stdout + res.stderr
        assert victim in res.stderr and "exists already" in res.stderr
        assert os.path.exists(f"/run/netns/{victim}")
        assert netns_of_lab(lab) == [victim]
        assert not Path(f"/run/netvirt/{lab}").exists()
    finally:
        subprocess.run(["ip", "netns", "del", victim], check=True)


def test_clashing_host_interface_is_not_touched(tmp_path: Path) -> None:
    lab = unique()
    a, b = f"{lab}a", f"{lab}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    try:
        f = tmp_path / "s.yaml"
        f.write_text(textwrap.dedent(f"""
            name: {lab}
            nodes:
              me: {{host: true, interfaces: {{{a}: {{kind: tun}}}}}}
        """))
        res = cli("run", str(f))
        assert res.returncode == 3, res.stdout + res.stderr
        assert a in res.stderr
        out = subprocess.run(["ip", "-o", "link", "show", a], capture_output=True, text=True)
        assert out.returncode == 0 and "netvirt" not in out.stdout
    finally:
        subprocess.run(["ip", "link", "del", a], check=True)
    assert_lab_gone(lab)


def test_lab_name_in_use_exits_3() -> None:
    lab = unique()
    proc = subprocess.Popen([sys.executable, "-m", "netvirt", "up", "scenarios/s3a-veth-pair.yaml",
                             "--name", lab], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_ready(lab)
        res = cli("run", "scenarios/s3a-veth-pair.yaml", "--name", lab)
        assert res.returncode == 3 and "already running" in res.stderr
        st = cli("status", lab, "--json")
        assert st.returncode == 0 and '"veth0"' in st.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert_lab_gone(lab)


def _wait_ready(lab: str, timeout: float = 20) -> None:
    from netvirt.topology.journal import read_info

    deadline = time.monotonic() + timeout
    while not read_info(lab).get("ready"):
        assert time.monotonic() < deadline, "lab never became ready"
        time.sleep(0.05)


def test_sigint_during_build_exits_130_and_leaves_nothing() -> None:
    lab = unique()
    proc = subprocess.Popen([sys.executable, "-m", "netvirt", "run", "scenarios/s3b_star.py",
                             "--param", "n=150", "--name", lab], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(netns_of_lab(lab)) < 20:  # mid-build
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.002)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    assert_lab_gone(lab)


def test_sigkill_then_down_removes_everything(tmp_path: Path) -> None:
    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(textwrap.dedent(f"""
        name: {lab}
        nodes:
          me: {{host: true}}
          n1: {{interfaces: {{eth0: {{addresses: [10.8.0.2/24]}}}}}}
          n2: {{interfaces: {{br0: {{kind: bridge}}, tap0: {{kind: tap, master: br0}}}}}}
        links: [[me:{lab}h, n1:eth0]]
    """))
    proc = subprocess.Popen([sys.executable, "-m", "netvirt", "up", str(f)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_ready(lab)
    proc.kill()
    proc.wait()
    assert len(netns_of_lab(lab)) == 2
    assert subprocess.run(["ip", "link", "show", f"{lab}h"], capture_output=True).returncode == 0
    res = cli("down", lab)
    assert res.returncode == 0, res.stderr
    assert "removed 2 namespaces" in res.stdout
    assert_lab_gone(lab)
    assert cli("down", lab).returncode == 3  # nothing left to take down


def test_up_detach_then_down() -> None:
    lab = unique()
    res = cli("up", "scenarios/s1a-tun-sink.yaml", "--name", lab, "--detach")
    assert res.returncode == 0, res.stderr
    assert netns_of_lab(lab) == [f"nv-{lab}-host"]
    ex = cli("exec", lab, "host", "--", "ip", "-o", "link", "show", "tun1")
    assert ex.returncode == 0 and "tun1" in ex.stdout
    res = cli("down", lab)
    assert res.returncode == 0 and "stopped its process" in res.stdout
    assert_lab_gone(lab)
