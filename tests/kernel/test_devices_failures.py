"""Failures leave nothing behind, and errors say what failed, where and why."""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import socket
import threading
from collections.abc import Callable

import pytest

from netvirt._netlink import Netlink
from netvirt.devices import Bridge, Device, Macvlan, Macvtap, Tap, Tun, Veth
from netvirt.errors import (
    EnvironmentProblem,
    KernelError,
    NameTakenError,
    NoSuchObjectError,
    UnsupportedError,
    UsageError,
)
from netvirt.netns import NETNS_DIR, Namespace
from tests.conftest import unique
from tests.kernel.devices_support import NewNs, ip_link, ip_link_names, nsname, nss

__all__ = ["nss"]


async def addrs_of(ns: Namespace, index: int) -> list[tuple[int, str]]:
    return await ns.nl(lambda nl: nl.addrs(index))


@pytest.mark.root
async def test_veth_with_missing_peer_namespace_leaves_nothing(nss: NewNs) -> None:
    a = await nss()
    missing = unique()
    # the first namespace as an object, then by name (a handle the Veth must close)
    for where in (a, nsname(a)):
        veth = Veth(unique(), unique(), netns=where, peer_netns=missing)
        with pytest.raises(NoSuchObjectError) as ei:
            await veth.create()
        assert ei.value.netns == missing and ei.value.errno == errno.ENOENT
        assert await ip_link_names(a) == {"lo"}
        assert not os.path.exists(os.path.join(NETNS_DIR, missing))  # not created by accident
        await veth.aclose()  # harmless after a failed create


@pytest.mark.root
async def test_macvlan_on_missing_parent_leaves_nothing(nss: NewNs) -> None:
    host, a = await nss(), await nss()
    for cls in (Macvlan, Macvtap):
        dev = cls(unique(), parent="nvtnoparent", parent_netns=host, netns=a)
        with pytest.raises(NoSuchObjectError) as ei:
            await dev.create()
        assert ei.value.device == "nvtnoparent" and ei.value.netns == host.name
        assert await ip_link_names(a) == {"lo"}
        assert await ip_link_names(host) == {"lo"}


@pytest.mark.root
async def test_tun_name_taken_leaves_existing_device_untouched(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    taken = unique()
    # a non-tun device (a veth end), a live tun and a persistent tun nobody holds open
    # (without IFF_TUN_EXCL, TUNSETIFF would silently attach to that one)
    async with Veth(taken, unique(), netns=a, peer_netns=b, addresses=["10.9.0.1/24"]) as veth, \
            Tun(unique(), netns=a, addresses=["10.9.1.1/24"]) as tun, \
            Tun(unique(), netns=a, persist=True, addresses=["10.9.3.1/24"]) as idle:
        for name, existing in ((taken, veth), (tun.name, tun), (idle.name, idle)):
            before = await ip_link(a, name)
            addrs = await addrs_of(a, existing.ifindex)
            for cls in (Tun, Tap):
                with pytest.raises(NameTakenError, match=name) as ei:
                    await cls(name, netns=a, addresses=["10.9.2.1/24"]).create()
                assert isinstance(ei.value, EnvironmentProblem) and ei.value.exit_code == 3
            after = await ip_link(a, name)
            assert after == before  # same ifindex, flags, addresses...: untouched
            assert await addrs_of(a, existing.ifindex) == addrs
        # the existing tun still works: its queue fd is attached and delivers
        def send() -> None:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"still here", ("10.9.1.2", 9))

        await a.call(send)
        pkt = await asyncio.wait_for(tun.read(), 3)
        assert pkt[9] == 17 and pkt.endswith(b"still here")


@pytest.mark.parametrize("make", [
    lambda n: Tun(n),
    lambda n: Tap(n),
    lambda n: Bridge(n),
    lambda n: Veth(n, "ok"),
    lambda n: Veth("ok", n),
    lambda n: Macvlan(n, parent="eth0"),
    lambda n: Macvtap(n, parent="eth0"),
], ids=["tun", "tap", "bridge", "veth", "veth-peer", "macvlan", "macvtap"])
def test_interface_name_of_16_bytes_is_a_usage_error(make: Callable[[str], Device]) -> None:
    # the constructor does no I/O (these would otherwise touch the host namespace):
    # no namespace worker thread is started, nothing is opened
    threads, fds = threading.active_count(), len(os.listdir("/proc/self/fd"))
    for bad in ("a" * 16, "é" * 8, "", "a/b", "a b"):  # "é" * 8: 8 characters, 16 bytes
        with pytest.raises(UsageError, match="invalid interface name"):
            make(bad)
    assert make("a" * 15).ifindex == 0  # 15 bytes is the limit
    assert (threading.active_count(), len(os.listdir("/proc/self/fd"))) == (threads, fds)


