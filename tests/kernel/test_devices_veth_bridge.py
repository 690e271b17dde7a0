"""veth pairs and bridges on a real kernel (plus a tap port on a bridge)."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from netvirt.devices import Bridge, Tap, Veth
from tests.conftest import unique
from tests.kernel.devices_support import (
    ETH_P_ARP,
    ETH_P_IP,
    ETH_P_TEST,
    NewNs,
    arp,
    ether,
    ethertype,
    icmp_echo,
    info_data,
    ip_link,
    ip_link_names,
    ipv4,
    nss,
    ping,
)

__all__ = ["nss"]

pytestmark = pytest.mark.root


async def test_veth_ends_created_in_two_namespaces(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    n1, n2 = unique(), unique()
    veth = Veth(n1, n2, netns=a, peer_netns=b, mtu=1400, mac="02:AA:00:00:00:01",
                peer_mac="02:aa:00:00:00:02", addresses=["10.1.0.1/24"],
                peer_addresses=["10.1.0.2/24", "fd00:1::2/64"])
    async with veth:
        la, lb = await ip_link(a, n1), await ip_link(b, n2)
        assert la is not None and lb is not None, "an end is not in its namespace"
        assert n2 not in await ip_link_names(a) and n1 not in await ip_link_names(b)
        assert (la["mtu"], lb["mtu"]) == (1400, 1400)
        assert (la["address"], lb["address"]) == ("02:aa:00:00:00:01", "02:aa:00:00:00:02")
        assert la["linkinfo"]["info_kind"] == lb["linkinfo"]["info_kind"] == "veth"
        assert "link_netnsid" in la  # the peer is in another namespace
        assert la.get("ifalias") == lb.get("ifalias") == "netvirt"  # the ownership tag
        assert "UP" in la["flags"] and "LOWER_UP" in lb["flags"]
        assert veth.ifindex == la["ifindex"] and veth.peer.ifindex == lb["ifindex"]
        assert (await veth.peer.info()).name == n2
        addrs = await b.nl(lambda nl: nl.addrs(veth.peer.ifindex))
        assert {x for _, x in addrs} >= {"10.1.0.2/24", "fd00:1::2/64"}
        assert await ping(a, "10.1.0.2", count=2) == 0
        assert await ping(b, "10.1.0.1") == 0
    assert await ip_link(a, n1) is None and await ip_link(b, n2) is None
    await veth.aclose()  # safe twice


async def test_veth_in_one_namespace_carries_frames(nss: NewNs) -> None:
    loop = asyncio.get_running_loop()
    a = await nss()
    n1, n2 = unique(), unique()
    async with Veth(n1, n2, netns=a, peer_netns=a, mtu=9000) as veth:
        i1, i2 = await veth.info(), await veth.peer.info()
        assert (i1.name, i2.name) == (n1, n2)
        assert i1.link == i2.index and i2.link == i1.index  # each names the other
        assert i1.mtu == i2.mtu == 9000 and i1.up and i2.up
        tx = await a.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        rx = await a.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        with tx, rx:
            tx.bind((n1, ETH_P_TEST))
            rx.bind((n2, ETH_P_TEST))
            frame = ether("ff:ff:ff:ff:ff:ff", i1.mac or "", ETH_P_TEST, b"x" * 8000)
            await loop.sock_sendall(tx, frame)
            got = await asyncio.wait_for(loop.sock_recv(rx, 65536), 5)
            assert got == frame  # a jumbo frame: the MTU is applied to both ends
    assert await ip_link_names(a) == {"lo"}  # deleting one end deleted both


async def test_veth_in_namespaces_given_by_name(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    n1, n2 = unique(), unique()
    # names, not Namespace objects: the Veth borrows (and closes) its own handles
    async with Veth(n1, n2, netns=a.name, peer_netns=b.name, addresses=["10.2.0.1/30"],
                    peer_addresses=["10.2.0.2/30"]) as veth:
        assert veth.netns is not a and not veth.netns.owned
        assert await ping(b, "10.2.0.1") == 0
    assert await ip_link(a, n1) is None and await ip_link(b, n2) is None


async def test_bridge_options_applied_and_changed(nss: NewNs) -> None:
    a = await nss()
    name = unique()
    async with Bridge(name, netns=a, stp=True, ageing_time=12, forward_delay=5) as br:
        link = await ip_link(a, name)
        assert link is not None and link["linkinfo"]["info_kind"] == "bridge"
        d = info_data(link)
        assert (d["stp_state"], d["ageing_time"], d["forward_delay"]) == (1, 1200, 500)
        assert link.get("ifalias") == "netvirt"
        await br.set_options(stp=False, ageing_time=30.5, forward_delay=2)
        d = info_data(await ip_link(a, name))  # type: ignore[arg-type]
        assert (d["stp_state"], d["ageing_time"], d["forward_delay"]) == (0, 3050, 200)
        await br.set_options(ageing_time=0)  # 0: a hub, nothing learned
        d = info_data(await ip_link(a, name))  # type: ignore[arg-type]
        assert (d["stp_state"], d["ageing_time"], d["forward_delay"]) == (0, 0, 200)
    assert await ip_link(a, name) is None


async def test_bridge_attach_and_detach_ports(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    brn, p1, p2, f1, f2 = (unique() for _ in range(5))
    async with Bridge(brn, netns=a) as br, \
            Veth(p1, f1, netns=a, peer_netns=b, master=brn) as v1, \
            Veth(p2, f2, netns=a, peer_netns=b) as v2:
        assert (await v1.info()).master == br.ifindex  # master= at creation
        assert (await v2.info()).master is None
        await br.attach(v2)
        assert (await v2.info()).master == br.ifindex
        assert (await ip_link(a, p2))["master"] == brn  # type: ignore[index]
        await br.detach(p1)  # by name
        assert (await v1.info()).master is None
        assert "master" not in (await ip_link(a, p1))  # type: ignore[operator]
        await br.attach(p1)
        await v2.set_master(None)
        assert (await v1.info()).master == br.ifindex and (await v2.info()).master is None
    # the bridge's ports were deleted with their veths; the bridge itself too
    assert await ip_link_names(a) == {"lo"}


async def read_until(dev: Tap, want: int, match, timeout: float = 3.0) -> bytes:  # type: ignore[no-untyped-def]
    """Read frames from ``dev`` until one of ethertype ``want`` satisfies ``match``."""
    async def loop() -> bytes:
        while True:
            frame = await dev.read()
            if ethertype(frame) == want and match(frame):
                return frame
    return await asyncio.wait_for(loop(), timeout)


async def test_tap_frame_crosses_bridge_and_mac_is_learned(nss: NewNs) -> None:
    hv, net = await nss(), await nss()
    brn, tapn, up_h, up_n = (unique() for _ in range(4))
    guest_mac, guest_ip, far_ip = "02:00:00:00:00:0b", "10.0.0.11", "10.0.0.254"
    async with Bridge(brn, netns=hv) as br, \
            Tap(tapn, netns=hv, master=brn, ipv6_linklocal=False) as tap, \
            Veth(up_h, up_n, netns=hv, peer_netns=net, master=brn,
                 peer_addresses=[f"{far_ip}/24"]) as veth:
        far_mac = (await veth.peer.info()).mac
        assert far_mac is not None
        # ARP: who has 10.0.0.254? tell 10.0.0.11 (written as if the guest sent it)
        req = ether("ff:ff:ff:ff:ff:ff", guest_mac, ETH_P_ARP,
                    arp(1, guest_mac, guest_ip, "00:00:00:00:00:00", far_ip))
        assert await tap.write(req)
        reply = await read_until(tap, ETH_P_ARP, lambda f: f[20:22] == b"\x00\x02")
        assert reply[0:6] == bytes.fromhex(guest_mac.replace(":", ""))
        assert reply[22:28].hex(":") == far_mac  # the far namespace answered
        # ICMP echo to the far namespace, answered back through the bridge
        echo = ether(far_mac, guest_mac, ETH_P_IP,
                     ipv4(guest_ip, far_ip, 1, icmp_echo(8, 0x4242, 7, b"netvirt!" * 7)))
        assert await tap.write(echo)
        pong = await read_until(tap, ETH_P_IP, lambda f: f[14 + 9] == 1 and f[14 + 20] == 0)
        assert struct.unpack("!HH", pong[14 + 24:14 + 28]) == (0x4242, 7)
        assert pong[14 + 28:] == b"netvirt!" * 7
        assert tap.port.tx_packets == 2 and tap.port.tx_dropped == 0
        # the bridge learned the guest on the tap port, the far end on the veth port
        assert await br.learned(guest_mac.upper()) == tapn
        assert await br.learned(far_mac) == up_h
        entries = [e for e in await br.fdb() if e.mac == guest_mac]
        assert len(entries) == 1 and not entries[0].local
        assert entries[0].port_index == tap.ifindex
        assert await br.learned("02:00:00:00:00:99") is None
    assert await ip_link_names(hv) == {"lo"}


async def test_bridge_with_address_reaches_far_namespace(nss: NewNs) -> None:
    hv, net = await nss(), await nss()
    brn, p, q = unique(), unique(), unique()
    async with Bridge(brn, netns=hv, addresses=["10.3.0.1/24"]), \
            Veth(p, q, netns=hv, peer_netns=net, master=brn, peer_addresses=["10.3.0.2/24"]):
        assert await ping(net, "10.3.0.1") == 0
