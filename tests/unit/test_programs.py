"""The built-in programs driven through a fake device.

A ``socketpair(AF_UNIX, SOCK_DGRAM)`` keeps packet boundaries like a tun fd:
one end (dup'ed, non-blocking) sits in a real ``PacketPort``, the other end
plays the kernel.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6ND_NA, IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import PcapReader, rdpcap

from netvirt import packets as P
from netvirt.errors import KernelError, ScenarioError
from netvirt.packetio import PacketPort
from netvirt.programs import (
    PROGRAMS,
    IpipTunnel,
    PcapProgram,
    PcapWriter,
    Program,
    ProgramContext,
    Responder,
    Sink,
    UdpTunnel,
    UserProgram,
    check_program,
    get_program,
    program_class,
    program_params,
)
from netvirt.programs.base import OpenSocket

GUEST_MAC = "02:00:00:00:00:99"
HOST_MAC = "02:00:00:00:00:01"


class FakeDevice:
    """A PacketPort on one end of a datagram socketpair; ``kernel`` is the other end."""

    def __init__(self, framing: str = "ip", vnet_hdr: bool = False) -> None:
        ours, self.kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        fd = os.dup(ours.fileno())
        ours.close()
        os.set_blocking(fd, False)
        self.kernel.setblocking(False)
        self.port = PacketPort(fd, framing, vnet_hdr=vnet_hdr, name="fake0")  # type: ignore[arg-type]

    def send(self, packet: bytes) -> None:
        self.kernel.send(packet)

    async def recv(self, timeout: float = 3.0) -> bytes:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.sock_recv(self.kernel, 70000), timeout)

    async def expect_nothing(self, wait: float = 0.1) -> None:
        await asyncio.sleep(wait)
        with pytest.raises(BlockingIOError):
            self.kernel.recv(70000)

    def close(self) -> None:
        self.port.close()
        self.kernel.close()


async def plain_open_socket(family: int, type_: int, proto: int) -> socket.socket:
    sock = socket.socket(family, type_, proto)
    sock.setblocking(False)
    return sock


def context(dev: FakeDevice, params: dict[str, Any], *, addresses: list[str] = (),  # type: ignore[assignment]
            open_socket: OpenSocket = plain_open_socket, **extra: Any) -> ProgramContext:
    return ProgramContext(port=dev.port, params=params,
                          addresses=[ipaddress.ip_interface(a) for a in addresses],
                          open_socket=open_socket, device_name="fake0",
                          place="nodes.n.interfaces.fake0.program", **extra)


async def until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def running(program: Program) -> AsyncIterator[Program]:
    program.start()
    await asyncio.sleep(0)
    try:
        yield program
    finally:
        await program.stop()
        assert not program.running
        if program.error is not None:
            raise program.error


@pytest.fixture
def dev() -> Iterator[FakeDevice]:
    d = FakeDevice("ip")
    yield d
    d.close()


@pytest.fixture
def edev() -> Iterator[FakeDevice]:
    d = FakeDevice("ether")
    yield d
    d.close()


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# -- registry --------------------------------------------------------------------
def test_registry() -> None:
    assert list(PROGRAMS) == sorted(PROGRAMS)
    assert set(PROGRAMS) == {"sink", "responder", "udp-tunnel", "ipip-tunnel", "pcap"}
    for name, cls in PROGRAMS.items():
        assert cls.name == name and get_program(name) is cls
    with pytest.raises(ScenarioError, match="did you mean 'sink'"):
        get_program("snk", "p")
    assert program_class({"name": "sink"}) is Sink
    assert program_class({"python": "m:f"}) is UserProgram
    assert program_params({"name": "pcap", "path": "x"}) == {"path": "x"}


def test_check_program() -> None:
    place = "nodes.a.interfaces.tun0.program"
    assert check_program({"name": "sink"}, place) == []
    assert check_program({"name": "udp-tunnel", "local": "10.0.0.1:1",
                          "remote": "10.0.0.2:1"}, place) == []
    [problem] = check_program({"name": "sink", "bogus": 1}, place)
    assert problem.path == f"{place}.bogus" and "unknown key" in problem.message
    [problem] = check_program({"name": "nope"}, place)
    assert problem.path == f"{place}.name"
    assert check_program({}, place)[0].path == f"{place}.name"
    assert check_program({"name": "sink", "python": "m:f"}, place)
    assert check_program("sink", place)  # type: ignore[arg-type]


@pytest.mark.parametrize(("params", "bad_keys"), [
    ({"local": "10.0.0.1:6000"}, ["remote"]),
    ({"local": "10.0.0.1", "remote": "10.0.0.2:6000"}, ["local"]),
    ({"local": "10.0.0.1:0", "remote": "10.0.0.2:70000"}, ["local", "remote"]),
    ({"local": "10.0.0.1:6000", "remote": "[fd00::2]:6000"}, ["remote"]),
    ({"local": "fd00::1:6000", "remote": "[fd00::2]:6000"}, ["local"]),
    ({"local": "10.0.0.1:6000", "remote": "0.0.0.0:6000"}, ["remote"]),
    ({"local": 5, "remote": "10.0.0.2:x", "mtu": 1}, ["local", "remote", "mtu"]),
])
def test_udp_tunnel_check_params(params: dict[str, Any], bad_keys: list[str]) -> None:
    problems = UdpTunnel.check_params(params, "p")
    assert sorted(p.path for p in problems) == sorted(f"p.{k}" for k in bad_keys)


def test_other_check_params() -> None:
    assert Responder.check_params({"ip": ["10.0.0.2", "fd00::2/64"], "mac": GUEST_MAC}, "p") == []
    paths = [p.path for p in Responder.check_params(
        {"ip": ["10.0.0.2", "bogus", "224.0.0.1"], "mac": "01:00:5e:00:00:01"}, "p")]
    assert paths == ["p.ip[1]", "p.ip[2]", "p.mac"]
    assert [p.path for p in Responder.check_params({"ip": "x", "mac": 5}, "p")] == ["p.ip", "p.mac"]
    assert [p.path for p in IpipTunnel.check_params(
        {"local": "fd00::1", "remote": "10.0.0.2:5"}, "p")] == ["p.local", "p.remote"]
    assert [p.path for p in PcapProgram.check_params({}, "p")] == ["p.path"]
    assert [p.path for p in PcapProgram.check_params({"path": ""}, "p")] == ["p.path"]
    assert UserProgram.check_params({"python": "pkg.mod:handler", "extra": 1}, "p") == []
    assert UserProgram.check_params({"python": "./h.py:main"}, "p") == []
    for bad in ("nocolon", "mod:", ":f", "bad-mod:f", "m:1x", 5):
        assert [p.path for p in UserProgram.check_params({"python": bad}, "p")] == ["p.python"]


def test_bad_params_raise_scenario_error(dev: FakeDevice) -> None:
    with pytest.raises(ScenarioError) as info:
        UdpTunnel(context(dev, {"local": "nope"}))
    assert {p.path for p in info.value.problems} == {
        "nodes.n.interfaces.fake0.program.local", "nodes.n.interfaces.fake0.program.remote"}


# -- sink ----------------------------------------------------------------------------
async def test_sink_counts_by_protocol(dev: FakeDevice) -> None:
    sink = Sink(context(dev, {}))
    assert sink.counters["rx"] == 0 and sink.counters["rx_icmp"] == 0
    async with running(sink):
        for pkt in (IP(dst="1.2.3.4") / ICMP(), IP(dst="1.2.3.4") / UDP(),
                    IPv6(dst="::1") / ICMPv6EchoRequest(), IP(dst="1.2.3.4") / UDP()):
            dev.send(bytes(pkt))
        dev.send(b"\x45garbage")
        await until(lambda: sink.counters["rx"] == 5)
    assert (sink.counters["rx_icmp"], sink.counters["rx_udp"], sink.counters["rx_icmp6"],
            sink.counters["rx_malformed"]) == (1, 2, 1, 1)
    assert sink.counters["rx_bytes"] == 28 + 28 + 48 + 28 + 8


async def test_sink_ether_vnet() -> None:
    dev = FakeDevice("ether", vnet_hdr=True)
    try:
        sink = Sink(context(dev, {}))
        async with running(sink):
            dev.send(P.add_vnet_hdr(P.arp_request(HOST_MAC, "10.0.0.1", "10.0.0.2")))
            dev.send(P.add_vnet_hdr(bytes(Ether() / IP() / UDP())))
            await until(lambda: sink.counters["rx"] == 2)
        assert sink.counters["rx_arp"] == 1 and sink.counters["rx_udp"] == 1
        assert sink.counters["rx_bytes"] == 42 + 14 + 28
    finally:
        dev.close()


# -- responder ---------------------------------------------------------------------
async def test_responder_tun_answers_any_destination(dev: FakeDevice) -> None:
    responder = Responder(context(dev, {}, addresses=["192.168.1.11/24"]))
    async with running(responder):
        dev.send(bytes(IP(src="192.168.1.11", dst="10.9.8.7") / ICMP(id=1, seq=2) / b"ping"))
        reply = IP(await dev.recv())
        assert (reply.src, reply.dst, reply[ICMP].type, reply[ICMP].seq) == (
            "10.9.8.7", "192.168.1.11", 0, 2)
        dev.send(bytes(IPv6(src="fd00::1", dst="fd00::99") / ICMPv6EchoRequest(id=3, seq=4)))
        reply6 = IPv6(await dev.recv())
        assert reply6.src == "fd00::99" and reply6[ICMPv6EchoReply].seq == 4
        dev.send(bytes(IP(src="192.168.1.11", dst="10.9.8.7") / UDP()))
        await until(lambda: responder.counters["ignored"] == 1)
    assert responder.counters["echo_replies"] == 2
    assert responder.counters["rx"] == 3 and responder.counters["tx"] == 2


async def test_responder_tun_with_ip_param(dev: FakeDevice) -> None:
    responder = Responder(context(dev, {"ip": ["10.0.0.2", "fd00::2"]}))
    async with running(responder):
        dev.send(bytes(IP(src="10.0.0.1", dst="10.0.0.3") / ICMP()))
        dev.send(bytes(IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(seq=9)))
        assert IP(await dev.recv())[ICMP].seq == 9
        dev.send(bytes(IPv6(src="fe80::1", dst="ff02::1") / ICMPv6EchoRequest(seq=5)))
        reply = IPv6(await dev.recv())
        assert reply.src == "fd00::2" and reply.dst == "fe80::1"
    assert responder.counters["ignored"] == 1 and responder.counters["echo_replies"] == 2


async def test_responder_ether(edev: FakeDevice) -> None:
    responder = Responder(context(edev, {"ip": "10.0.0.2/24", "mac": GUEST_MAC}))
    async with running(responder):
        edev.send(P.arp_request(HOST_MAC, "10.0.0.1", "10.0.0.2"))
        arp = Ether(await edev.recv())[ARP]
        assert (arp.op, arp.hwsrc, arp.psrc) == (2, GUEST_MAC, "10.0.0.2")
        edev.send(bytes(Ether(src=HOST_MAC, dst=GUEST_MAC) / IP(src="10.0.0.1", dst="10.0.0.2")
                        / ICMP(seq=11)))
        eth = Ether(await edev.recv())
        assert (eth.src, eth.dst, eth[ICMP].type, eth[ICMP].seq) == (GUEST_MAC, HOST_MAC, 0, 11)
        # a unicast frame for another MAC (flooded by a bridge) is not for us
        edev.send(bytes(Ether(src=HOST_MAC, dst="02:00:00:00:00:55")
                        / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()))
        edev.send(P.arp_request(HOST_MAC, "10.0.0.1", "10.0.0.3"))
        await until(lambda: responder.counters["ignored"] == 2)
        await edev.expect_nothing()
    assert responder.counters["arp_replies"] == 1 and responder.counters["echo_replies"] == 1


async def test_responder_ether_ipv6_vnet_and_default_mac() -> None:
    dev = FakeDevice("ether", vnet_hdr=True)
    try:
        responder = Responder(context(dev, {}, addresses=["fd00::2/64"]))
        mac = responder.mac
        assert mac[0] == 0x02 and mac[-4:] == P.pack_ip("fd00::2")[-4:]
        mac_text = ":".join(f"{b:02x}" for b in mac)
        async with running(responder):
            dev.send(P.add_vnet_hdr(P.ndp_solicit(HOST_MAC, "fd00::1", "fd00::2")))
            raw = await dev.recv()
            assert raw[:10] == bytes(10)
            na = Ether(raw[10:])
            assert na.src == mac_text and na[ICMPv6ND_NA].tgt == "fd00::2"
            dev.send(P.add_vnet_hdr(bytes(Ether(src=HOST_MAC, dst=mac_text)
                                          / IPv6(src="fd00::1", dst="fd00::2")
                                          / ICMPv6EchoRequest(seq=3))))
            echo = Ether((await dev.recv())[10:])
            assert echo[ICMPv6EchoReply].seq == 3 and echo.dst == HOST_MAC
            dev.send(b"\x00" * 5)  # shorter than a vnet header
            await until(lambda: responder.counters["ignored"] == 1)
        assert responder.counters["ndp_replies"] == 1
    finally:
        dev.close()


async def test_responder_uses_device_mac(edev: FakeDevice) -> None:
    responder = Responder(context(edev, {"ip": "10.0.0.2"}, device_mac="02:aa:bb:cc:dd:ee"))
    assert responder.mac == P.pack_mac("02:aa:bb:cc:dd:ee")


# -- udp-tunnel -------------------------------------------------------------------------
async def test_udp_tunnel_back_to_back() -> None:
    a_dev, b_dev = FakeDevice(), FakeDevice()
    pa, pb = free_udp_port(), free_udp_port()
    a = UdpTunnel(context(a_dev, {"local": f"127.0.0.1:{pa}", "remote": f"127.0.0.1:{pb}"}))
    b = UdpTunnel(context(b_dev, {"local": f"127.0.0.1:{pb}", "remote": f"127.0.0.1:{pa}"}))
    foreign = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof.bind(("127.0.0.2", pa))  # right port, wrong address
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            pkt = bytes(IP(src="192.168.1.11", dst="192.168.1.12") / ICMP(seq=1) / (b"x" * 100))
            a_dev.send(pkt)
            assert await b_dev.recv() == pkt
            back = bytes(IPv6(src="fd00::2", dst="fd00::1") / UDP() / b"y")
            b_dev.send(back)
            assert await a_dev.recv() == back
            # garbage: foreign sources, then random bytes and truncated packets from the peer
            foreign.sendto(pkt, ("127.0.0.1", pb))
            spoof.sendto(pkt, ("127.0.0.1", pb))
            for junk in (os.urandom(3), b"", pkt[:30], b"\x45" + b"\xff" * 50,
                         b"\x60" + bytes(38), b"\x70" * 60):
                a_dev.send(junk)
            await until(lambda: b.counters["rx_foreign"] == 2 and b.counters["malformed"] == 6)
            many = [bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(dport=i)) for i in range(200)]
            for p in many:
                a_dev.send(p)
            got = [await b_dev.recv() for _ in many]
            assert got == many
        await b_dev.expect_nothing(0.01)
    finally:
        foreign.close()
        spoof.close()
        a_dev.close()
        b_dev.close()
    assert a.counters["tun_rx"] == 1 + 6 + 200 and a.counters["udp_tx"] == 1 + 6 + 200
    assert b.counters["udp_rx"] == 1 + 8 + 200 and b.counters["tun_tx"] == 1 + 200
    assert b.counters["malformed"] == 6 and a.counters["udp_rx"] == 1


async def test_udp_tunnel_vnet_side() -> None:
    a_dev, b_dev = FakeDevice(vnet_hdr=True), FakeDevice()
    pa, pb = free_udp_port(), free_udp_port()
    a = UdpTunnel(context(a_dev, {"local": f"127.0.0.1:{pa}", "remote": f"127.0.0.1:{pb}"}))
    b = UdpTunnel(context(b_dev, {"local": f"127.0.0.1:{pb}", "remote": f"127.0.0.1:{pa}"}))
    try:
        async with running(a), running(b):
            await until(lambda: a._sock is not None and b._sock is not None)
            pkt = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP() / b"z")
            a_dev.send(P.add_vnet_hdr(pkt))
            assert await b_dev.recv() == pkt
            b_dev.send(pkt)
            assert await a_dev.recv() == P.add_vnet_hdr(pkt)
            # the wire is plain: a checksum left to "hardware" is completed on the way out
            partial = bytearray(pkt)  # the field holds the pseudo-header sum, as a tun gives it
            words = struct.unpack("!4H", pkt[12:20])
            pseudo = sum(words) + 17 + len(pkt) - 20
            pseudo = (pseudo & 0xFFFF) + (pseudo >> 16)
            partial[26:28] = struct.pack("!H", (pseudo & 0xFFFF) + (pseudo >> 16))
            a_dev.send(struct.pack("<BBHHHH", 1, 0, 0, 0, 20, 6) + bytes(partial))
            assert await b_dev.recv() == pkt
            # a header that claims TCPv4 GSO for a UDP packet cannot be cut: dropped, counted
            a_dev.send(struct.pack("<BBHHHH", 1, 1, 40, 1448, 20, 16) + pkt)
            await until(lambda: a.counters["dropped"] == 1)
            await b_dev.expect_nothing()
            assert b.counters["malformed"] == 0 and a.counters["gso_tx"] == 0
    finally:
        a_dev.close()
        b_dev.close()


async def test_udp_tunnel_bind_failure(dev: FakeDevice) -> None:
    tunnel = UdpTunnel(context(dev, {"local": "192.0.2.77:6000", "remote": "192.0.2.78:6000"}))
    with pytest.raises(KernelError, match="bind 192.0.2.77:6000"):
        await tunnel.run()


async def test_tunnel_socket_open_failure(dev: FakeDevice) -> None:
    async def refuse(family: int, type_: int, proto: int) -> socket.socket:
        raise PermissionError(1, "Operation not permitted")

    tunnel = IpipTunnel(context(dev, {"local": "10.0.0.1", "remote": "10.0.0.2"},
                                open_socket=refuse))
    with pytest.raises(KernelError, match="CAP_NET_RAW"):
        await tunnel.run()


# -- pcap -----------------------------------------------------------------------------------
async def test_pcap_program(tmp_path: Path) -> None:
    for framing, vnet, linktype in (("ip", False, 101), ("ether", True, 1)):
        dev = FakeDevice(framing, vnet_hdr=vnet)
        path = tmp_path / f"{framing}.pcap"
        if framing == "ip":
            pkts = [bytes(IP(dst="10.0.0.2") / ICMP(seq=i)) for i in range(5)]
        else:
            pkts = [bytes(Ether(src=HOST_MAC) / IP(dst="10.0.0.2") / UDP(dport=i))
                    for i in range(5)]
        program = PcapProgram(context(dev, {"path": str(path)}))
        try:
            async with running(program):
                for p in pkts:
                    dev.send(P.add_vnet_hdr(p) if vnet else p)
                await until(lambda: program.counters["packets"] == 5)  # noqa: B023
                assert [bytes(p) for p in rdpcap(str(path))] == pkts  # readable while running
        finally:
            dev.close()
        with PcapReader(str(path)) as reader:
            assert reader.linktype == linktype
            assert [bytes(p) for p in reader] == pkts


def test_pcap_writer(tmp_path: Path) -> None:
    path = tmp_path / "w.pcap"
    pkt = bytes(IP(dst="10.0.0.2") / UDP() / (b"q" * 100))
    with PcapWriter(path, 101, snaplen=64) as writer:
        writer.write(pkt, ts=1700000000.25)
        writer.write(memoryview(pkt))
    writer.close()  # twice is fine
    with pytest.raises(ValueError):
        writer.write(pkt)
    first, second = rdpcap(str(path))
    assert bytes(first) == pkt[:64] and first.wirelen == len(pkt)
    assert float(first.time) == pytest.approx(1700000000.25)
    assert bytes(second) == pkt[:64]


async def test_pcap_unwritable_path(dev: FakeDevice) -> None:
    program = PcapProgram(context(dev, {"path": "/nonexistent-dir/x.pcap"}))
    with pytest.raises(KernelError, match="nonexistent-dir"):
        await program.run()


# -- user code ---------------------------------------------------------------------------------
HANDLER = '''
from netvirt.packets import echo_reply_ip

async def echo(ctx):
    ctx.counters.setdefault("answered", 0)
    async for packet in ctx.port:
        reply = echo_reply_ip(packet)
        if reply is not None:
            await ctx.port.write(reply)
            ctx.counters["answered"] += 1

def not_async(ctx):
    return None
'''


async def test_user_program(tmp_path: Path, dev: FakeDevice) -> None:
    module = tmp_path / "handlers.py"
    module.write_text(HANDLER)
    program = UserProgram(context(dev, {"python": f"{module}:echo", "extra": 1}))
    assert program_class(program.ctx.params) is UserProgram
    async with running(program):
        dev.send(P.icmp_echo_request("10.0.0.1", "10.0.0.2", 1, 1))
        reply = P.parse_echo(await dev.recv())
        assert reply is not None and reply.type == 0
    assert program.counters["answered"] == 1


async def test_user_program_errors(tmp_path: Path, dev: FakeDevice) -> None:
    module = tmp_path / "handlers2.py"
    module.write_text(HANDLER)
    place = "nodes.n.interfaces.fake0.program.python"
    for target, message in ((f"{tmp_path}/missing.py:echo", "cannot import"),
                            ("netvirt_no_such_module:echo", "No module named"),
                            (f"{module}:nothing", "has no attribute"),
                            (f"{module}:not_async", "must be an async function")):
        program = UserProgram(context(dev, {"python": target}))
        with pytest.raises(ScenarioError, match=message) as info:
            await program.run()
        assert info.value.problems[0].path == place


async def test_stop_is_idempotent_and_reports_errors(dev: FakeDevice) -> None:
    sink = Sink(context(dev, {}))
    await sink.stop()  # never started
    sink.start()
    await asyncio.sleep(0)
    await sink.stop()
    await sink.stop()
    assert sink.error is None
    failing = UdpTunnel(context(dev, {"local": "192.0.2.77:6000", "remote": "192.0.2.78:6000"}))
    task = failing.start()
    await asyncio.wait({task})
    await failing.stop()
    assert isinstance(failing.error, KernelError)
