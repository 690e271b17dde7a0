"""UDP tunnel with TUN offload: GSO super-packets, UDP GSO/GRO, the benchmark's smoke run.

Pure tests (no root): the GSO helpers of ``netvirt.gso`` against
scapy, and ``UdpTunnel`` between fake devices over loopback UDP. Real-kernel
tests (root): S4 with ``offload`` on both tuns and on one only, TCP bulk
through the tunnel, and ``python -m benchmarks.tunnel --smoke``.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

import netvirt
from netvirt import gso as G
from netvirt import packets as P
from netvirt.programs import UdpTunnel
from tests.conftest import unique
from tests.kernel.helpers import ROOT
from tests.unit.test_programs import FakeDevice, context, free_udp_port, running, until

PAYLOAD = bytes(range(256)) * 40  # 10240 bytes


def vnet(gso_type: int, gso_size: int, flags: int = 1, start: int = 0, offset: int = 0) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, 0, gso_size, start, offset)


def tcp_super(version: int = 4, flags: str = "PA", payload: bytes = PAYLOAD,
              seq: int = 1000) -> bytes:
    l3: Any = (IP(src="10.0.0.1", dst="10.0.0.2", id=7) if version == 4
               else IPv6(src="fd00::1", dst="fd00::2"))
    return bytes(l3 / TCP(sport=40000, dport=5001, seq=seq, flags=flags) / payload)


def reparsed_ok(segment: bytes) -> bool:
    """True if every checksum in ``segment`` is right (scapy recomputes them)."""
    cls: Any = IP if segment[0] >> 4 == 4 else IPv6
    pkt = cls(segment)
    if cls is IP:
        del pkt.chksum
    del pkt.payload.chksum
    return bytes(cls(bytes(pkt))) == segment


# -- gso_segment -------------------------------------------------------------------------
@pytest.mark.parametrize("version,gso_type", [(4, G.VNET_GSO_TCPV4), (6, G.VNET_GSO_TCPV6)])
def test_gso_segment_tcp(version: int, gso_type: int) -> None:
    segs = G.gso_segment(vnet(gso_type, 1360) + tcp_super(version, "FPA", seq=2**32 - 100))
    assert segs is not None and len(segs) == 8
    cls: Any = IP if version == 4 else IPv6
    parsed = [cls(s) for s in segs]
    assert b"".join(bytes(p[TCP].payload) for p in parsed) == PAYLOAD
    assert [p[TCP].seq for p in parsed] == [(2**32 - 100 + i * 1360) % 2**32 for i in range(8)]
    assert [str(p[TCP].flags) for p in parsed] == ["A"] * 7 + ["FPA"]
    assert all(reparsed_ok(s) for s in segs)
    assert all(len(s) <= 1360 + 40 + (20 if version == 6 else 0) for s in segs)
    if version == 4:
        assert [p[IP].id for p in parsed] == list(range(7, 15))


def test_gso_segment_ecn_udp_and_plain() -> None:
    segs = G.gso_segment(vnet(G.VNET_GSO_TCPV4 | G.VNET_GSO_ECN, 4000)
                         + tcp_super(flags="CA"))
    assert segs is not None
    assert [str(IP(s)[TCP].flags) for s in segs] == ["AC", "A", "A"]  # CWR on the first only
    udp = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=1, dport=2) / PAYLOAD)
    segs = G.gso_segment(vnet(G.VNET_GSO_UDP_L4, 1000) + udp)
    assert segs is not None and len(segs) == 11 and all(reparsed_ok(s) for s in segs)
    assert b"".join(bytes(IP(s)[UDP].payload) for s in segs) == PAYLOAD
    plain = G.gso_segment(P.VNET_ZERO_HDR + udp)
    assert plain == [udp]


@pytest.mark.parametrize("packet", [
    vnet(G.VNET_GSO_TCPV4, 1000) + tcp_super()[:30],  # truncated
    vnet(G.VNET_GSO_TCPV4, 0) + tcp_super(),  # no segment size
    vnet(G.VNET_GSO_UDP, 1000) + tcp_super(),  # UFO: not segmented here
    vnet(G.VNET_GSO_UDP_L4, 1000) + tcp_super(),  # type does not match the protocol
    vnet(G.VNET_GSO_TCPV6, 1000) + bytes(IPv6(nh=0) / (b"\0" * 60)),  # extension header
    vnet(G.VNET_GSO_TCPV4, 1000) + b"\x70" + bytes(60),  # not IP
    vnet(G.VNET_GSO_TCPV4, 47) + tcp_super(),  # below TCP's smallest MSS: ~1400+ segments
    vnet(G.VNET_GSO_UDP_L4, 100)  # 103 UDP segments, more than UDP_MAX_SEGMENTS
    + bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / PAYLOAD),
    b"\x01\x01",
])
def test_gso_segment_rejects(packet: bytes) -> None:
    assert G.gso_segment(packet) is None


def test_vnet_plausible() -> None:
    assert G.vnet_plausible(vnet(G.VNET_GSO_TCPV4, 1360) + tcp_super())
    assert G.vnet_plausible(P.VNET_ZERO_HDR + tcp_super())
    assert not G.vnet_plausible(vnet(9, 1360) + tcp_super())  # unknown GSO type
    assert not G.vnet_plausible(vnet(1, 1360, flags=8) + tcp_super())
    assert not G.vnet_plausible(P.VNET_ZERO_HDR + tcp_super()[:30])
    assert not G.vnet_plausible(P.VNET_ZERO_HDR)


# -- udp_merge -------------------------------------------------------------------------
def udp_run(version: int = 4, count: int = 20, size: int = 64, last: int = 30,
            headers: bool = False, **change: Any) -> tuple[bytes, int, list[bytes]]:
    pkts = []
    for i in range(count):
        l3: Any = (IP(src="10.0.0.1", dst="10.0.0.2", id=i) if version == 4
                   else IPv6(src="fd00::1", dst="fd00::2"))
        n = last if i == count - 1 else size
        pkts.append(bytes(l3 / UDP(sport=5, dport=6) / (bytes([i]) * n)))
    for index, (offset, value) in change.items():
        i = int(index[1:])
        pkts[i] = pkts[i][:offset] + bytes([value]) + pkts[i][offset + 1:]
    wire = [vnet(0, 0, 1, 20 if version == 4 else 40, 6) + p if headers else p for p in pkts]
    return b"".join(wire), len(wire[0]), pkts


@pytest.mark.parametrize("version", [4, 6])
@pytest.mark.parametrize("headers", [False, True])
def test_udp_merge_round_trip(version: int, headers: bool) -> None:
    run, step, pkts = udp_run(version, headers=headers)
    merged = G.udp_merge(run, step)
    assert merged is not None
    flags, gso_type, hdr_len, gso_size, start, offset = struct.unpack_from("<BBHHHH", merged)
    ip_len = 20 if version == 4 else 40
    assert (flags, gso_type, hdr_len, gso_size, start, offset) == (1, 5, ip_len + 8, 64, ip_len, 6)
    segs = G.gso_segment(merged)
    assert segs is not None and len(segs) == len(pkts)
    cls: Any = IP if version == 4 else IPv6
    assert [bytes(cls(s)[UDP]) for s in segs] == [bytes(cls(p)[UDP]) for p in pkts]
    assert all(reparsed_ok(s) for s in segs)


@pytest.mark.parametrize("change", [
    {"c3": (23, 7)},  # another destination port
    {"c0": (8, 3)},  # another TTL on the first
    {"c5": (1, 4)},  # another TOS
    {"c4": (6, 0x20)},  # a fragment (MF)
    {"c2": (9, 6)},  # not UDP
])
def test_udp_merge_refuses_other_flows(change: dict[str, tuple[int, int]]) -> None:
    run, step, _ = udp_run(**change)  # type: ignore[arg-type]
    assert G.udp_merge(run, step) is None


def test_udp_merge_refuses_odd_runs() -> None:
    run, step, _ = udp_run(count=1)
    assert G.udp_merge(run, step) is None  # one datagram: nothing to merge
    run, step, _ = udp_run(last=64)
    assert G.udp_merge(run, step) is not None  # all equal is fine
    run, step, _ = udp_run(count=G.UDP_MAX_SEGMENTS + 1)
    assert G.udp_merge(run, step) is None  # more than one UDP GSO packet may carry
    opts = bytes(IP(src="10.0.0.1", dst="10.0.0.2", options=b"\x01\x01\x01\x00") / UDP() / b"x")
    assert G.udp_merge(opts * 3, len(opts)) is None  # IP options
    run, step, _ = udp_run()
    assert G.udp_merge(run + b"\0", step) is None  # a last datagram that does not parse
    assert G.udp_merge(run[:-40], step) is None  # truncated last datagram


# -- UdpTunnel between fake devices ----------------------------------------------------------
async def tunnel_pair(a_vnet: bool, b_vnet: bool, **params: Any) -> tuple[Any, ...]:
    a_dev, b_dev = FakeDevice(vnet_hdr=a_vnet), FakeDevice(vnet_hdr=b_vnet)
    pa, pb = free_udp_port(), free_udp_port()
    a = UdpTunnel(context(a_dev, {"local": f"127.0.0.1:{pa}", "remote": f"127.0.0.1:{pb}"}))
    b = UdpTunnel(context(b_dev, {"local": f"127.0.0.1:{pb}", "remote": f"127.0.0.1:{pa}"}))
    for prog in (a, b):
        for key, value in params.items():
            setattr(prog, key, value)
    return a_dev, b_dev, a, b


async def test_super_packet_crosses_whole_between_offload_ends() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(True, True)
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            sup = vnet(G.VNET_GSO_TCPV4, 1360, 1, 20, 16) + tcp_super()
            a_dev.send(sup)
            assert await b_dev.recv() == sup  # header and all, as is
            back = vnet(0, 0, 1, 20, 16) + tcp_super(payload=b"ack")  # a checksum left to do
            b_dev.send(back)
            assert await a_dev.recv() == back
            a_dev.send(P.VNET_ZERO_HDR + tcp_super(payload=b"plain"))  # goes out plain
            assert await b_dev.recv() == P.VNET_ZERO_HDR + tcp_super(payload=b"plain")
    finally:
        a_dev.close()
        b_dev.close()
    assert a.counters["gso_tx"] == 1 and b.counters["gso_rx"] == 1
    assert a.counters["max_len"] == len(tcp_super()) and a.counters["segmented"] == 0


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((host, 0))
            port: int = s.getsockname()[1]
            return port
    except OSError as exc:
        pytest.skip(f"no {host} here: {exc}")


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_largest_super_packets(host: str) -> None:
    # 64 KiB super-packets cross whole (over IPv4 and IPv6, fragmented on the way);
    # one too big for a datagram (IP length 65535 + the vnet header) leaves segmented
    a_dev, b_dev = FakeDevice(vnet_hdr=True), FakeDevice(vnet_hdr=True)
    pa, pb = free_port(host), free_port(host)
    ep = f"[{host}]" if ":" in host else host
    a = UdpTunnel(context(a_dev, {"local": f"{ep}:{pa}", "remote": f"{ep}:{pb}"}))
    b = UdpTunnel(context(b_dev, {"local": f"{ep}:{pb}", "remote": f"{ep}:{pa}"}))
    fits = vnet(G.VNET_GSO_TCPV4, 1360, 1, 20, 16) + tcp_super(payload=bytes(65212 - 40))
    too_big = vnet(G.VNET_GSO_TCPV4, 1360, 1, 20, 16) + tcp_super(payload=bytes(65535 - 40))
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a_dev.send(fits)
            assert await b_dev.recv() == fits
            a_dev.send(too_big)
            got = [await b_dev.recv() for _ in range(-(-(65535 - 40) // 1360))]
            assert all(g[:10] == P.VNET_ZERO_HDR and reparsed_ok(g[10:]) for g in got)
            assert b"".join(bytes(IP(g[10:])[TCP].payload) for g in got) == bytes(65535 - 40)
    finally:
        a_dev.close()
        b_dev.close()
    assert a.counters["gso_tx"] == 1 and a.counters["segmented"] == 1
    assert a.counters["max_len"] == 65535 and b.counters["gso_rx"] == 1


async def test_super_packet_segmented_for_a_plain_end() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(True, False)
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a_dev.send(vnet(G.VNET_GSO_TCPV6, 1360, 1, 40, 16) + tcp_super(6))
            got = [await b_dev.recv() for _ in range(8)]
            assert b"".join(bytes(IPv6(g)[TCP].payload) for g in got) == PAYLOAD
            assert all(reparsed_ok(g) for g in got)
            b_dev.send(tcp_super(payload=b"ack"))  # a plain packet gets a zero header
            assert await a_dev.recv() == P.VNET_ZERO_HDR + tcp_super(payload=b"ack")
    finally:
        a_dev.close()
        b_dev.close()
    assert b.counters["segmented"] == 1 and b.counters["tun_tx"] == 8


@pytest.mark.parametrize("b_vnet", [False, True])
async def test_small_packets_leave_in_gso_runs(b_vnet: bool) -> None:
    a_dev, b_dev, a, b = await tunnel_pair(False, b_vnet)
    run, _step, pkts = udp_run(count=64, last=64)
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.port.read_nowait = lambda batch=64, pkts=pkts: list(pkts)  # one full batch
            a._on_device()
            if b_vnet:  # the run arrives whole (UDP GRO) and is written as one UDP_L4 packet
                merged = await b_dev.recv()
                assert G.gso_segment(merged) is not None
                assert [bytes(IP(s)[UDP]) for s in G.gso_segment(merged) or []] == \
                    [bytes(IP(p)[UDP]) for p in pkts]
                assert b.counters["gso_rx"] == 1
            else:
                assert [await b_dev.recv() for _ in pkts] == pkts
    finally:
        a_dev.close()
        b_dev.close()
    assert a.counters["udp_tx"] == 64 and b.counters["udp_rx"] == 64


async def test_without_udp_gso() -> None:
    a_dev, b_dev, a, b = await tunnel_pair(False, True, udp_gso=False)
    _run, _step, pkts = udp_run(count=10, last=64)
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            a.port.read_nowait = lambda batch=64, pkts=pkts: list(pkts)
            a._on_device()
            assert [await b_dev.recv() for _ in pkts] == [P.VNET_ZERO_HDR + p for p in pkts]
    finally:
        a_dev.close()
        b_dev.close()
    assert not b._gro and b.counters["gso_rx"] == 0


class RefusingSocket:
    """Stands in for the underlay socket: refuses UDP GSO like an old kernel."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def sendmsg(self, *args: Any) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    def sendto(self, data: bytes, address: Any) -> int:
        self.sent.append(bytes(data))
        return len(data)


