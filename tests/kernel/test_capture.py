"""Issue 4: ``netvirt capture`` and the ``pcap`` program write pcap files that
scapy and tcpdump read back exactly.

S1 (``s1a-tun-sink``): the capture of tun1 holds exactly the four ICMP echo
requests of ``ping -c 4`` (link type RAW); S2 (``s2-vm-tap``): the capture of
the ``uplink`` veth holds Ethernet frames with the ARP exchange and the echo
requests and replies; ``scenarios/s1c-tun-pcap.yaml``: the pcap program's file
holds the four echo requests. The CLI tests run on both event loops
(``--loop``); the in-process one runs on both through conftest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import PcapReader, rdpcap

import netvirt
from netvirt.topology.journal import read_info
from tests.conftest import unique
from tests.kernel.helpers import ROOT, SCENARIOS, assert_lab_gone, netns_of_lab
from tests.kernel.helpers import netvirt as nv

pytestmark = pytest.mark.root

LOOPS = ["uvloop", "asyncio"]
S1C_PCAP = Path("/tmp/netvirt-s1c-tun-pcap.pcap")  # named by scenarios/s1c-tun-pcap.yaml
GUEST_MAC = "52:54:00:12:34:56"  # the responder on S2's tap0


def spawn_capture(loop: str, lab: str, node: str, ifname: str, out: Path,
                  *args: str) -> subprocess.Popen[str]:
    """``netvirt capture`` in the background (see :func:`started`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "netvirt", "--loop", loop, "capture", lab, node, ifname,
         "-w", str(out), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def started(proc: subprocess.Popen[str], out: Path) -> subprocess.Popen[str]:
    """Return once the capture's socket is bound: the file appears only after the
    packet socket is bound to the interface, so nothing sent from then on is missed."""
    deadline = time.monotonic() + 10
    while not out.exists():
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"capture exited {proc.returncode}: {err}")
        if time.monotonic() > deadline:
            stop(proc)
            raise AssertionError("capture did not start in 10 s")
        time.sleep(0.02)
    return proc


def start_capture(loop: str, lab: str, node: str, ifname: str, out: Path,
                  *args: str) -> subprocess.Popen[str]:
    return started(spawn_capture(loop, lab, node, ifname, out, *args), out)


