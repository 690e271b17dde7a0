"""Labs across machines: the split star's build against the same star on one machine,
and TCP across a crossing link (VXLAN between two machines) against a local veth.

    python -m benchmarks.multi [--runs 3] [--n 20] [--seconds 3] [--json] [--smoke]

The machines are netvirt's namespace-machines (``netvirt.multi.testing``: network
namespaces of this kernel, each with its own sshd on an underlay bridge), the
driver runs in this process (``MultiLab``, reaching them from the driver
namespace). Runs alternate (split, local, split, local...).

* **build**: ``scenarios/s3b_star_split.py`` with ``n`` hosts: sw and half the
  hosts on m1, the rest on m2 (n/2 links cross). ``build-split`` is the driver's
  whole build (SSH connections, ``netvirt --version`` and the agent started on
  each machine, the MTU probe, both shares built in parallel); ``build-split-shares``
  the slower of the two shares' own build times, as their agents report them;
  ``build-local`` the same scenario built by ``Topology`` on one machine.
* **traffic**: ``iperf3 -c`` for ``seconds`` from node a to node b; **crossing**: a on
  m1, b on m2, their link a VXLAN (MTU 1450) over the underlay veth+bridge;
  **veth**: a and b on one machine joined by a veth (MTU 1450 too). The figure is the
  receiver's rate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path as FsPath
from typing import Any

from benchmarks.common import REPO, Report, check_args, machine_line, parser, require_root
from benchmarks.wire import Path, iperf

PAIR = """\
name: {lab}
machines:
  m1: {{ssh: "root@198.18.0.1", underlay: 198.18.0.1}}
  m2: {{ssh: "root@198.18.0.2", underlay: 198.18.0.2}}
nodes:
  a: {{machine: m1, interfaces: {{eth0: {{addresses: [10.0.0.1/24]}}}}}}
  b: {{machine: {mb}, interfaces: {{eth0: {{addresses: [10.0.0.2/24]}}}}}}
links:
  - {{endpoints: [a:eth0, b:eth0], mtu: 1450}}
"""


async def build_runs(args: argparse.Namespace, rep: Report, h: Any) -> None:
    from netvirt.multi._live import Topology
    from netvirt.multi.machines import load

    star = FsPath(REPO) / "scenarios" / "s3b_star_split.py"
    split, shares, local = [], [], []
    for r in range(1, args.runs + 1):
        lab = f"{args.prefix[:7]}s{r}"[:10]
        ms = h.adapt(load(star, {"n": str(args.n)}).with_name(lab))
        t0 = time.perf_counter()
        multi = h.driver(ms)
        try:
            await multi.build()
            split.append(time.perf_counter() - t0)
            shares.append(max(float(b["seconds"]) for b in multi.built.values()))
        finally:
            await multi.teardown()
        topo = Topology(ms.scenario.with_name(f"{args.prefix[:7]}l{r}"[:10]))
        t0 = time.perf_counter()
        try:
            await topo.build()
            local.append(time.perf_counter() - t0)
        finally:
            await topo.teardown()
    rep.result("build-split", "s", split)
    rep.result("build-split-shares", "s", shares)
    rep.result("build-local", "s", local)
    rep.ratio("split/local build", "build-split", "build-local")
    rep.ratio("split shares/local build", "build-split-shares", "build-local")


async def traffic_runs(args: argparse.Namespace, rep: Report, h: Any) -> None:
    from netvirt.multi._live import Topology
    from netvirt.multi.machines import load_text

    cross_lab, local_lab = f"{args.prefix[:8]}x"[:10], f"{args.prefix[:8]}v"[:10]
    ms = h.adapt(load_text(PAIR.format(lab=cross_lab, mb="m2")))
    local = load_text(PAIR.format(lab=local_lab, mb="m1")).scenario
    multi = h.driver(ms)
    await multi.build()
    try:
        async with Topology(local):
            paths = [Path("crossing", f"nv-{cross_lab}-1-a", f"nv-{cross_lab}-2-b", "10.0.0.2"),
                     Path("veth", f"nv-{local_lab}-a", f"nv-{local_lab}-b", "10.0.0.2")]
            values: dict[str, list[float]] = {p.name: [] for p in paths}
            for r in range(1, args.runs + 1):
                for path in paths:
                    doc = await iperf(path, args.seconds)
                    try:
                        bps = float(doc["end"]["sum_received"]["bits_per_second"])
                    except (KeyError, TypeError):
                        rep.fail(f"{path.name} run {r}: iperf3: {doc.get('error', 'no result')}")
                        bps = float("nan")
                    values[path.name].append(bps / 1e9)
            for name, runs in values.items():
                rep.result(f"tcp-{name}", "Gbit/s", runs)
            rep.ratio("crossing/veth throughput", "tcp-crossing", "tcp-veth")
    finally:
        await multi.teardown()


async def measure(args: argparse.Namespace, rep: Report) -> None:
    from netvirt.multi.testing import NsMachines

    rep.log(f"== multi: star n={args.n}, {args.runs} runs, iperf3 {args.seconds} s, prefix {args.prefix}")
    rep.log(machine_line())
    h = NsMachines(n=2, dead=0).start()
    try:
        await build_runs(args, rep, h)
        await traffic_runs(args, rep, h)
    finally:
        h.stop()


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], runs=3)
    p.add_argument("--n", type=int, default=20, help="hosts of the star (default 20)")
    p.add_argument("--seconds", type=int, default=3, help="seconds per iperf3 run (default 3)")
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.smoke:
        args.runs, args.n, args.seconds = 1, 4, 1
    rep = Report("multi", json_mode=args.json)
    rep.extra["params"] = {"n": args.n, "runs": args.runs, "seconds": args.seconds}
    asyncio.run(measure(args, rep))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