def test_gso_refused_falls_back_to_one_send_each() -> None:
    dev = FakeDevice()
    try:
        tunnel = UdpTunnel(context(dev, {"local": "127.0.0.1:1", "remote": "127.0.0.1:2"}))
        sock = RefusingSocket()
        pkts = [bytes([i]) * 100 for i in range(10)]
        tunnel.transmit(sock, pkts)  # type: ignore[arg-type]
        tunnel.transmit(sock, pkts)  # type: ignore[arg-type]
        assert sock.sent == pkts * 2 and tunnel._gso_below == 100
        assert tunnel.counters["udp_tx"] == 20 and tunnel.counters["dropped"] == 0
    finally:
        dev.close()


# -- real kernel -----------------------------------------------------------------------------
def s4_yaml(lab: str, left_offload: bool, right_offload: bool, tcp_bytes: int) -> str:
    def node(n: int, offload: bool) -> str:
        return (f"    interfaces:\n"
                f"      tun0:\n        kind: tun\n        mtu: 1400\n"
                f"        offload: {str(offload).lower()}\n"
                f"        addresses: [192.168.1.1{n}/24]\n"
                f"        program: {{name: udp-tunnel, local: '172.16.1.1{n}:6000', "
                f"remote: '172.16.1.1{3 - n}:6000'}}\n"
                f"      eth0: {{addresses: [172.16.1.1{n}/24]}}\n")
    return (f"name: {lab}\nnodes:\n  left:\n{node(1, left_offload)}"
            f"  right:\n{node(2, right_offload)}"
            "links:\n  - [left:eth0, right:eth0]\n"
            "steps:\n  - ping: {from: left, to: 192.168.1.12, count: 2}\n"
            f"  - connect: {{from: left, to: '192.168.1.12:5000', proto: tcp, "
            f"bytes: {tcp_bytes}}}\n"
            "  - connect: {from: right, to: '192.168.1.11:5000', proto: udp, bytes: 3000}\n")


