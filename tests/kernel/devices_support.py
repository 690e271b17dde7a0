"""Helpers shared by the real-kernel device tests (this module holds no tests).

- ``nss``: a fixture that creates ``nvt*`` namespaces and closes them at teardown;
- ``sh``/``ip_link``/``ping``: iproute2 and iputils as async subprocesses, used as an
  independent witness of what netvirt did (never to configure anything);
- struct-only packet builders and an ARP/ICMP answerer for tun, tap and macvtap
  programs (cheap and exact; scapy would cost 0.7 s of import per session).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from netvirt.netns import Namespace
from tests.conftest import unique

ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ETH_P_TEST = 0x88B5  # IEEE local experimental ethertype

#: the type of the ``nss`` fixture: ``await nss()`` gives a new namespace
NewNs = Callable[[], Awaitable[Namespace]]


# -- namespaces ------------------------------------------------------------------
@pytest.fixture
async def nss() -> AsyncIterator[NewNs]:
    """``await nss()`` creates a fresh ``nvt*`` namespace, closed after the test."""
    made: list[Namespace] = []

    async def make() -> Namespace:
        ns = await Namespace.create(unique())
        made.append(ns)
        return ns

    yield make
    for ns in reversed(made):
        await ns.close()


# -- witnesses: iproute2 / iputils -------------------------------------------------
Where = Namespace | str


def nsname(where: Where) -> str:
    name = where if isinstance(where, str) else where.name
    assert name, "these witnesses look into named namespaces only"
    return name


async def sh(*argv: str, timeout: float = 10) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def ip_link(netns: Where, dev: str) -> dict[str, Any] | None:
    """``ip -n NETNS -d -j link show dev DEV`` as a dict, or None if DEV is missing."""
    rc, out, _ = await sh("ip", "-n", nsname(netns), "-d", "-j", "link", "show", "dev", dev)
    if rc != 0:
        return None
    return json.loads(out)[0]  # type: ignore[no-any-return]


async def ip_link_names(netns: Where) -> set[str]:
    rc, out, err = await sh("ip", "-n", nsname(netns), "-j", "link", "show")
    assert rc == 0, err
    return {link["ifname"] for link in json.loads(out)}


async def ping(netns: Where, dst: str, *, count: int = 1, wait: float = 1.0,
               interval: float = 0.2) -> int:
    """Exit status of ``ping`` run inside ``netns`` (0: every echo answered)."""
    rc, _, _ = await sh("ip", "netns", "exec", nsname(netns), "ping", "-n", "-q", "-c", str(count),
                        "-i", str(interval), "-W", str(wait), dst, timeout=count * wait + 10)
    return rc


def info_data(link: dict[str, Any]) -> dict[str, Any]:
    return link["linkinfo"]["info_data"]  # type: ignore[no-any-return]


# -- packets (struct only) -----------------------------------------------------------
def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def ipv4(src: str, dst: str, proto: int, payload: bytes, ttl: int = 64) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, ttl, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + payload


def icmp_echo(type_: int, ident: int, seq: int, payload: bytes) -> bytes:
    msg = struct.pack("!BBHHH", type_, 0, 0, ident, seq) + payload
    return msg[:2] + struct.pack("!H", checksum(msg)) + msg[4:]


def parse_icmp_echo_request(pkt: bytes) -> tuple[str, str, int, int, bytes] | None:
    """(src, dst, id, seq, payload) of an IPv4 ICMP echo request, else None."""
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 1:
        return None
    ihl = (pkt[0] & 0x0F) * 4
    type_, _, _, ident, seq = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
    if type_ != 8:
        return None
    return (socket.inet_ntoa(pkt[12:16]), socket.inet_ntoa(pkt[16:20]), ident, seq,
            pkt[ihl + 8:])


def echo_reply_for(pkt: bytes) -> bytes | None:
    """The IPv4 echo reply answering ``pkt``, or None if ``pkt`` is no echo request."""
    req = parse_icmp_echo_request(pkt)
    if req is None:
        return None
    src, dst, ident, seq, payload = req
    return ipv4(dst, src, 1, icmp_echo(0, ident, seq, payload))


def ether(dst: str, src: str, ethertype: int, payload: bytes) -> bytes:
    return mac_bytes(dst) + mac_bytes(src) + struct.pack("!H", ethertype) + payload


def arp(op: int, sha: str, spa: str, tha: str, tpa: str) -> bytes:
    return struct.pack("!HHBBH6s4s6s4s", 1, ETH_P_IP, 6, 4, op, mac_bytes(sha),
                       socket.inet_aton(spa), mac_bytes(tha), socket.inet_aton(tpa))


def ethertype(frame: bytes) -> int:
    return int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else -1


def answer_frame(frame: bytes, my_ip: str, my_mac: str) -> bytes | None:
    """What a guest owning (my_ip, my_mac) answers to ``frame``: ARP reply or echo reply."""
    src_mac = frame[6:12].hex(":")
    et = ethertype(frame)
    if et == ETH_P_ARP and len(frame) >= 42:
        _, _, _, _, op, sha, spa, _, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
        if op == 1 and socket.inet_ntoa(tpa) == my_ip:
            return ether(src_mac, my_mac, ETH_P_ARP,
                         arp(2, my_mac, my_ip, sha.hex(":"), socket.inet_ntoa(spa)))
        return None
    if et == ETH_P_IP and frame[0:6] == mac_bytes(my_mac):
        reply = echo_reply_for(frame[14:])
        if reply is not None and socket.inet_ntoa(frame[14 + 16:14 + 20]) == my_ip:
            return ether(src_mac, my_mac, ETH_P_IP, reply)
    return None


async def answer_forever(dev: Any, my_ip: str, my_mac: str, *, skip: int = 0) -> None:
    """Play a guest on a tap/macvtap: answer ARP and ICMP echo until cancelled.

    ``skip`` bytes (a vnet header) are stripped from each read and a zero header of
    that length is prepended to each write.
    """
    async for raw in dev:
        reply = answer_frame(bytes(raw[skip:]), my_ip, my_mac)
        if reply is not None:
            await dev.write(bytes(skip) + reply)


def addr_in(net: str, host: int) -> str:
    return str(ipaddress.ip_network(net)[host])
