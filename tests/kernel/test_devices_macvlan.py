"""macvlan children of a parent in one namespace, placed into other namespaces."""

from __future__ import annotations

import asyncio

import pytest

from netvirt.devices import Macvlan, Veth
from netvirt.errors import UsageError
from netvirt.netns import Namespace
from tests.conftest import unique
from tests.kernel.devices_support import NewNs, info_data, ip_link, ip_link_names, nss, ping

__all__ = ["nss"]


def parent_and_lan(host: Namespace, lan: Namespace) -> Veth:
    """A veth standing for the host's NIC (in ``host``) and the LAN behind it (``lan``)."""
    return Veth(unique(), unique(), netns=host, peer_netns=lan, peer_addresses=["10.7.0.254/24"])


async def children_reachability(nss: NewNs, mode: str) -> tuple[int, int, int]:
    host, lan, a, b = await nss(), await nss(), await nss(), await nss()
    async with parent_and_lan(host, lan) as nic:
        c1, c2 = unique(), unique()
        async with Macvlan(c1, parent=nic.name, parent_netns=host, netns=a, mode=mode,
                           mac="02:cc:00:00:00:01", addresses=["10.7.0.1/24"]), \
                Macvlan(c2, parent=nic.name, parent_netns=host, netns=b, mode=mode,
                        addresses=["10.7.0.2/24"]) as m2:
            link = await ip_link(a, c1)
            assert link is not None, "the child is not in its namespace"
            assert info_data(link)["mode"] == mode
            assert link["address"] == "02:cc:00:00:00:01"
            assert "link_netnsid" in link  # its parent lives in another namespace
            assert link.get("ifalias") == "netvirt"
            assert (await m2.info()).name == c2
            assert await ip_link_names(host) == {"lo", nic.name}  # children left host
            to_lan, to_sibling, back = await asyncio.gather(
                ping(a, "10.7.0.254"), ping(a, "10.7.0.2", wait=0.5),
                ping(b, "10.7.0.1", wait=0.5))
        assert await ip_link(a, c1) is None and await ip_link(b, c2) is None
    return to_lan, to_sibling, back


@pytest.mark.root
async def test_macvlan_bridge_mode_children_reach_each_other(nss: NewNs) -> None:
    assert await children_reachability(nss, "bridge") == (0, 0, 0)


@pytest.mark.root
async def test_macvlan_private_mode_children_are_isolated(nss: NewNs) -> None:
    to_lan, to_sibling, back = await children_reachability(nss, "private")
    assert to_lan == 0  # the LAN behind the parent is reachable...
    assert to_sibling != 0 and back != 0  # ...the sibling is not


@pytest.mark.root
async def test_macvlan_vepa_passthru_source_accepted(nss: NewNs) -> None:
    host, lan, a = await nss(), await nss(), await nss()
    async with parent_and_lan(host, lan) as nic:
        for mode in ("vepa", "passthru", "source"):
            name = unique()
            async with Macvlan(name, parent=nic.name, parent_netns=host, netns=a, mode=mode) as m:
                link = await ip_link(a, name)
                assert link is not None and link["linkinfo"]["info_kind"] == "macvlan"
                assert info_data(link)["mode"] == mode
                assert m.ifindex == link["ifindex"]
            assert await ip_link_names(a) == {"lo"}


@pytest.mark.root
async def test_macvlan_in_parent_namespace(nss: NewNs) -> None:
    host, lan = await nss(), await nss()
    async with parent_and_lan(host, lan) as nic:
        name = unique()
        async with Macvlan(name, parent=nic.name, netns=host, addresses=["10.7.0.5/24"]) as m:
            info = await m.info()
            assert info.link == nic.ifindex  # same namespace: the parent is named by ifindex
            assert await ping(lan, "10.7.0.5") == 0
        assert await ip_link_names(host) == {"lo", nic.name}


def test_macvlan_unknown_mode_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="l2switch"):
        Macvlan("m0", parent="eth0", mode="l2switch")
