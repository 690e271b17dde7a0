"""``udp-tunnel`` on real tuns: the fast path is the default and the wire is standard.

S4 as a user writes it (no ``offload`` key): TCP bulk crosses, the program
switched its tun's offload on by itself (super-packets far above the MTU are
read, segments are merged back on the far side), and neither underlay
namespace fragmented or reassembled a single IP packet (``/proc/net/snmp``'s
FragCreates and ReasmReqds, what ``nstat`` shows as IpFragCreates /
IpReasmReqds). With the shipped tun MTU of 1500 on a 1500 underlay, TCP is
cut to fit instead of fragmented. A plain peer (``offload: false``: one
packet per read and write, 0.1.0's plain mode) interoperates. On taps the
tunnel carries Ethernet frames. Also the benchmark's smoke run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

import netvirt
from tests.conftest import unique
from tests.kernel.helpers import ROOT, SCENARIOS

pytestmark = pytest.mark.root


def s4_yaml(lab: str, *, mtu: int | None = 1400, right_offload: str = "", tcp_bytes: int = 5_000_000,
            kind: str = "tun") -> str:
    def node(n: int, extra: str) -> str:
        mtu_line = f"        mtu: {mtu}\n" if mtu else ""
        return (f"    interfaces:\n"
                f"      tun0:\n        kind: {kind}\n{mtu_line}"
                f"        addresses: [192.168.1.1{n}/24]\n"
                f"        program: {{name: udp-tunnel, local: '172.16.1.1{n}:6000', "
                f"remote: '172.16.1.1{3 - n}:6000'{extra}}}\n"
                f"      eth0: {{addresses: [172.16.1.1{n}/24]}}\n")
    return (f"name: {lab}\nnodes:\n  left:\n{node(1, '')}"
            f"  right:\n{node(2, right_offload)}"
            "links:\n  - [left:eth0, right:eth0]\n"
            "steps:\n  - ping: {from: left, to: 192.168.1.12, count: 2}\n"
            f"  - connect: {{from: left, to: '192.168.1.12:5000', proto: tcp, "
            f"bytes: {tcp_bytes}}}\n"
            f"  - connect: {{from: right, to: '192.168.1.11:5000', proto: tcp, "
            f"bytes: {tcp_bytes // 5}}}\n"
            "  - connect: {from: right, to: '192.168.1.11:5000', proto: udp, bytes: 3000}\n")


async def fragment_counters(topo: Any, node: str) -> dict[str, int]:
    """Ip: FragCreates, FragOKs, ReasmReqds of a node's namespace (/proc/net/snmp)."""
    res = await topo.node(node).exec("cat /proc/net/snmp")
    lines = [line.split() for line in res.stdout.splitlines() if line.startswith("Ip:")]
    values = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return {k: values[k] for k in ("FragCreates", "FragOKs", "ReasmReqds")}


async def run_and_count(text: str) -> tuple[dict[str, int], dict[str, int], dict[str, dict[str, int]],
                                            list[Any]]:
    scenario = netvirt.load_text(text, "<s4>")
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        left = topo.program("left", "tun0")
        right = topo.program("right", "tun0")
        frags = {n: await fragment_counters(topo, n) for n in ("left", "right")}
        flags = [left.offload_flags, right.offload_flags]
        assert left.error is None and right.error is None
        return dict(left.counters), dict(right.counters), frags, flags


async def test_default_settings_use_offload_and_never_fragment() -> None:
    left, right, frags, flags = await run_and_count(s4_yaml(unique()))
    assert flags[0] and flags[1], "the tunnel did not switch its tun's offload on"
    for c in (left, right):
        assert c["max_len"] > 1400, c  # super-packets were read from the tun
        assert c["gso_tx"] > 0 and c["gso_rx"] > 0, c  # cut into segments, merged back
        assert c["malformed"] == c["rx_foreign"] == c["too_big"] == 0, c
    assert left["tun_rx"] < 5_000_000 // 1400  # far fewer reads than MTU-sized packets
    assert frags == {n: {"FragCreates": 0, "FragOKs": 0, "ReasmReqds": 0} for n in frags}, frags


async def test_shipped_s4_cuts_tcp_to_fit_a_1500_underlay() -> None:
    text = (SCENARIOS / "s4-udp-tunnel.yaml").read_text()  # tun MTU 1500 on a 1500 veth
    scenario = netvirt.load_text(text, "<s4>").with_name(unique())
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        left = topo.program("left", "tun0").counters
        frags = await fragment_counters(topo, "left")
    assert left["segmented"] > 0 and left["too_big"] == 0, left
    assert frags["FragCreates"] == 0, frags


async def test_plain_peer_interoperates() -> None:
    left, right, frags, flags = await run_and_count(
        s4_yaml(unique(), right_offload=", offload: false"))
    assert flags[0] and not flags[1]
    assert right["max_len"] <= 1400 and right["gso_rx"] == 0  # one packet per read and write
    assert left["gso_tx"] > 0 and left["malformed"] == right["malformed"] == 0
    assert frags["left"]["FragCreates"] == frags["right"]["FragCreates"] == 0


async def test_udp_tunnel_on_taps_carries_frames() -> None:
    text = s4_yaml(unique(), kind="tap", tcp_bytes=500_000)
    left, right, _frags, flags = await run_and_count(text)
    assert flags == [0, 0]  # a tap is not switched to offload
    assert left["udp_tx"] > 0 and right["tun_tx"] > 0 and right["malformed"] == 0


def test_benchmark_smoke() -> None:
    if shutil.which("iperf3") is None:
        pytest.fail("iperf3 is not installed (.ci/run installs it)")
    lab = unique()
    res = subprocess.run([sys.executable, "-m", "benchmarks.tunnel", "--smoke", "--json",
                          "--prefix", lab], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["benchmark"] == "tunnel" and report["failures"] == []
    results = {r["name"]: r for r in report["results"]}
    assert results["netvirt-tcp"]["median"] > 0 and results["netvirt-udp64-received"]["median"] > 0
    assert all(v == 0 for v in report["fragments"].values()), report["fragments"]
    if shutil.which("openvpn") is None:
        assert "openvpn" not in report["tunnels"] and "skipped" in res.stderr
    ends = report["counters"]["netvirt"]
    assert max(c["max_len"] for c in ends) > 1400  # offload on by default: super-packets read


async def test_ipip_with_offload_segments_in_python() -> None:
    # IP-in-IP's wire is standard too: super-packets leave as MTU-sized packets
    text = (SCENARIOS / "s4-ipip-tunnel.yaml").read_text()
    text = text.replace("kind: tun\n", "kind: tun\n        offload: true\n")
    text = text.replace("bytes: 100000", "bytes: 3000000")
    scenario = netvirt.load_text(text, "<s4-ipip-offload>").with_name(unique())
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        a = topo.program("a", "tun0").counters
        b = topo.program("b", "tun0").counters
    for c in (a, b):
        assert c["max_len"] > 1500 and c["segmented"] > 0, c
        assert c["malformed"] == c["rx_foreign"] == 0, c
