"""macvtap on a real kernel: /dev/tapN, a program answering on the fd, vnet headers."""

from __future__ import annotations

import asyncio
import os
import socket
import struct

import pytest

from netvirt.devices import Macvtap, Veth
from netvirt.devices._tuntap import IFF_VNET_HDR, get_flags
from netvirt.netns import Namespace
from netvirt.packetio import VNET_HDR_LEN
from tests.conftest import unique
from tests.kernel.devices_support import (
    ETH_P_TEST,
    NewNs,
    answer_forever,
    ether,
    ethertype,
    info_data,
    ip_link,
    nsname,
    nss,
    ping,
    sh,
)

__all__ = ["nss"]

pytestmark = pytest.mark.root


def parent_and_lan(host: Namespace, lan: Namespace) -> Veth:
    return Veth(unique(), unique(), netns=host, peer_netns=lan, peer_addresses=["10.8.0.1/24"])


async def test_macvtap_chardev_matches_and_program_answers_ping(nss: NewNs) -> None:
    host, lan = await nss(), await nss()
    async with parent_and_lan(host, lan) as nic:
        name = unique()
        mvt = await Macvtap(name, parent=nic.name, netns=host, mode="bridge").create()
        try:
            chardev = mvt.chardev
            assert chardev == f"/dev/tap{mvt.ifindex}" and os.path.exists(chardev)
            link = await ip_link(host, name)
            assert link is not None and link["ifindex"] == mvt.ifindex
            assert link["linkinfo"]["info_kind"] == "macvtap"
            assert info_data(link)["mode"] == "bridge"
            # the node is ours: same major:minor as the device's own sysfs entry
            rc, out, _ = await sh("ip", "netns", "exec", nsname(host), "cat",
                                  f"/sys/class/net/{name}/tap{mvt.ifindex}/dev")
            rdev = os.stat(chardev).st_rdev
            assert (rc, out.strip()) == (0, f"{os.major(rdev)}:{os.minor(rdev)}")
            assert not get_flags(mvt.fileno()) & IFF_VNET_HDR  # plain frames by default
            mac = (await mvt.info()).mac
            assert mac is not None
            guest = asyncio.create_task(answer_forever(mvt, "10.8.0.2", mac))
            try:
                assert await ping(lan, "10.8.0.2", count=2) == 0
                rc, out, _ = await sh("ip", "-n", nsname(lan), "neigh", "show", "10.8.0.2")
                assert mac in out  # ARP was answered with the macvtap's MAC
            finally:
                guest.cancel()
                await asyncio.gather(guest, return_exceptions=True)
            assert mvt.port.tx_packets >= 3  # an ARP reply and two echo replies
        finally:
            await mvt.aclose()
        assert not os.path.exists(chardev)
        assert await ip_link(host, name) is None


async def test_macvtap_vnet_hdr_reads_are_10_bytes_longer(nss: NewNs) -> None:
    loop = asyncio.get_running_loop()
    host, lan = await nss(), await nss()
    async with parent_and_lan(host, lan) as nic, \
            Macvtap(unique(), parent=nic.name, netns=host) as plain, \
            Macvtap(unique(), parent=nic.name, netns=host, vnet_hdr=True) as vnet:
        assert plain.chardev != vnet.chardev
        assert get_flags(vnet.fileno()) & IFF_VNET_HDR
        # one broadcast frame sent on the LAN reaches both macvtaps
        payload = b"netvirt-vnet-check" + bytes(40)
        sender = await lan.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_TEST))
        with sender:
            sender.bind((nic.peer.name, ETH_P_TEST))
            frame = ether("ff:ff:ff:ff:ff:ff", "02:dd:00:00:00:01", ETH_P_TEST, payload)
            await loop.sock_sendall(sender, frame)

        async def first_test_frame(dev: Macvtap, skip: int) -> bytes:
            while True:
                raw = await dev.read()
                if ethertype(raw[skip:]) == ETH_P_TEST:
                    return raw

        p = await asyncio.wait_for(first_test_frame(plain, 0), 3)
        v = await asyncio.wait_for(first_test_frame(vnet, VNET_HDR_LEN), 3)
        assert p == frame
        assert len(v) == len(p) + VNET_HDR_LEN and v[VNET_HDR_LEN:] == p
        _flags, gso_type = struct.unpack("BB", v[:2])
        assert gso_type == 0  # a plain frame: no GSO


async def test_macvtap_second_queue_and_moved_from_parent_namespace(nss: NewNs) -> None:
    host, lan, guest_ns = await nss(), await nss(), await nss()
    async with parent_and_lan(host, lan) as nic:
        name = unique()
        # parent in `host`, the macvtap itself in another namespace: /dev/tapN still ours
        async with Macvtap(name, parent=nic.name, parent_netns=host, netns=guest_ns) as mvt:
            link = await ip_link(guest_ns, name)
            assert link is not None and link["ifindex"] == mvt.ifindex
            assert os.path.exists(mvt.chardev)
            q2 = mvt.add_queue()
            assert len(mvt.queues) == 2 and q2.fileno() != mvt.fileno()
            mac = (await mvt.info()).mac
            guest = asyncio.create_task(answer_forever(mvt, "10.8.0.3", mac))  # type: ignore[arg-type]
            guest2 = asyncio.create_task(answer_forever(q2, "10.8.0.3", mac))  # type: ignore[arg-type]
            try:
                assert await ping(lan, "10.8.0.3") == 0
            finally:
                for t in (guest, guest2):
                    t.cancel()
                await asyncio.gather(guest, guest2, return_exceptions=True)
            chardev = mvt.chardev
        assert not os.path.exists(chardev) and q2.closed
