"""Programs on real devices (issue 9 items 6 and 8).

Junk frames written into real tuns and taps (AF_PACKET from the kernel side:
runts, a bare 14-byte Ethernet header, truncated and corrupted packets,
random bytes) reach the sink, the responder and the pcap program; each must
still run, count every frame, and answer afterwards. A program on a tun with
``queues: 4`` serves every queue: UDP flows the kernel spreads over the
queues are all counted. (The tunnels get the same treatment in
tests/test_tunnel_fuzz.py.)
"""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path
from typing import Any

import pytest

import netvirt
from tests.conftest import unique
from tests.unit.test_program_junk import MAC, junk

pytestmark = pytest.mark.root

SEED = 4242


def junk_lab(lab: str, pcap: Path) -> str:
    return f"""
name: {lab}
nodes:
  n:
    interfaces:
      tun1: {{kind: tun, addresses: [10.78.1.1/24], program: sink}}
      tun2: {{kind: tun, addresses: [10.78.2.1/24], program: responder}}
      tap3: {{kind: tap, addresses: [10.78.3.1/24],
              program: {{name: responder, ip: 10.78.3.2, mac: "{MAC}"}}}}
      tun4: {{kind: tun, addresses: [10.78.4.1/24], program: {{name: pcap, path: "{pcap}"}}}}
"""


async def inject(topo: Any, ifname: str, frames: list[bytes], ether: bool) -> int:
    """Write ``frames`` into the device from the kernel side; how many went."""
    kind = socket.SOCK_RAW if ether else socket.SOCK_DGRAM
    sock = await topo.node("n").socket(socket.AF_PACKET, kind, 0)
    sent = 0
    try:
        sock.bind((ifname, 0))
        for frame in frames:
            if not frame:
                continue
            for _ in range(1000):
                try:
                    sock.sendto(frame, (ifname, 0x0800))
                    sent += 1
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
                except OSError:  # the kernel refused it (e.g. shorter than a link header)
                    break
            if sent % 32 == 0:
                await asyncio.sleep(0)
    finally:
        sock.close()
    return sent


async def test_junk_into_real_devices_kills_no_program(tmp_path: Path) -> None:
    frames = list(junk(random.Random(SEED), 1500))
    scenario = netvirt.load_text(junk_lab(unique(), tmp_path / "junk.pcap"), "<junk>")
    async with netvirt.Topology(scenario) as topo:
        programs = {i: topo.program("n", i) for i in ("tun1", "tun2", "tap3", "tun4")}
        sink, pcap = programs["tun1"], programs["tun4"]
        base = {i: dict(p.counters) for i, p in programs.items()}
        sent = {}
        for ifname, ether in (("tun1", False), ("tun2", False), ("tap3", True), ("tun4", False)):
            sent[ifname] = await inject(topo, ifname, frames, ether)
        assert min(sent.values()) > 1000, sent

        def settled() -> bool:
            return (sink.counters["rx"] - base["tun1"]["rx"] >= sent["tun1"]
                    and pcap.counters["packets"] - base["tun4"]["packets"] >= sent["tun4"])

        for _ in range(500):
            if settled():
                break
            await asyncio.sleep(0.01)
        for ifname, program in programs.items():
            assert program.running and program.error is None, (ifname, program.error)
        assert sink.counters["rx"] - base["tun1"]["rx"] >= sent["tun1"]
        assert pcap.counters["packets"] - base["tun4"]["packets"] >= sent["tun4"]
        for ifname in ("tun2", "tap3"):
            assert programs[ifname].counters["rx"] - base[ifname]["rx"] >= sent[ifname] * 0.9
        # still answering: pings through the tun's responder and to the guest behind the tap
        for addr in ("10.78.2.9", "10.78.3.2"):
            replies, _rtts = await netvirt.ping(topo, "n", addr, count=2)
            assert replies == 2, addr


async def test_a_program_serves_every_queue() -> None:
    lab = unique()
    text = f"""
name: {lab}
nodes:
  n:
    interfaces:
      tun0: {{kind: tun, queues: 4, addresses: [10.79.0.1/24], program: sink}}
"""
    scenario = netvirt.load_text(text, "<mq>")
    async with netvirt.Topology(scenario) as topo:
        sink = topo.program("n", "tun0")
        udp = await topo.node("n").socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for port in range(200):  # 200 flows: the kernel hashes them over the 4 queues
                udp.sendto(b"flow", ("10.79.0.2", 20000 + port))
                if port % 16 == 0:
                    await asyncio.sleep(0.001)
        finally:
            udp.close()
        for _ in range(300):
            if sink.counters["rx_udp"] >= 200:
                break
            await asyncio.sleep(0.01)
        queues = topo.device("n", "tun0").queues
        per_queue = [q.rx_packets for q in queues]
        assert sink.counters["rx_udp"] == 200, (sink.counters, per_queue)
        assert len(queues) == 4 and sum(1 for n in per_queue if n) >= 2, per_queue
        assert sink.error is None
