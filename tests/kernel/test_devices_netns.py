"""Namespaces on a real kernel: create, name clashes, borrowing, sysctls, sockets."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator

import pytest

from netvirt.errors import KernelError, NameTakenError, NoSuchObjectError
from netvirt.netns import NETNS_DIR, Namespace
from tests.conftest import unique
from tests.kernel.devices_support import NewNs, ip_link, nsname, nss, sh

__all__ = ["nss"]  # the fixture, imported for pytest

pytestmark = pytest.mark.root


@contextlib.asynccontextmanager
async def foreign_netns() -> AsyncIterator[str]:
    """A namespace made by iproute2 (not by netvirt), deleted by this test itself."""
    name = unique()
    rc, _, err = await sh("ip", "netns", "add", name)
    assert rc == 0, err
    try:
        yield name
    finally:
        rc, _, err = await sh("ip", "netns", "del", name)
        assert rc == 0, err


async def test_create_makes_named_namespace_with_lo_up() -> None:
    name = unique()
    path = os.path.join(NETNS_DIR, name)
    ns = await Namespace.create(name)
    try:
        assert ns.owned and ns.name == name
        assert os.path.exists(path)
        # the handle netvirt keeps is the very namespace mounted on the name
        assert os.fstat(ns.fileno()).st_ino == os.stat(path).st_ino
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        lo = await ip_link(name, "lo")
        assert lo is not None and "UP" in lo["flags"]
        assert await ns.nl(lambda nl: nl.link(nl.ifindex("lo")).up)
        # a fresh namespace holds nothing but lo
        assert [li.name for li in await ns.nl(lambda nl: nl.links())] == ["lo"]
    finally:
        await ns.close()
    assert not os.path.exists(path)
    await ns.close()  # safe twice
    with pytest.raises(RuntimeError):
        await ns.call(lambda: None)


async def test_create_existing_name_fails_and_leaves_it_untouched() -> None:
    async with foreign_netns() as name:
        path = os.path.join(NETNS_DIR, name)
        inode = os.stat(path).st_ino
        rc, _, err = await sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        assert rc == 0, err
        with pytest.raises(NameTakenError, match=name):
            await Namespace.create(name)
        # same namespace, still mounted, its state (forwarding on, lo down) intact
        assert os.stat(path).st_ino == inode
        rc, out, _ = await sh("ip", "netns", "exec", name, "sysctl", "-n", "net.ipv4.ip_forward")
        assert (rc, out.strip()) == (0, "1")
        lo = await ip_link(name, "lo")
        assert lo is not None and "UP" not in lo["flags"]


async def test_borrow_uses_existing_namespace_and_never_deletes_it() -> None:
    async with foreign_netns() as name:
        path = os.path.join(NETNS_DIR, name)
        inode = os.stat(path).st_ino
        ns = await Namespace.borrow(name)
        try:
            assert not ns.owned
            assert os.fstat(ns.fileno()).st_ino == inode
            # requests run inside it: lo is there, down, as iproute2 left it
            lo = await ns.nl(lambda nl: nl.link(nl.ifindex("lo")))
            assert lo.name == "lo" and not lo.up
        finally:
            await ns.close()
        assert os.path.exists(path) and os.stat(path).st_ino == inode


async def test_borrow_missing_raises_and_creates_nothing() -> None:
    name = unique()
    with pytest.raises(NoSuchObjectError) as ei:
        await Namespace.borrow(name)
    assert ei.value.errno == errno.ENOENT
    assert ei.value.netns == name
    assert name in str(ei.value)
    assert not os.path.exists(os.path.join(NETNS_DIR, name))  # no silent creation


async def test_sysctl_is_per_namespace(nss: NewNs) -> None:
    a, b = await nss(), await nss()
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read().strip()
    assert await a.sysctl("net.ipv4.ip_forward") == "0"  # new namespaces start with 0
    assert await a.sysctl("net.ipv4.ip_forward", 1) == "1"
    assert await a.sysctl("net.ipv4.ip_forward") == "1"
    assert await b.sysctl("net.ipv4.ip_forward") == "0"
    # an independent witness agrees
    for ns, want in ((a, "1"), (b, "0")):
        rc, out, _ = await sh("ip", "netns", "exec", nsname(ns), "sysctl", "-n",
                              "net.ipv4.ip_forward")
        assert (rc, out.strip()) == (0, want)
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read().strip() == host_before
    with pytest.raises(KernelError) as ei:
        await a.sysctl("net.ipv4.no_such_key", 1)
    assert ei.value.errno == errno.ENOENT and ei.value.netns == a.name
    assert "sysctl net.ipv4.no_such_key" in ei.value.op


async def test_socket_lives_in_its_namespace(nss: NewNs) -> None:
    loop = asyncio.get_running_loop()
    a, b = await nss(), await nss()
    listener = await a.socket(socket.AF_INET, socket.SOCK_STREAM)
    with listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        async def connect_from(ns: Namespace) -> None:
            s = await ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            with s:
                assert not s.getblocking()
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 5)
                await loop.sock_sendall(s, b"hello")

        # the same 127.0.0.1:port in another namespace: nobody listens there
        # (the host's own loopback is not probed: other processes own it)
        with pytest.raises(ConnectionRefusedError):
            await connect_from(b)
        await connect_from(a)
        conn, _ = await asyncio.wait_for(loop.sock_accept(listener), 5)
        with conn:
            assert await asyncio.wait_for(loop.sock_recv(conn, 16), 5) == b"hello"