def stop(proc: subprocess.Popen[str]) -> None:
    """Kill a capture this test started (by its pid) if it is still running."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def finish(proc: subprocess.Popen[str], timeout: float = 10) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise AssertionError(f"capture still running after {timeout} s") from None
    return proc.returncode, err


@contextlib.contextmanager
def lab_up(scenario: str, loop: str) -> Iterator[str]:
    """``netvirt up --detach`` under a unique name on ``loop``; ``down`` afterwards."""
    lab = unique()
    nv("--loop", loop, "up", f"scenarios/{scenario}", "--name", lab, "--detach", check=True)
    try:
        assert read_info(lab).get("ready"), f"lab {lab} is not ready after up --detach"
        yield lab
    finally:
        if read_info(lab) or netns_of_lab(lab):  # else the test took it down already
            nv("down", lab, check=True)
        assert_lab_gone(lab)


@pytest.mark.parametrize("loop", LOOPS)
def test_capture_s1_tun_and_loopback_then_teardown(tmp_path: Path, loop: str) -> None:
    """S1: exactly the four echo requests, read back by scapy and tcpdump; loopback;
    a capture without limits ends cleanly when the lab is torn down under it."""
    with lab_up("s1a-tun-sink.yaml", loop) as lab:
        out, lo, endless = tmp_path / "s1.pcap", tmp_path / "lo.pcap", tmp_path / "endless.pcap"
        procs = [spawn_capture(loop, lab, "host", "tun1", out, "-c", "4", "--seconds", "15"),
                 spawn_capture(loop, lab, "host", "lo", lo, "-c", "2", "--seconds", "15"),
                 spawn_capture(loop, lab, "host", "tun1", endless)]  # no limit
        try:
            for proc, path in zip(procs, (out, lo, endless), strict=True):
                started(proc, path)
            ping = nv("exec", lab, "host", "--", "ping", "-c", "4", "-i", "0.2", "-W", "1",
                      "192.168.3.12")
            assert ping.returncode != 0, "the sink answers nothing: ping must fail"
            assert "4 packets transmitted, 0 received" in ping.stdout, ping.stdout
            lo_ping = nv("exec", lab, "host", "--", "ping", "-c", "1", "-W", "1", "127.0.0.1")
            assert lo_ping.returncode == 0, lo_ping.stdout + lo_ping.stderr
            code, err = finish(procs[0])
            lo_code, lo_err = finish(procs[1])
            # a capture with no limit ends (exit 3, one line, the file kept) when the lab goes
            nv("down", lab, check=True)
            endless_code, endless_err = finish(procs[2])
        finally:
            for proc in procs:
                stop(proc)
        assert code == 0, err
        assert f"captured 4 packets to {out}" in err

        with PcapReader(str(out)) as reader:
            assert reader.linktype == 101  # LINKTYPE_RAW: a tun carries bare IP packets
        packets = rdpcap(str(out))
        assert len(packets) == 4
        for pkt in packets:
            raw = bytes(pkt)
            assert len(raw) == 84, pkt.summary()
            ip = IP(raw)  # scapy's own decoding of the bytes, whatever class rdpcap chose
            assert ip.version == 4 and ip.dst == "192.168.3.12" and ip.src == "192.168.3.11"
            assert ip.haslayer(ICMP) and ip[ICMP].type == 8, ip.summary()
        assert [IP(bytes(p))[ICMP].seq for p in packets] == [1, 2, 3, 4]

        tcpdump = shutil.which("tcpdump")
        assert tcpdump, "tcpdump is not installed (.ci/run installs it: apt-get install tcpdump)"
        res = subprocess.run([tcpdump, "-r", str(out), "-n"], capture_output=True, text=True,
                             timeout=30)
        assert res.returncode == 0, res.stderr
        lines = res.stdout.splitlines()
        assert len(lines) == 4, res.stdout
        assert all("192.168.3.11 > 192.168.3.12: ICMP echo request" in line for line in lines)

        # loopback: Ethernet link type (zero MACs), each packet once (the kernel hands a
        # packet socket both the outgoing and the incoming copy)
        assert lo_code == 0, lo_err
        packets = rdpcap(str(lo))
        assert [p[ICMP].type for p in packets] == [8, 0]
        assert all(p.haslayer(Ether) and p[IP].dst == "127.0.0.1" for p in packets)

        assert endless_code == 3, endless_err
        assert "captured 4 packets" in endless_err, endless_err
        assert "'tun1'" in endless_err and "is gone" in endless_err, endless_err
        assert "Traceback" not in endless_err
        assert len(rdpcap(str(endless))) == 4


@pytest.mark.parametrize("loop", LOOPS)
def test_capture_ethernet_veth_of_s2(tmp_path: Path, loop: str) -> None:
    with lab_up("s2-vm-tap-bridge.yaml", loop) as lab:
        out = tmp_path / "uplink.pcap"
        proc = start_capture(loop, lab, "net", "uplink", out, "--seconds", "15")
        try:
            ping = nv("exec", lab, "net", "--", "ping", "-c", "3", "-i", "0.2", "-W", "1",
                      "10.0.0.11")
            assert ping.returncode == 0, ping.stdout + ping.stderr
            proc.send_signal(signal.SIGINT)  # Ctrl-C ends a capture normally
            code, err = finish(proc)
        finally:
            stop(proc)
        assert code == 0, err
        assert "captured" in err and "Traceback" not in err

        with PcapReader(str(out)) as reader:
            assert reader.linktype == 1  # LINKTYPE_ETHERNET
        packets = rdpcap(str(out))
        assert all(p.haslayer(Ether) for p in packets)
        arp = [p[ARP] for p in packets if p.haslayer(ARP)]
        assert any(a.op == 1 and a.pdst == "10.0.0.11" and a.psrc == "10.0.0.254" for a in arp)
        assert any(a.op == 2 and a.psrc == "10.0.0.11" and a.hwsrc == GUEST_MAC for a in arp)
        icmp = [p for p in packets if p.haslayer(ICMP)]
        requests = [p for p in icmp if p[ICMP].type == 8 and p[IP].dst == "10.0.0.11"]
        replies = [p for p in icmp if p[ICMP].type == 0 and p[IP].src == "10.0.0.11"]
        assert len(requests) == 3 and len(replies) == 3, [p.summary() for p in icmp]
        assert all(p[Ether].dst == GUEST_MAC for p in requests)
        assert all(p[Ether].src == GUEST_MAC for p in replies)

        # errors are one line with exit 3: an unknown interface is named, so is an unknown node
        res = nv("capture", lab, "net", "nosuch0", "-w", str(tmp_path / "x.pcap"), "-c", "1")
        assert res.returncode == 3, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "nosuch0" in lines[0] and lines[0].startswith("netvirt: error:")
        assert not (tmp_path / "x.pcap").exists()
        res = nv("capture", lab, "nonode", "uplink", "-w", str(tmp_path / "x.pcap"))
        assert res.returncode == 2 and "nonode" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_capture_unknown_lab_exits_3(tmp_path: Path) -> None:
    lab = unique()
    res = nv("capture", lab, "host", "tun1", "-w", str(tmp_path / "x.pcap"), "-c", "1")
    assert res.returncode == 3, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lab in lines[0], res.stderr
    assert not (tmp_path / "x.pcap").exists()


def test_capture_usage_errors_exit_2(tmp_path: Path) -> None:
    out = str(tmp_path / "x.pcap")
    assert nv("capture", "lab", "node").returncode == 2  # no interface, no -w
    assert nv("capture", "lab", "node", "eth0").returncode == 2  # no -w
    assert nv("capture", "lab", "node", "eth0", "-w", out, "-c", "many").returncode == 2


# -- the pcap program ----------------------------------------------------------
async def test_pcap_program_scenario_s1c_writes_the_four_echo_requests() -> None:
    S1C_PCAP.unlink(missing_ok=True)
    scenario = netvirt.load(SCENARIOS / "s1c-tun-pcap.yaml").with_name(unique())
    try:
        async with netvirt.Topology(scenario) as topo:
            results = await netvirt.run_steps(topo)
            assert all(r.ok for r in results), [(r.title, r.detail) for r in results]
            assert topo.program("host", "tun1").counters["packets"] == 4
        assert_lab_gone(scenario.name)
        with PcapReader(str(S1C_PCAP)) as reader:
            assert reader.linktype == 101
        packets = rdpcap(str(S1C_PCAP))
        assert len(packets) == 4
        for pkt in packets:
            ip = IP(bytes(pkt))
            assert len(ip) == 84 and ip.dst == "192.168.3.12" and ip[ICMP].type == 8
    finally:
        S1C_PCAP.unlink(missing_ok=True)
