"""Latency of one command in a node: netvirt's launcher vs ``ip netns exec`` (0.1.0's way).

    python -m benchmarks.exec [--runs 15] [--json] [--smoke]      (root)

In one scratch namespace, alternately: ``ip netns exec NS true`` through
``asyncio.create_subprocess_exec`` (the anchor: what ``Node.exec`` did in 0.1.0), and
``Node.exec(["true"])`` through the launcher, with the node's view (its mount anchor
made by the first, untimed, call), on asyncio and on uvloop. Median of the runs.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import uvloop

from benchmarks.common import Report, check_args, machine_line, now, parser, require_root


async def _measure(prefix: str, runs: int) -> dict[str, list[float]]:
    from netvirt.netns import Namespace
    from netvirt.procs.view import NodeView
    from netvirt.topology.node import Node

    out: dict[str, list[float]] = {"ipnetns": [], "launcher": []}
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-", dir="/run") as tmp:
        async with await Namespace.create(f"{prefix}x") as ns:
            view = NodeView(ns.name, Path(tmp) / "node")
            view.prepare({"hosts": b"127.0.0.1 localhost\n"})
            node = Node("n", ns, view=view)
            try:
                await node.exec(["true"])  # starts the node's mount anchor: not timed
                for _ in range(runs):
                    t = now()
                    p = await asyncio.create_subprocess_exec("ip", "netns", "exec", ns.name, "true")
                    await p.wait()
                    out["ipnetns"].append(now() - t)
                    t = now()
                    res = await node.exec(["true"])
                    out["launcher"].append(now() - t if res.returncode == 0 else float("nan"))
            finally:
                await node.stop_jobs()
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("latency of one command in a node: launcher vs ip netns exec", runs=15)
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.smoke:
        args.runs = 2
    rep = Report("exec", json_mode=args.json)
    rep.log(f"== exec: {args.runs} runs each, alternating")
    rep.log(machine_line())
    for loop, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
        got = run(_measure(args.prefix, args.runs))
        rep.result(f"exec-ipnetns-{loop}", "s", got["ipnetns"])
        rep.result(f"exec-launcher-{loop}", "s", got["launcher"])
        rep.ratio(f"launcher/ip-netns-exec {loop}", f"exec-launcher-{loop}", f"exec-ipnetns-{loop}",
                  "<= 2")
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
