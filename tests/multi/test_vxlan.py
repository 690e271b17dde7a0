"""VXLAN devices on a real kernel: two "machines" (namespaces) on an underlay, one
node namespace each, a VXLAN pair between the nodes, ping across."""

from __future__ import annotations

import pytest

from netvirt.devices import Bridge, Veth
from netvirt.devices.vxlan import VXLAN_PORT, Vxlan, vxlan_data
from netvirt.errors import NameTakenError, UsageError
from netvirt.multi.split import overhead
from netvirt.netns import Namespace
from tests.conftest import unique
from tests.kernel.devices_support import NewNs, info_data, ip_link, nss, ping

__all__ = ["nss"]


@pytest.mark.root
async def test_vxlan_pair_carries_ping_between_nodes_of_two_machines(nss: NewNs) -> None:
    m1, m2, a, b = await nss(), await nss(), await nss(), await nss()
    async with Veth("ul0", "ul0", netns=m1, peer_netns=m2, addresses=["198.18.7.1/24"],
                    peer_addresses=["198.18.7.2/24"]):
        va = Vxlan("eth0", netns=a, underlay_netns=m1, vni=4242, local="198.18.7.1",
                   remote="198.18.7.2", mtu=1450, addresses=["10.7.0.1/24"], alias="netvirt:t")
        vb = Vxlan("eth0", netns=b, underlay_netns=m2, vni=4242, local="198.18.7.2",
                   remote="198.18.7.1", mtu=1450, addresses=["10.7.0.2/24"], alias="netvirt:t")
        async with va, vb:
            la = await ip_link(a, "eth0")
            assert la is not None and la["linkinfo"]["info_kind"] == "vxlan"
            d = info_data(la)
            assert (d["id"], d["remote"], d["local"], d["port"]) == (4242, "198.18.7.2", "198.18.7.1",
                                                                      VXLAN_PORT)
            assert la["mtu"] == 1450 and la.get("ifalias") == "netvirt:t"
            assert await ip_link(m1, "eth0") is None, "the device must never sit in the underlay"
            assert await ping(a, "10.7.0.2", count=3) == 0
            assert await ping(b, "10.7.0.1") == 0
        assert await ip_link(a, "eth0") is None and await ip_link(b, "eth0") is None


@pytest.mark.root
async def test_vxlan_over_an_ipv6_underlay(nss: NewNs) -> None:
    m1, m2, a, b = await nss(), await nss(), await nss(), await nss()
    async with Veth("ul0", "ul0", netns=m1, peer_netns=m2, addresses=["fd00:77::1/64"],
                    peer_addresses=["fd00:77::2/64"]):
        va = Vxlan("eth0", netns=a, underlay_netns=m1, vni=7, local="fd00:77::1", remote="fd00:77::2",
                   mtu=1430, addresses=["10.8.0.1/24"])  # 1500 - 70 bytes of VXLAN over IPv6
        vb = Vxlan("eth0", netns=b, underlay_netns=m2, vni=7, local="fd00:77::2", remote="fd00:77::1",
                   mtu=1430, addresses=["10.8.0.2/24"])
        async with va, vb:
            d = info_data(await ip_link(a, "eth0"))  # type: ignore[arg-type]
            assert (d["remote6"], d["local6"]) == ("fd00:77::2", "fd00:77::1")
            assert await ping(a, "10.8.0.2", count=2) == 0


@pytest.mark.root
async def test_vxlan_as_bridge_port_and_same_vni_refused_in_one_underlay(nss: NewNs) -> None:
    m1, a, b = await nss(), await nss(), await nss()
    async with Bridge("br0", netns=a) as br:
        v1 = Vxlan("vx1", netns=a, underlay_netns=m1, vni=77, local="198.18.8.1",
                   remote="198.18.8.2", master="br0")
        async with v1:
            assert (await ip_link(a, "vx1"))["master"] == "br0"  # type: ignore[index]
            assert br.ifindex
            dup = Vxlan("vx2", netns=b, underlay_netns=m1, vni=77, local="198.18.8.3",
                        remote="198.18.8.4")
            with pytest.raises(NameTakenError, match="VNI 77 on UDP port"):
                await dup.create()
            assert await ip_link(b, "vx2") is None


@pytest.mark.root
async def test_vxlan_goes_with_its_node_namespace() -> None:
    ul = await Namespace.create(unique())
    node = await Namespace.create(unique())
    try:
        vx = Vxlan("eth0", netns=node, underlay_netns=ul, vni=99, local="198.18.9.1", remote="198.18.9.2")
        await vx.create()
        vx.release()  # as a topology's teardown does: the namespace takes the device
    finally:
        await node.close()
        await ul.close()


def test_vxlan_data_and_overhead() -> None:
    import ipaddress

    data = vxlan_data(5, ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"), 4789)
    assert data[:8] == bytes([8, 0, 1, 0, 5, 0, 0, 0])  # IFLA_VXLAN_ID = 5
    assert bytes([0x12, 0xB5]) in data  # port 4789, network byte order
    assert overhead("192.0.2.1") == 50 and overhead("2001:db8::1") == 70
    with pytest.raises(UsageError, match="out of range"):
        vxlan_data(0, ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"))
    with pytest.raises(UsageError, match="different IP versions"):
        Vxlan("x", vni=1, local="192.0.2.1", remote="2001:db8::1")
