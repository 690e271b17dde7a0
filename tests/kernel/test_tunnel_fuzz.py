"""Fuzz the running tunnels: garbage on the underlay and on the device side
must be counted (``rx_foreign``, ``malformed``, ``dropped``) or forwarded,
never end the program; afterwards the tunnel still carries ping and TCP.

S4 (``udp-tunnel``) gets, at ``left``'s 172.16.1.11:6000:
  (a) datagrams from a foreign port of ``right`` (and, spoofed, from a foreign
      address and from the right address but another port): ``rx_foreign``;
  (b) datagrams spoofed from the peer, 172.16.1.12:6000, crafted on a raw
      socket in ``right`` (fragmented by hand when over the MTU): random bytes,
      empty payloads, truncated IPv4/IPv6 headers, length fields beyond the
      payload, bad versions, 60 KB payloads, and valid packets: every one is
      counted ``malformed`` or written to the tun (``tun_tx``/``dropped``);
      then datagrams in 0.1.0's offload format (a ``virtio_net_hdr`` with
      random flags, GSO types and sizes in front of the packet): all malformed;
  (c) on the device side of ``left``: IP packets routed into tun0 (random
      protocols, fragments, options) and arbitrary bytes sent into tun0 with an
      AF_PACKET socket (so the program reads 1-byte, truncated and non-IP
      packets, sometimes runs of one size that go out as one UDP GSO send):
      each is tunnelled or dropped, and ``right`` judges what arrives.
S4-ipip gets the same through its raw protocol-4 socket: payloads sent from
``b`` (the configured remote: they pass the source check and meet the
malformed checks), outer headers with options, a foreign source (the router).

Everything is sent in paced bursts, each followed by a wait until the program
has counted it, so no datagram is lost to a full socket buffer and the
counters add up: exactly where one datagram makes one packet, as a lower
bound where a GSO datagram may make several. One ``random.Random(seed)``; a
few thousand datagrams per tunnel, fuzzed in well under 5 s.
``test_udp_tunnel_bounds_packets_per_datagram`` guards the amplification
this fuzzing found (one spoofed datagram with gso_size 1 became 60000 packets).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import netvirt
from netvirt.packets import checksum
from tests.conftest import unique
from tests.kernel.helpers import SCENARIOS, assert_lab_gone

pytestmark = pytest.mark.root

SEED = 20240604
BURST = 32  # datagrams per burst (far below any socket buffer)
ETH_P_IP = 0x0800


# -- packet crafting (struct only) ---------------------------------------------
def ip4(src: str, dst: str, proto: int, payload: bytes, *, version: int = 4,
        options: bytes = b"", ihl: int | None = None, tot_len: int | None = None,
        ident: int = 0, frag: int = 0, ttl: int = 64) -> bytes:
    """An IPv4 packet with a correct header checksum (fields overridable for fuzzing)."""
    hlen = 20 + len(options)
    ihl = hlen // 4 if ihl is None else ihl
    total = hlen + len(payload) if tot_len is None else tot_len
    hdr = struct.pack("!BBHHHBBH4s4s", (version << 4) | (ihl & 15), 0, total & 0xFFFF, ident,
                      frag, ttl, proto, 0, socket.inet_aton(src), socket.inet_aton(dst)) + options
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def ip6(src: str, dst: str, nh: int, payload: bytes, *, plen: int | None = None) -> bytes:
    length = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, length & 0xFFFF, nh, 64,
                       socket.inet_pton(socket.AF_INET6, src),
                       socket.inet_pton(socket.AF_INET6, dst)) + payload


def udp4_fragments(src: tuple[str, int], dst: tuple[str, int], payload: bytes,
                   ident: int, mtu: int = 1500) -> list[bytes]:
    """The IPv4 packet(s) of one UDP datagram (checksum 0: none), fragmented to ``mtu``."""
    segment = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    step = (mtu - 20) // 8 * 8
    out = []
    for off in range(0, len(segment), step):
        more = off + step < len(segment)
        out.append(ip4(src[0], dst[0], socket.IPPROTO_UDP, segment[off:off + step],
                       ident=ident, frag=(0x2000 if more else 0) | off // 8))
    return out


def must_be_malformed(p: bytes, *, v4_only: bool = False) -> bool:
    """True for what no IP packet can be: shorter than its header, a length field
    beyond the bytes, a version other than 4 and 6 (and 6 where only 4 fits)."""
    if len(p) < 20:
        return True
    version = p[0] >> 4
    if version == 4:
        ihl, total = (p[0] & 15) * 4, p[2] << 8 | p[3]
        return not 20 <= ihl <= total <= len(p)
    if version == 6 and not v4_only:
        return len(p) < 40 or 40 + (p[4] << 8 | p[5]) > len(p)
    return True


def fuzz_payloads(rng: random.Random, n: int, src: str, dst: str,
                  *, huge: int = 4) -> Iterator[tuple[bytes, bool]]:
    """``n`` tunnel payloads: (bytes, constructed valid IPv4 from ``src`` to ``dst``)."""
    def rand(lo: int, hi: int) -> bytes:
        return rng.randbytes(rng.randint(lo, hi))

    def valid(size_hi: int = 1400) -> bytes:
        return ip4(src, dst, rng.randrange(256), rand(0, size_hi), ident=rng.randrange(65536))

    makers: list[Callable[[], tuple[bytes, bool]]] = [
        lambda: (b"", False),
        lambda: (rand(1, 19), False),
        lambda: (rand(20, 1500), False),                          # anything
        lambda: (bytes([0x45]) + rand(0, 18), False),             # truncated IPv4 header
        lambda: (bytes([0x60]) + rand(19, 38), False),            # truncated IPv6 header
        lambda: (ip4(src, dst, 17, rand(0, 200), tot_len=rng.randint(260, 65535)), False),
        lambda: (ip4(src, dst, 6, rand(0, 200), ihl=rng.randint(0, 4)), False),
        lambda: (ip4(src, dst, 1, rand(0, 40), ihl=15), False),   # header longer than packet
        lambda: (ip4(src, dst, 17, rand(0, 200), version=rng.choice([0, 1, 2, 3, 5, 7, 9, 15])),
                 False),
        lambda: (ip6("fd00::2", "fd00::1", 17, rand(0, 200), plen=rng.randint(201, 65535)),
                 False),
        lambda: (ip6("fd00::2", "fd00::1", rng.randrange(256), rand(0, 200)), False),
        lambda: (valid() + rand(0, 30), True),                    # trailing bytes are allowed
        lambda: (valid(), True),
        lambda: (ip4(src, dst, rng.randrange(256), rand(0, 1000), ident=rng.randrange(1, 65536),
                     frag=rng.choice([0x2000, 0x2000 | rng.randrange(1, 8192),
                                      rng.randrange(1, 8192)])), True),  # fragments
    ]
    for _ in range(n):
        yield rng.choice(makers)()
    for _ in range(huge):  # 60 KB: random, valid, and a length field beyond the bytes
        yield rng.randbytes(60000), False
        yield ip4(src, dst, rng.randrange(256), rng.randbytes(60000 - 20)), True
        yield ip4(src, dst, 17, rng.randbytes(60000 - 20), tot_len=65535), False


def vnet_datagrams(rng: random.Random, n: int, src: str, dst: str) -> list[bytes]:
    """Payloads that start like a tun's ``virtio_net_hdr`` (the udp-tunnel's offload
    wire format): random flags, GSO types and sizes (>= 8) and checksum offsets in
    front of valid, truncated or inconsistent IPv4/IPv6 TCP and UDP packets."""
    out = []
    for _ in range(n):
        proto = rng.choice([6, 17, rng.randrange(256)])
        body = rng.randbytes(rng.randint(0, 1400))
        if proto == 6:
            l4 = struct.pack("!HHIIBBHHH", rng.randrange(65536), 5000, rng.randrange(2**32), 0,
                             rng.choice([0x50, 0x80, 0xF0, 0x00]), rng.randrange(256), 65535,
                             0, 0) + body
        elif proto == 17:
            l4 = struct.pack("!HHHH", rng.randrange(65536), 5000, 8 + len(body), 0) + body
        else:
            l4 = body
        inner = (ip4(src, dst, proto, l4) if rng.random() < 0.7
                 else ip6("fd00::2", "fd00::1", proto, l4))
        if rng.random() < 0.2:
            inner = inner[:rng.randrange(len(inner) + 1)]
        out.append(struct.pack(
            "<BBHHHH", rng.choice([0, 1, 2, 3, 4, 15]),
            rng.choice([0, 1, 3, 4, 5, 0x81, 0x84, 2, 0x7F, 0xFF]), rng.randrange(65536),
            rng.choice([0, 8, 88, 536, 1400, 65535, rng.randrange(8, 65536)]),
            rng.choice([0, 20, 40, rng.randrange(65536)]),
            rng.choice([0, 6, 16, rng.randrange(65536)])) + inner)
    return out


# -- running bursts ------------------------------------------------------------
@dataclasses.dataclass
class Counts:
    """Counter deltas of one program since ``mark()``."""

    program: Any
    base: dict[str, int] = dataclasses.field(default_factory=dict)

    def mark(self) -> None:
        self.base = dict(self.program.counters)

    def __getitem__(self, name: str) -> int:
        return int(self.program.counters[name]) - self.base.get(name, 0)


async def until(cond: Callable[[], bool], what: Callable[[], str], timeout: float = 5.0,
                programs: tuple[Any, ...] = ()) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert_alive(*programs)
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting: {what()}; "
                                 f"{[dict(p.counters) for p in programs]}")
        await asyncio.sleep(0.001)


async def quiet(programs: list[Any], span: float = 0.05) -> None:
    """Wait until no counter of ``programs`` moved for ``span`` seconds."""
    last = [dict(p.counters) for p in programs]
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        await asyncio.sleep(span)
        now = [dict(p.counters) for p in programs]
        if now == last:
            return
        last = now


async def send(sock: socket.socket, data: bytes, dst: Any) -> None:
    while True:
        try:
            sock.sendto(data, dst)
            return
        except BlockingIOError:
            await asyncio.sleep(0.001)


async def send_all(raw: socket.socket, packets: list[bytes], dst: str) -> None:
    for packet in packets:
        await send(raw, packet, (dst, 0))


async def paced(items: list[Any], send_one: Callable[[Any], Any], counted: Callable[[], int],
                label: str, *programs: Any) -> None:
    """Send ``items`` in bursts; after each, wait until ``counted()`` caught up
    (failing at once if one of ``programs`` died)."""
    start = counted()
    for i in range(0, len(items), BURST):
        burst = items[i:i + BURST]
        for item in burst:
            await send_one(item)
        want = start + i + len(burst)

        def arrived(want: int = want) -> bool:
            return counted() >= want

        def status(want: int = want) -> str:
            return f"{label}: {counted()} of {want} arrived"

        await until(arrived, status, programs=programs)


def assert_alive(*programs: Any) -> None:
    for prog in programs:
        assert prog.error is None, f"{prog!r} died: {prog.error!r}"
        assert prog.running, f"{prog!r} is not running"


async def assert_still_forwards(topo: Any, src: str, dst: str) -> None:
    replies, _ = await netvirt.ping(topo, src, dst, count=3)
    assert replies == 3, f"ping {src} -> {dst} after the fuzz: {replies}/3"
    steps = tuple(s for s in topo.scenario.steps if s.kind != "counters")  # fuzz moved those
    results = await netvirt.run_steps(topo, steps)
    assert results and all(r.ok for r in results), [(r.title, r.detail) for r in results]


async def fuzz_device_side(topo: Any, node: str, ifname: str, dst: str, far: Any,
                           rng: random.Random, n: int, *, v4_only: bool) -> None:
    """Garbage into the program's device side: routed IP packets and raw bytes.

    Each packet the near program reads is tunnelled or dropped (counted); the far
    program judges every datagram that arrives (counted malformed or forwarded).
    """
    near = Counts(topo.program(node, ifname))
    far = Counts(far)
    near.mark()
    far.mark()
    raw = await topo.node(node).socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    pkt = await topo.node(node).socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
    try:
        pkt.bind((ifname, 0))
        src = topo.scenario.nodes[node].interfaces[ifname].addresses[0].ip
        items: list[tuple[str, bytes]] = []
        while len(items) < n:
            if rng.random() < 0.5:  # routed by the kernel: random protocols, fragments, options
                options = b"\x01" * rng.choice([0, 0, 4, 8, 40])
                frag = rng.choice([0, 0, 0x2000, 0x2000 | rng.randrange(1, 99),
                                   rng.randrange(1, 99)])
                items.append(("ip", ip4(str(src), dst, rng.randrange(256),
                                        rng.randbytes(rng.randint(0, 1400)), options=options,
                                        ident=rng.randrange(1, 65536), frag=frag)))
                continue
            # straight into the tun's queue, read as is (a packet socket sends >= 1 byte);
            # sometimes a run of one size, which a tunnel may send as one batch (UDP GSO)
            size = rng.choice([1, rng.randint(1, 40), rng.randint(41, 1500)])
            for _ in range(rng.choice([1, 1, 1, rng.randint(2, 40)])):
                data = bytearray(rng.randbytes(size))
                if rng.random() < 0.5:
                    data[0] = rng.choice([0x45, 0x46, 0x4F, 0x60, 0x00, 0xF0])
                items.append(("bytes", bytes(data)))

        async def one(item: tuple[str, bytes]) -> None:
            kind, data = item
            if kind == "ip":
                await send(raw, data, (dst, 0))
            else:
                await send(pkt, data, (ifname, ETH_P_IP))

        await paced(items, one, lambda: near["tun_rx"], f"{node}:{ifname} tun_rx",
                    near.program, far.program)
        await quiet([near.program, far.program])
        sent_wire, wire_rx = f"{near.program.wire}_tx", f"{far.program.wire}_rx"
        assert near["tun_rx"] >= n
        # one wire packet per device packet, unless the tunnel cut one into several
        if near["segmented"] == 0:
            assert near[sent_wire] + near["dropped"] == near["tun_rx"], near.program.counters
        assert near[sent_wire] + near["dropped"] >= near["tun_rx"], near.program.counters
        assert far[wire_rx] == near[sent_wire], (near.program.counters, far.program.counters)
        assert far["rx_foreign"] == 0
        # each datagram is malformed or written (a vnet-headed one maybe as several packets)
        assert far["malformed"] + far["tun_tx"] + far["dropped"] >= far[wire_rx]
        bad = sum(1 for kind, data in items if kind == "bytes"
                  and must_be_malformed(data, v4_only=v4_only))
        assert far["malformed"] + near["dropped"] >= bad
        assert_alive(near.program, far.program)
    finally:
        raw.close()
        pkt.close()


# -- S4: udp-tunnel --------------------------------------------------------------
async def test_udp_tunnel_survives_fuzzing() -> None:
    rng = random.Random(SEED)
    scenario = netvirt.load(SCENARIOS / "s4-udp-tunnel.yaml").with_name(unique())
    t0 = time.monotonic()
    async with netvirt.Topology(scenario) as topo:
        left, right = topo.program("left", "tun0"), topo.program("right", "tun0")
        counts = Counts(left)
        local = ("172.16.1.11", 6000)
        right_node = topo.node("right")
        udp = await right_node.socket(socket.AF_INET, socket.SOCK_DGRAM)
        raw = await right_node.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        try:
            udp.bind(("172.16.1.12", 0))
            fuzz_t0 = time.monotonic()

            # (a) foreign: another port of right, and spoofed foreign address / port
            counts.mark()
            foreign = [p for p, _ in fuzz_payloads(rng, 500, "192.168.1.12", "192.168.1.11")]
            await paced(foreign, lambda p: send(udp, p, local), lambda: counts["rx_foreign"],
                        "foreign port", left, right)
            spoofs = [udp4_fragments(rng.choice([("172.16.1.12", rng.choice([6001, 5999, 1])),
                                                 ("172.16.1.99", 6000)]),
                                     local, payload, rng.randrange(1, 65536))
                      for payload in foreign[:300]]
            await paced(spoofs, lambda fragments: send_all(raw, fragments, local[0]),
                        lambda: counts["rx_foreign"], "spoofed foreign", left, right)
            assert counts["rx_foreign"] == counts["udp_rx"] == len(foreign) + len(spoofs)
            assert counts["malformed"] == counts["tun_tx"] == 0
            assert_alive(left, right)

            # (b) spoofed from the peer itself: judged by the malformed checks
            counts.mark()
            items = list(fuzz_payloads(rng, 2000, "192.168.1.12", "192.168.1.11"))
            datagrams = [udp4_fragments(("172.16.1.12", 6000), local, p, rng.randrange(1, 65536))
                         for p, _ in items]
            await paced(datagrams, lambda fragments: send_all(raw, fragments, local[0]),
                        lambda: counts["udp_rx"], "spoofed from the peer", left, right)
            assert counts["udp_rx"] == len(items) and counts["rx_foreign"] == 0
            bad = sum(1 for p, _ in items if must_be_malformed(p))
            good = sum(1 for _, ok in items if ok)
            assert bad > 500 and good > 200
            assert counts["malformed"] >= bad
            assert counts["tun_tx"] + counts["dropped"] >= good
            assert counts["malformed"] + counts["tun_tx"] + counts["dropped"] == len(items)
            assert_alive(left, right)

            # (b') from the peer, in 0.1.0's non-standard offload format (a vnet header
            # first): no longer a wire format, every one is malformed
            counts.mark()
            vnets = vnet_datagrams(rng, 400, "192.168.1.12", "192.168.1.11")
            await paced([udp4_fragments(("172.16.1.12", 6000), local, d, rng.randrange(1, 65536))
                         for d in vnets],
                        lambda fragments: send_all(raw, fragments, local[0]),
                        lambda: counts["udp_rx"], "vnet-headed from the peer", left, right)
            assert counts["udp_rx"] == len(vnets) and counts["rx_foreign"] == 0
            assert counts["malformed"] == len(vnets) and counts["tun_tx"] == 0
            assert_alive(left, right)

            # (c) the device side of left, judged by right
            await fuzz_device_side(topo, "left", "tun0", "192.168.1.12", right, rng, 1000,
                                   v4_only=False)
            assert time.monotonic() - fuzz_t0 < 5, "fuzzing took too long"
        finally:
            udp.close()
            raw.close()
        await assert_still_forwards(topo, "left", "192.168.1.12")
        assert_alive(left, right)
    assert_lab_gone(scenario.name)
    assert time.monotonic() - t0 < 15


async def test_udp_tunnel_bounds_packets_per_datagram() -> None:
    """One datagram never becomes more packets than a 64 KiB TCP super-packet at the
    smallest MSS (48 bytes) could: about 1400."""
    scenario = netvirt.load(SCENARIOS / "s4-udp-tunnel.yaml").with_name(unique())
    async with netvirt.Topology(scenario) as topo:
        left = topo.program("left", "tun0")
        counts = Counts(left)
        counts.mark()
        raw = await topo.node("right").socket(socket.AF_INET, socket.SOCK_RAW,
                                              socket.IPPROTO_RAW)
        try:
            payload = bytes(60000)
            inner = ip4("192.168.1.12", "192.168.1.11", 17,
                        struct.pack("!HHHH", 1, 9, 8 + len(payload), 0) + payload)
            vnet = struct.pack("<BBHHHH", 0, 5, 28, 1, 0, 0)  # UDP_L4, gso_size 1
            for fragment in udp4_fragments(("172.16.1.12", 6000), ("172.16.1.11", 6000),
                                           vnet + inner, 777):
                await send(raw, fragment, ("172.16.1.11", 0))
            await until(lambda: counts["udp_rx"] == 1, lambda: "the datagram never arrived",
                        programs=(left,))
        finally:
            raw.close()
        assert_alive(left)
        assert counts["tun_tx"] <= 1400, f"one datagram became {counts['tun_tx']} packets"


# -- S4-ipip: ipip-tunnel --------------------------------------------------------
async def test_ipip_tunnel_survives_fuzzing() -> None:
    rng = random.Random(SEED + 1)
    scenario = netvirt.load(SCENARIOS / "s4-ipip-tunnel.yaml").with_name(unique())
    t0 = time.monotonic()
    async with netvirt.Topology(scenario) as topo:
        a, b = topo.program("a", "tun0"), topo.program("b", "tun0")
        counts = Counts(a)
        target = ("198.51.100.92", 0)
        ipip_b = await topo.node("b").socket(socket.AF_INET, socket.SOCK_RAW, 4)
        raw_b = await topo.node("b").socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        ipip_router = await topo.node("router").socket(socket.AF_INET, socket.SOCK_RAW, 4)
        try:
            fuzz_t0 = time.monotonic()
            # a foreign source: the router
            counts.mark()
            foreign = [p for p, _ in fuzz_payloads(rng, 300, "10.0.0.22", "10.0.0.12", huge=1)]
            await paced(foreign, lambda p: send(ipip_router, p, target),
                        lambda: counts["rx_foreign"], "ipip from the router", a, b)
            assert counts["rx_foreign"] == counts["ipip_rx"] == len(foreign)
            assert counts["malformed"] == counts["tun_tx"] == 0

            # from b, the configured remote: judged by the malformed checks
            counts.mark()
            items = list(fuzz_payloads(rng, 2000, "10.0.0.22", "10.0.0.12"))
            await paced([p for p, _ in items], lambda p: send(ipip_b, p, target),
                        lambda: counts["ipip_rx"], "ipip from b", a, b)
            assert counts["ipip_rx"] == len(items) and counts["rx_foreign"] == 0
            bad = sum(1 for p, _ in items if must_be_malformed(p, v4_only=True))
            good = sum(1 for _, ok in items if ok)
            assert bad > 500 and good > 200
            assert counts["malformed"] >= bad
            assert counts["tun_tx"] + counts["dropped"] >= good
            assert counts["malformed"] + counts["tun_tx"] + counts["dropped"] == len(items)

            # vnet-headed payloads (the udp-tunnel's offload format): not IPv4, malformed
            counts.mark()
            vnets = vnet_datagrams(rng, 200, "10.0.0.22", "10.0.0.12")
            await paced(vnets, lambda p: send(ipip_b, p, target), lambda: counts["ipip_rx"],
                        "vnet-headed from b", a, b)
            assert counts["malformed"] == counts["ipip_rx"] == len(vnets)

            # outer headers with options (NOPs) around valid inner packets: forwarded
            counts.mark()
            outer = [ip4("203.0.113.91", "198.51.100.92", 4,
                         ip4("10.0.0.22", "10.0.0.12", rng.randrange(256),
                             rng.randbytes(rng.randint(0, 1000))),
                         options=b"\x01" * rng.choice([4, 8, 20, 40]),
                         ident=rng.randrange(1, 65536)) for _ in range(200)]
            await paced(outer, lambda p: send(raw_b, p, target), lambda: counts["ipip_rx"],
                        "ipip with outer options", a, b)
            assert counts["tun_tx"] + counts["dropped"] == 200 and counts["malformed"] == 0
            assert_alive(a, b)

            await fuzz_device_side(topo, "a", "tun0", "10.0.0.22", b, rng, 1000, v4_only=True)
            assert time.monotonic() - fuzz_t0 < 5, "fuzzing took too long"
        finally:
            ipip_b.close()
            raw_b.close()
            ipip_router.close()
        await assert_still_forwards(topo, "a", "10.0.0.22")
        assert_alive(a, b)
    assert_lab_gone(scenario.name)
    assert time.monotonic() - t0 < 15
