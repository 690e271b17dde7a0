"""Time to the first full ping across the FRR OSPF ring (scenarios/frr-ospf-ring.yaml).

    python -m benchmarks.frr_ring [--runs 5] [--json] [--smoke]      (root; needs Debian's frr)

Each run is ``python -m netvirt run --json`` of the shipped ring under a lab name of
this benchmark; figures come from its report:

* ``ring-build``: the build, which includes starting FRR in the four routers and
  waiting until each answers ``vtysh -c 'show ip ospf'`` (its ready check);
* ``ring-converge``: steps 1-6, which retry every 0.2 s until r1 reaches every
  loopback and r2, r3, r4 reach the far side (every router has its routes);
* ``ring-first-full-ping``: the two together, from the start of the build;
* ``ring-reroute`` / ``ring-restore``: after ``ip link set eth1 down`` (and up) on
  r1, until its route to r2 is the long way round (and back);
* ``ring-wall``: the whole ``netvirt run``, interpreter start and teardown included.

What OSPF itself needs, with the ring's timers (hello 1 s, point-to-point, no LSA
or SPF throttling): a hello from each neighbour (up to 1 s after its interface
is up), then the database exchange and SPF (milliseconds here). So the floor of
``ring-converge`` after the routers are up is about one hello interval.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.common import REPO, Report, check_args, machine_line, now, parser, require_root

SCENARIO = os.path.join(REPO, "scenarios", "frr-ospf-ring.yaml")


def one_run(lab: str) -> dict[str, float] | str:
    t0 = now()
    res = subprocess.run([sys.executable, "-m", "netvirt", "run", "--json", "--name", lab, SCENARIO],
                         cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": REPO})
    wall = now() - t0
    try:
        rep = json.loads(res.stdout)
    except ValueError:
        return f"exit {res.returncode}: {res.stderr.strip()[-300:]}"
    if not rep.get("ok"):
        bad = [s["title"] for s in rep.get("steps", []) if not s["ok"]]
        return f"failed steps {bad} {rep.get('process_failures')}"
    steps = rep["steps"]
    converge = sum(s["seconds"] for s in steps[:6])
    return {"build": rep["build_seconds"], "converge": converge,
            "first": rep["build_seconds"] + converge, "reroute": steps[9]["seconds"],
            "restore": steps[12]["seconds"], "wall": wall}


def main(argv: list[str] | None = None) -> int:
    p = parser("time to the first full ping across the FRR OSPF ring", runs=5)
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.smoke:
        args.runs = 1
    rep = Report("frr_ring", json_mode=args.json)
    rep.log(f"== frr_ring: {args.runs} runs of netvirt run {os.path.relpath(SCENARIO, REPO)}")
    rep.log(machine_line())
    figures: dict[str, list[float]] = {k: [] for k in ("build", "converge", "first", "reroute", "restore",
                                                       "wall")}
    for r in range(1, args.runs + 1):
        got = one_run(f"{args.prefix}r")
        if isinstance(got, str):
            rep.fail(f"run {r}: {got}")
            got = {k: float("nan") for k in figures}
        for k, v in got.items():
            figures[k].append(v)
    names = {"build": "ring-build", "converge": "ring-converge", "first": "ring-first-full-ping",
             "reroute": "ring-reroute", "restore": "ring-restore", "wall": "ring-wall"}
    for k, v in figures.items():
        rep.result(names[k], "s", v)
    rep.target("first full ping across the ring", "ring-first-full-ping", "< 5")
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