@pytest.mark.root
async def test_kind_this_kernel_lacks_is_unsupported(nss: NewNs) -> None:
    a = await nss()
    for kind in ("dummy", "vlan", "wireguard"):
        with pytest.raises(UnsupportedError, match=kind):
            await a.nl(functools.partial(Netlink.link_add, name="nvtx", kind=kind))
    assert await ip_link_names(a) == {"lo"}


@pytest.mark.parametrize("case", [
    "veth-master", "veth-peer-master", "veth-peer-address", "bridge-address",
    "tun-address", "tun-persist-address", "tap-master", "macvlan-address",
    "macvtap-address",
])
@pytest.mark.root
async def test_failure_during_configuration_deletes_the_new_link(nss: NewNs, case: str) -> None:
    host, a, b = await nss(), await nss(), await nss()
    bad = "ff0e::1/64"  # a multicast address: the kernel refuses to assign it
    name = unique()
    async with Veth(unique(), unique(), netns=host, peer_netns=b) as nic:
        devs: dict[str, Callable[[], Device]] = {
            "veth-master": lambda: Veth(name, unique(), netns=a, peer_netns=b, master="nvtnobr"),
            "veth-peer-master": lambda: Veth(name, unique(), netns=a, peer_netns=b,
                                             peer_master="nvtnobr"),
            "veth-peer-address": lambda: Veth(name, unique(), netns=a, peer_netns=b,
                                              peer_addresses=[bad]),
            "bridge-address": lambda: Bridge(name, netns=a, addresses=[bad]),
            "tun-address": lambda: Tun(name, netns=a, addresses=[bad]),
            "tun-persist-address": lambda: Tun(name, netns=a, persist=True, addresses=[bad]),
            "tap-master": lambda: Tap(name, netns=a, master="nvtnobr"),
            "macvlan-address": lambda: Macvlan(name, parent=nic.name, parent_netns=host,
                                               netns=a, addresses=[bad]),
            "macvtap-address": lambda: Macvtap(name, parent=nic.name, netns=host,
                                               addresses=[bad]),
        }
        before = {ns.name: await ip_link_names(ns) for ns in (host, a, b)}
        dev = devs[case]()
        with pytest.raises(KernelError) as ei:
            await dev.create()
        err = ei.value
        if "master" in case:
            assert isinstance(err, NoSuchObjectError) and err.device == "nvtnobr"
        else:
            assert err.errno == errno.EADDRNOTAVAIL and "add address" in err.op
        for ns in (host, a, b):  # the just-created link is gone again, both ends of a veth
            assert await ip_link_names(ns) == before[ns.name], ns.name


@pytest.mark.root
async def test_kernel_error_carries_errno_op_device_and_namespace(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    n1 = unique()
    async with Veth(n1, unique(), netns=a, peer_netns=b) as veth:
        with pytest.raises(KernelError) as ei:
            await veth.set_mtu(70000)  # above a veth's max_mtu
        err = ei.value
        assert type(err) is KernelError and err.exit_code == 3
        assert err.errno == errno.EINVAL
        assert err.op == "set link mtu"
        assert err.device == n1  # the name, not an ifindex
        assert err.netns == a.name
        msg = str(err)
        for part in ("set link mtu", n1, nsname(a), "EINVAL"):
            assert part in msg, msg
        assert (await veth.info()).mtu == 1500  # nothing changed

        with pytest.raises(NoSuchObjectError) as ei2:
            await veth.set_master("nvtnobr")
        assert (ei2.value.errno, ei2.value.device, ei2.value.netns) == (
            errno.ENODEV, "nvtnobr", a.name)

        await veth.add_address("10.9.9.1/24")
        with pytest.raises(NameTakenError, match="exists already") as ei3:
            await veth.add_address("10.9.9.1/24")
        assert "add address 10.9.9.1/24" in str(ei3.value) and n1 in str(ei3.value)


def test_kernel_error_message_without_namespace() -> None:
    err = KernelError(errno.EPERM, "create tun", device="tun0")
    assert (err.errno, err.op, err.device, err.netns) == (errno.EPERM, "create tun", "tun0", None)
    assert str(err).startswith("create tun failed on device 'tun0' in the host namespace: [EPERM]")
    err = NoSuchObjectError(errno.ENOENT, "open namespace", netns="x", detail="gone")
    assert isinstance(err, KernelError) and err.exit_code == 3
    assert str(err) == "open namespace failed on namespace 'x': [ENOENT] gone"
