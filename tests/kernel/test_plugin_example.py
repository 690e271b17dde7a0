"""Written as a new user would, from the README's plugin section alone.

These use only the fixtures the installed plugin provides.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from netvirt import packets

pytestmark = pytest.mark.root


@pytest.mark.netvirt_scenario("scenarios/s4-udp-tunnel.yaml")
async def test_tunnel_carries_my_datagram(netvirt_topology) -> None:
    topo = netvirt_topology
    loop = asyncio.get_running_loop()
    # an application on each side, bound to its tun address (seed 004)
    rx = await topo.node("right").socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("192.168.1.12", 5000))
    tx = await topo.node("left").socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.bind(("192.168.1.11", 5000))
    try:
        tx.sendto(b"hello through the tunnel", ("192.168.1.12", 5000))  # (uvloop has no sock_sendto)
        ready = asyncio.Event()
        loop.add_reader(rx.fileno(), ready.set)
        await asyncio.wait_for(ready.wait(), 3)
        loop.remove_reader(rx.fileno())
        data, peer = rx.recvfrom(2048)
        assert data == b"hello through the tunnel" and peer == ("192.168.1.11", 5000)
    finally:
        rx.close()
        tx.close()
    left = topo.program("left", "tun0").counters
    assert left["tun_rx"] >= 1 and left["udp_tx"] >= 1


async def test_lab_factory_and_packets(netvirt_lab, tmp_path) -> None:
    f = tmp_path / "one.yaml"
    f.write_text("name: mine\nnodes:\n  n:\n    interfaces:\n"
                 "      tun0: {kind: tun, addresses: [10.44.0.1/24]}\n")
    topo = await netvirt_lab(f)
    assert topo.lab != "mine"  # a unique name, so tests can run in parallel
    tun = topo.device("n", "tun0")
    sock_task = asyncio.ensure_future(topo.node("n").exec("ping -c1 -W2 10.44.0.2"))
    request = await asyncio.wait_for(tun.read(), 3)
    echo = packets.parse_echo(request)
    assert echo is not None
    await tun.write(packets.echo_reply_ip(request))
    result = await sock_task
    assert result.returncode == 0, result.stdout


async def test_scratch_namespace(netvirt_netns) -> None:
    from netvirt.devices import Tun

    async with Tun("tun9", netns=netvirt_netns, addresses=["10.45.0.1/24"]) as tun:
        info = await tun.info()
        assert info.name == "tun9" and info.up
