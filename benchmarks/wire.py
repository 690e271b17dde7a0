"""A userspace wire between two tuns (netvirt) vs a kernel veth pair: iperf3 TCP.

    python -m benchmarks.wire [--runs 3] [--seconds 5] [--json] [--smoke]

Three paths are up at the same time and measured alternately, run by run
(wire-offload, wire-nooffload, veth, wire-offload, ...):

* **wire-offload** / **wire-nooffload**: two namespaces made with
  ``netvirt.Namespace.create``, a ``netvirt.devices.Tun`` in each
  (``offload=True``: IFF_VNET_HDR + TUNSETOFFLOAD, or ``offload=False``), and a
  forwarder in this process: ``loop.add_reader`` on each tun's fd, whose
  callback drains up to 64 packets with the packet port's ``read_nowait(64)``
  and writes each into the other tun with ``write_nowait`` (the anchor
  forwarder bench/05_tun_wire.py does it with raw fds). With offload the reads
  are GSO super-packets of up to 64 KiB, each with its 10-byte virtio_net_hdr,
  written as they are into the other tun.
* **veth**: the anchor, a kernel veth pair between two namespaces made with
  ``ip`` (as bench/01_kernel_ceiling.sh does).

All MTUs are 1500. One run = ``iperf3 -s -1`` in the second namespace,
``iperf3 -c ... -t SECONDS -J`` in the first (both via ``ip netns exec``);
the figure is the receiver's rate. The forwarder's packet counters prove the
traffic crossed it (and show the average packet size it moved).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.common import (
    Report,
    check_args,
    delete_netns,
    machine_line,
    netns_exists,
    parser,
    require_root,
    sh,
)

PATHS = ("wire-offload", "wire-nooffload", "veth")


@dataclass
class Path:
    name: str
    client_ns: str
    server_ns: str
    server_addr: str
    ports: tuple[Any, ...] = ()  # the forwarder's two PacketPorts (wires only)

    def forwarded(self) -> int:
        return sum(p.rx_packets for p in self.ports)


async def make_wire(stack: contextlib.AsyncExitStack, prefix: str, tag: str, subnet: str,
                    offload: bool) -> Path:
    """Two netvirt namespaces, a Tun in each, and the forwarder between them."""
    from netvirt import Namespace
    from netvirt.devices import Tun

    loop = asyncio.get_running_loop()
    ports = []
    names = []
    for i in (1, 2):
        name = f"{prefix}-{tag}{i}"
        ns = await Namespace.create(name)
        stack.push_async_callback(ns.close)
        tun = await Tun("tun0", netns=ns, addresses=[f"{subnet}.{i}/24"], offload=offload).create()
        stack.push_async_callback(tun.aclose)
        ports.append(tun.port)
        names.append(name)

    def pump(src: Any, dst: Any) -> Any:
        read, write = src.read_nowait, dst.write_nowait

        def ready() -> None:
            for packet in read(64):
                write(packet)  # a GSO super-packet goes as it is, vnet header included

        return ready

    a, b = ports
    for src, dst in ((a, b), (b, a)):
        fd = src.fileno()
        loop.add_reader(fd, pump(src, dst))
        stack.callback(loop.remove_reader, fd)  # runs before the tun closes (LIFO)
    return Path(f"wire-{tag}", names[0], names[1], f"{subnet}.2", (a, b))


def make_veth(stack: contextlib.ExitStack, prefix: str, subnet: str) -> Path:
    """The anchor: a veth pair between two namespaces, made with ``ip``."""
    n1, n2 = f"{prefix}-v1", f"{prefix}-v2"
    if netns_exists(n1) or netns_exists(n2):
        raise RuntimeError(f"namespace {n1} or {n2} exists already: not ours to touch")
    stack.callback(delete_netns, [n1, n2])
    sh(["ip", "-batch", "-"], input=f"netns add {n1}\nnetns add {n2}\n"
       f"link add eth0 netns {n1} type veth peer name eth0 netns {n2}\n")
    for i, ns in ((1, n1), (2, n2)):
        sh(["ip", "-n", ns, "-batch", "-"],
           input=f"addr add {subnet}.{i}/24 dev eth0\nlink set eth0 up\nlink set lo up\n")
    return Path("veth", n1, n2, f"{subnet}.2")


async def aping(ns: str, addr: str, tries: int = 20) -> bool:
    """ping -c1 -W1 without blocking the loop (the forwarder runs on it)."""
    for _ in range(tries):
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", ns, "ping", "-c1", "-W1", addr,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        if await proc.wait() == 0:
            return True
    return False


async def iperf(path: Path, seconds: int) -> dict[str, Any]:
    """One iperf3 TCP run from client_ns to server_addr; the parsed ``-J`` document."""
    srv = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", path.server_ns, "iperf3", "-s", "-1", "-B", path.server_addr,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        doc: dict[str, Any] = {}
        for attempt in range(20):  # until the server listens
            await asyncio.sleep(0.2 if attempt == 0 else 0.1)
            cli = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", path.client_ns, "iperf3", "-c", path.server_addr,
                "-t", str(seconds), "-J",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(cli.communicate(), seconds + 60)
            try:
                doc = json.loads(out)
            except ValueError:
                doc = {"error": (err or out).decode(errors="replace").strip()}
            if "refused" not in str(doc.get("error", "")):
                break
        return doc
    finally:
        if srv.returncode is None:
            srv.terminate()
        await srv.wait()


async def measure(args: argparse.Namespace, rep: Report) -> None:
    rep.log(f"== wire: paths {args.paths}, {args.runs} runs x {args.seconds} s, "
            f"loop {args.loop}, prefix {args.prefix}")
    rep.log(machine_line())
    async with contextlib.AsyncExitStack() as astack:
        with contextlib.ExitStack() as stack:
            paths = []
            for name in args.paths:
                if name == "veth":
                    paths.append(make_veth(stack, args.prefix, "10.93.3"))
                else:
                    offload = name == "wire-offload"
                    tag, subnet = ("offload", "10.93.1") if offload else ("nooffload", "10.93.2")
                    paths.append(await make_wire(astack, args.prefix, tag, subnet, offload))
            for path in paths:
                if not await aping(path.client_ns, path.server_addr):
                    rep.fail(f"{path.name}: no ping across before the runs")
            values: dict[str, list[float]] = {p.name: [] for p in paths}
            for r in range(1, args.runs + 1):
                for path in paths:
                    before = path.forwarded()
                    doc = await iperf(path, args.seconds)
                    moved = path.forwarded() - before
                    if "end" not in doc:
                        rep.fail(f"{path.name} run {r}: iperf3: {doc.get('error', 'no result')}")
                        values[path.name].append(float("nan"))
                        continue
                    recv = doc["end"]["sum_received"]
                    mbit = recv["bits_per_second"] / 1e6
                    values[path.name].append(mbit)
                    line = f"  {path.name} run {r}: {mbit:.0f} Mbit/s"
                    if path.ports:
                        avg = recv["bytes"] / max(moved, 1)
                        line += f", forwarder moved {moved} packets (about {avg:.0f} B each)"
                        if moved < 100:
                            rep.fail(f"{path.name} run {r}: the traffic did not cross the "
                                     f"forwarder ({moved} packets)")
                    rep.log(line)
            for name, v in values.items():
                rep.result(f"{name}-tcp", "Mbit/s", v)
    rep.ratio("wire-offload/veth", "wire-offload-tcp", "veth-tcp", ">= 0.5")
    rep.ratio("wire-nooffload/veth", "wire-nooffload-tcp", "veth-tcp")
    rep.ratio("wire-offload/wire-nooffload", "wire-offload-tcp", "wire-nooffload-tcp")


def main(argv: list[str] | None = None) -> int:
    p = parser("userspace tun<->tun wire (netvirt) vs kernel veth: iperf3 TCP", runs=3)
    p.add_argument("--seconds", type=int, default=5, help="iperf3 -t per run (default 5)")
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if sh(["sh", "-c", "command -v iperf3"], check=False).returncode != 0:
        raise SystemExit("iperf3 is needed: apt-get install iperf3")
    if args.smoke:
        args.runs, args.seconds = 1, 1
    rep = Report("wire", json_mode=args.json)
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(measure(args, rep))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