@pytest.mark.root
async def test_s4_offload_both_ends_tcp_bulk() -> None:
    scenario = netvirt.load_text(s4_yaml(unique(), True, True, 20_000_000), "<s4-offload>")
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        left = topo.program("left", "tun0").counters
        right = topo.program("right", "tun0").counters
    # 20 MB each way went as super-packets read far above the MTU, carried whole
    for c in (left, right):
        assert c["max_len"] > 1400 and c["gso_tx"] > 0 and c["gso_rx"] > 0, c
        assert c["malformed"] == c["rx_foreign"] == c["segmented"] == 0, c
    assert left["tun_rx"] < 20_000_000 // 1400  # far fewer reads than MTU-sized packets


@pytest.mark.root
async def test_s4_offload_on_one_end_only() -> None:
    scenario = netvirt.load_text(s4_yaml(unique(), True, False, 5_000_000), "<s4-mixed>")
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        left = topo.program("left", "tun0").counters
        right = topo.program("right", "tun0").counters
    # the plain end cut the offload end's super-packets into segments in Python
    assert left["gso_tx"] > 0 and right["segmented"] > 0 and right["malformed"] == 0
    assert left["gso_rx"] == 0 and right["max_len"] <= 1400


@pytest.mark.root
def test_benchmark_smoke() -> None:
    if shutil.which("iperf3") is None:
        pytest.skip("iperf3 is not installed (apt-get install iperf3)")
    lab = unique()
    res = subprocess.run([sys.executable, "-m", "benchmarks.tunnel", "--smoke", "--json",
                          "--prefix", lab], capture_output=True, text=True, timeout=90, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert report["benchmark"] == "tunnel" and report["failures"] == []
    results = {r["name"]: r for r in report["results"]}
    assert results["netvirt-tcp"]["median"] > 0 and results["netvirt-udp64-received"]["median"] > 0
    if shutil.which("openvpn") is None:
        assert "openvpn" not in report["tunnels"] and "skipped" in res.stderr
    else:
        assert {r["name"] for r in report["ratios"]} == {"netvirt/openvpn-tcp",
                                                         "netvirt/openvpn-udp64-received"}
    ends = report["counters"]["netvirt"]
    assert max(c["max_len"] for c in ends) > 1400  # offload on: super-packets were read


@pytest.mark.root
async def test_ipip_with_offload_segments_in_python() -> None:
    # IP-in-IP's wire is standard: super-packets leave as MTU-sized packets
    text = (ROOT / "scenarios" / "s4-ipip-tunnel.yaml").read_text()
    text = text.replace("kind: tun\n", "kind: tun\n        offload: true\n")
    text = text.replace("bytes: 100000", "bytes: 3000000")
    scenario = netvirt.load_text(text, "<s4-ipip-offload>").with_name(unique())
    async with netvirt.Topology(scenario) as topo:
        results = await netvirt.run_steps(topo)
        assert all(r.ok for r in results), [r.detail for r in results if not r.ok]
        a = topo.program("a", "tun0").counters
        b = topo.program("b", "tun0").counters
    for c in (a, b):
        assert c["max_len"] > 1500 and c["segmented"] > 0 and c["gso_tx"] == 0, c
        assert c["malformed"] == c["rx_foreign"] == 0, c
