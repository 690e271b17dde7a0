"""No junk frame may kill a program (issue 9 items 6, 9) and a program's failure is kept.

Property-style and pure: every built-in program's per-packet code gets
thousands of generated inputs (random bytes, real packets and frames
truncated at every length or with bytes changed, runts, a bare 14-byte
Ethernet header) and must return, not raise: the responder's answers (tun
and tap framing, vnet header or not), the sink's classifier, the tunnels'
decapsulation and wire plans, the pcap writer. Then the programs run over a
fake device that is fed junk, and must still be running, answering and
counting. Last: a failing program keeps its error (``Program.error``,
``on_error``), and a program that cannot run on a device's framing says so.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, ICMPv6ND_NS, IPv6
from scapy.layers.l2 import ARP, Ether

from netvirt.errors import ScenarioError
from netvirt.programs import IpipTunnel, PcapProgram, Program, Responder, Sink, UdpTunnel
from netvirt.programs._tunnel_wire import plan_sends, plan_writes
from netvirt.wire import packets as P
from netvirt.wire.pcap import PcapWriter
from tests.unit.test_programs import FakeDevice, context, running, until

SEED = 909
MAC = "02:00:00:00:00:99"


def seeds() -> list[bytes]:
    """Real packets and frames of every kind the programs look at."""
    ip4 = [IP(src="10.0.0.1", dst="10.0.0.2") / ICMP() / b"ping",
           IP(src="10.0.0.1", dst="10.0.0.2", ihl=6, options=b"\x01\x01\x01\x00") / UDP() / b"x",
           IP(src="10.0.0.1", dst="10.0.0.2", flags="MF") / TCP() / b"frag"]
    ip6 = [IPv6(src="fd00::1", dst="fd00::2") / ICMPv6EchoRequest(data=b"ping"),
           IPv6(src="fd00::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fd00::2"),
           IPv6(src="fd00::1", dst="fd00::2", nh=0) / (b"\x3a\x00" + bytes(6) + b"x")]
    packets = [bytes(p) for p in ip4 + ip6]
    frames = [bytes(Ether(dst="ff:ff:ff:ff:ff:ff", src="02:00:00:00:00:01") /
                    ARP(pdst="10.0.0.2", psrc="10.0.0.1", hwsrc="02:00:00:00:00:01"))]
    frames += [bytes(Ether(dst=MAC, src="02:00:00:00:00:01", type=0x0800 if p[0] >> 4 == 4
                           else 0x86DD)) + p for p in packets]
    return packets + frames


def junk(rng: random.Random, n: int) -> Iterator[bytes]:
    base = seeds()
    yield bytes.fromhex(MAC.replace(":", "")) + bytes(6) + b"\x08\x00"  # issue 9 item 6
    yield bytes.fromhex(MAC.replace(":", "")) + bytes(6) + b"\x86\xdd"
    yield b""
    for seed in base:  # every truncation of every seed
        for cut in range(len(seed)):
            yield seed[:cut]
    for _ in range(n):
        choice = rng.random()
        if choice < 0.3:
            yield rng.randbytes(rng.randint(0, 120))
        else:
            data = bytearray(rng.choice(base))
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            yield bytes(data[: rng.randint(0, len(data))] if rng.random() < 0.3 else data)


async def push(dev: FakeDevice, data: bytes) -> None:
    """Send into the fake device, waiting while its (small) queue is full."""
    while True:
        try:
            dev.send(data)
            return
        except BlockingIOError:
            await asyncio.sleep(0.001)
        while True:  # replies the junk provoked: keep the other direction empty
            try:
                dev.kernel.recv(70000)
            except BlockingIOError:
                break


@pytest.fixture
def inputs() -> list[bytes]:
    return list(junk(random.Random(SEED), 4000))


def test_per_packet_code_never_raises(inputs: list[bytes], tmp_path: Path) -> None:
    tun, tap = FakeDevice("ip"), FakeDevice("ether")
    try:
        responders = [Responder(context(tun, {})), Responder(context(tun, {"ip": "10.0.0.2"})),
                      Responder(context(tap, {"ip": ["10.0.0.2", "fd00::2"], "mac": MAC})),
                      Responder(context(tap, {"mac": MAC}))]
        udp = UdpTunnel(context(tun, {"local": "127.0.0.1:1", "remote": "127.0.0.1:2"}))
        ipip = IpipTunnel(context(tun, {"local": "10.0.0.1", "remote": "10.0.0.2"}))
        with PcapWriter(tmp_path / "junk.pcap", 1) as writer:
            for data in inputs:
                for r in responders[:2]:
                    r._answer_ip(data)
                for r in responders[2:]:
                    r._answer_ether(data)
                for framing in ("ip", "ether"):
                    for vnet in (False, True):
                        assert P.classify(data, framing, vnet_hdr=vnet) in P.CLASSES
                view = memoryview(data)
                udp.decapsulate(view, ("127.0.0.1", 2))
                ipip.decapsulate(view, None)
                plan_writes(view, len(data), True, True)
                plan_writes(view, 20, False, True, ether=True)
                plan_sends([data], True, 1400)
                plan_sends([data], False, 1400)
                plan_sends([data], True, 1414, ether=True)
                writer.write(data)
            assert writer.packets == len(inputs)
    finally:
        tun.close()
        tap.close()


async def test_programs_survive_junk_and_still_answer(inputs: list[bytes], tmp_path: Path) -> None:
    tun, tap, sink_dev, pcap_dev = (FakeDevice("ip"), FakeDevice("ether"), FakeDevice("ip"),
                                    FakeDevice("ip", vnet_hdr=True))
    responder = Responder(context(tun, {}))
    guest = Responder(context(tap, {"ip": "10.0.0.2", "mac": MAC}))
    sink = Sink(context(sink_dev, {}))
    pcap = PcapProgram(context(pcap_dev, {"path": str(tmp_path / "p.pcap")}))
    programs: list[Program] = [responder, guest, sink, pcap]
    sample = inputs[::8]
    try:
        async with running(responder), running(guest), running(sink), running(pcap):
            for data in sample:
                if not data:
                    continue  # a datagram socketpair cannot carry an empty "packet" reliably
                for dev in (tun, tap, sink_dev):
                    await push(dev, data)
                await push(pcap_dev, P.VNET_ZERO_HDR + data)
            sent = sum(1 for d in sample if d)
            await until(lambda: sink.counters["rx"] == sent and pcap.counters["packets"] == sent,
                        timeout=10)
            assert all(p.running and p.error is None for p in programs)
            # still answering: a ping into the tun, an ARP request to the guest
            while True:  # drop the replies the junk provoked
                try:
                    tun.kernel.recv(70000)
                except BlockingIOError:
                    break
            ping = bytes(IP(src="10.9.0.1", dst="10.9.0.2") / ICMP(id=77, seq=1) / b"alive")
            tun.send(ping)
            while True:
                reply = await tun.recv()
                if P.parse_echo(reply) and P.parse_echo(reply).ident == 77:  # type: ignore[union-attr]
                    break
            tap.send(P.arp_request("02:00:00:00:00:01", "10.0.0.1", "10.0.0.2"))
            while True:
                frame = await tap.recv()
                if frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x02":
                    break
    finally:
        for dev in (tun, tap, sink_dev, pcap_dev):
            dev.close()


# -- failures are kept -----------------------------------------------------------------
async def test_failure_is_kept_logged_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    dev = FakeDevice()

    class Broken(Program):
        name = "broken"

        async def run(self) -> None:
            await asyncio.sleep(0)
            raise RuntimeError("boom")

    try:
        program = Broken(context(dev, {}))
        seen: list[tuple[Any, BaseException]] = []
        program.on_error(lambda p, exc: seen.append((p, exc)))
        with caplog.at_level(logging.ERROR, logger="netvirt.programs"):
            task = program.start()
            await asyncio.wait({task})
        assert isinstance(program.error, RuntimeError) and str(program.error) == "boom"
        assert seen == [(program, program.error)] and not program.running
        assert "boom" in caplog.text
        late: list[BaseException] = []
        program.on_error(lambda p, exc: late.append(exc))  # registered after: called at once
        assert late == [program.error]
    finally:
        dev.close()


async def test_cancelled_program_has_no_error() -> None:
    dev = FakeDevice()
    try:
        sink = Sink(context(dev, {}))
        sink.start()
        await asyncio.sleep(0)
        await sink.stop()
        assert sink.error is None and not sink.running
    finally:
        dev.close()


def test_ipip_on_a_tap_is_refused_with_its_place() -> None:
    place = "nodes.n.interfaces.fake0.program"
    [problem] = IpipTunnel.check_device("tap", place)
    assert problem.path == place and "tun" in problem.message
    assert IpipTunnel.check_device("tun", place) == []
    assert UdpTunnel.check_device("tap", place) == []  # carries frames on a tap
    tap = FakeDevice("ether")
    try:
        with pytest.raises(ScenarioError, match="ipip-tunnel"):
            IpipTunnel(context(tap, {"local": "10.0.0.1", "remote": "10.0.0.2"}))
    finally:
        tap.close()
