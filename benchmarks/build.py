"""Topology build and teardown of the S3b star: netvirt vs ``ip -batch`` vs Mininet.

    python -m benchmarks.build [--sizes 10 100 200 1000] [--runs 3] [--json] [--smoke]
    python -m benchmarks.build --profile 200      # cProfile of one netvirt build

The star (``scenarios/s3b_star.py``): a switch namespace with bridge ``br0``, N
host namespaces each joined to it by a veth pair (``pI`` on the bridge,
``eth0`` in the host, 10.2.x.y/16), links up. For each size the sides run
alternately, run by run (netvirt, ip-batch, [Mininet], netvirt, ...):

* **netvirt**: ``netvirt.load("scenarios/s3b_star.py", {"n": N}).with_name(LAB)``
  in this process (loading not timed), then ``Topology.build()`` and
  ``Topology.teardown()`` timed separately, on uvloop.
* **ip-batch**: the "batch" mode of the shell anchor (bench/02_topo_shell.sh),
  reproduced here: N+2 ``ip`` processes run by a generated shell script (one
  root ``ip -batch`` with every ``netns add`` and each veth created with both
  ends already in place, one ``ip -n SW -batch`` for the bridge and its ports,
  one ``ip -n HOST -batch`` per host for address and links up). As in the
  anchor the files are written before the timer starts and the build time is
  taken inside the script ($EPOCHREALTIME). Teardown = one ``ip -batch`` of
  ``netns del`` for the N hosts and the switch.
* **Mininet** (2.3, LinuxBridge, no controller, as bench/03_mininet.py)
  when ``/usr/bin/python3 -c "import mininet"`` works: one subprocess per run;
  build = ``Mininet(...)`` + ``net.start()``, teardown = ``net.stop()``.

Every side must pass one ping from the first host to the last (not timed;
``ping -c1 -W1`` retried up to 20 times as in the anchor): a broken build
fails the benchmark instead of looking fast. *settled* = from the start of
the teardown until the kernel has destroyed the host namespaces, i.e. until
the last veth port has left the switch namespace (``common.SettleWatcher``,
the same for netvirt and ip-batch; Mininet deletes its links itself before
``stop()`` returns).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.common import (
    REPO,
    Report,
    SettleWatcher,
    check_args,
    delete_netns,
    machine_line,
    netns_exists,
    now,
    parser,
    ping_until_ok,
    require_root,
)

SCENARIO = os.path.join(REPO, "scenarios", "s3b_star.py")
MININET_PY = "/usr/bin/python3"


def host_addr(i: int) -> str:
    """Host i's address, exactly as scenarios/s3b_star.py numbers them."""
    hi, lo = divmod(i, 250)
    return f"10.2.{hi}.{lo + 1}"


# -- ip -batch (the shell anchor's "batch" mode) ---------------------------
class ShellStar:
    """The ``ip -batch`` star: files generated up front, N+2 ``ip`` processes."""

    def __init__(self, prefix: str, n: int, workdir: str) -> None:
        self.n = n
        self.sw = f"{prefix}s-sw"
        self.hosts = [f"{prefix}s-h{i}" for i in range(1, n + 1)]
        self.dir = workdir
        self.script = os.path.join(workdir, "build.sh")
        self._write_files()

    def _write(self, name: str, lines: list[str]) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        return path

    def _write_files(self) -> None:
        n, sw = self.n, self.sw
        root = self._write("root.batch", [f"netns add {sw}"]
                           + [f"netns add {h}" for h in self.hosts]
                           + [f"link add p{i} netns {sw} type veth peer name eth0 netns {h}"
                              for i, h in enumerate(self.hosts, 1)])
        swb = self._write("sw.batch", ["link add br0 type bridge", "link set br0 up"]
                          + [f"link set p{i} master br0 up" for i in range(1, n + 1)])
        lines = ["#!/bin/bash", 'echo "T0 $EPOCHREALTIME"', f"ip -batch {root} || exit 1",
                 'echo "T1 $EPOCHREALTIME"', f"ip -n {sw} -batch {swb} || exit 1",
                 'echo "T2 $EPOCHREALTIME"']
        for i, h in enumerate(self.hosts, 1):
            hb = self._write(f"h{i}.batch", [f"addr add {host_addr(i)}/16 dev eth0",
                                             "link set eth0 up", "link set lo up"])
            lines.append(f"ip -n {h} -batch {hb} || exit 1")
        lines.append('echo "T3 $EPOCHREALTIME"')
        self._write("build.sh", lines)
        self._write("del.batch", [f"netns del {h}" for h in self.hosts] + [f"netns del {sw}"])

    @property
    def names(self) -> list[str]:
        return [self.sw, *self.hosts]

    def run(self) -> dict[str, Any]:
        taken = [x for x in self.names if netns_exists(x)]
        if taken:
            raise RuntimeError(f"namespaces exist already (not ours to touch): {taken[:3]}...")
        try:
            res = subprocess.run(["bash", self.script], capture_output=True, text=True)
            if res.returncode != 0:
                raise RuntimeError(f"ip-batch build failed: {res.stderr.strip()[-500:]}")
            t = {k: float(v) for k, v in (line.split() for line in res.stdout.split("\n") if line)}
            ok, tries = ping_until_ok(self.hosts[0], host_addr(self.n))
            with SettleWatcher(self.sw) as watch:
                t0 = now()
                subprocess.run(["ip", "-batch", os.path.join(self.dir, "del.batch")], check=True)
                t1 = now()
                t2 = watch.wait()
        except BaseException:
            delete_netns(self.names)  # exactly ours: none of them existed before
            raise
        return {"build": t["T3"] - t["T0"], "teardown": t1 - t0, "settled": t2 - t0,
                "ping_ok": ok, "ping_tries": tries, "phases": {
                    "root": t["T1"] - t["T0"], "switch": t["T2"] - t["T1"],
                    "hosts": t["T3"] - t["T2"]}}


# -- netvirt --------------------------------------------------------------
async def netvirt_once(scenario: Any, lab: str, n: int) -> dict[str, Any]:
    import netvirt

    topo = netvirt.Topology(scenario.with_name(lab))
    t0 = now()
    await topo.build()
    t1 = now()
    try:
        ok, tries = ping_until_ok(f"nv-{lab}-h1", host_addr(n))
        watch = SettleWatcher(f"nv-{lab}-sw")
    except BaseException:
        await topo.teardown()
        raise
    with watch:
        t2 = now()
        await topo.teardown()
        t3 = now()
        t4 = watch.wait()
    return {"build": t1 - t0, "teardown": t3 - t2, "settled": t4 - t2,
            "ping_ok": ok, "ping_tries": tries}


# -- Mininet (as bench/03_mininet.py) ------------------------------------
#: the star in Mininet's terms (argv: tag, n), for the child scripts of this and benchmarks/job.py
MININET_STAR = r"""
import json, sys, time
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo
tag, n = sys.argv[1], int(sys.argv[2])
class Star(Topo):
    def build(self, n=2):
        sw = self.addSwitch(tag + 's1')
        for i in range(1, n + 1):
            self.addLink(self.addHost(tag + 'h%d' % i), sw)
setLogLevel('error')
"""

_MININET_CHILD = MININET_STAR + r"""
t0 = time.perf_counter()
net = Mininet(topo=Star(n=n), switch=LinuxBridge, controller=None, ipBase='10.78.0.0/16',
              autoSetMacs=False, waitConnected=False)
t1 = time.perf_counter()
ok, tries = False, 0
try:
    net.start()
    t2 = time.perf_counter()
    h1, hn = net.get(tag + 'h1'), net.get(tag + 'h%d' % n)
    for tries in range(1, 21):
        if ' 0% packet loss' in h1.cmd('ping -c1 -W1 %s' % hn.IP()):
            ok = True
            break
finally:
    t3 = time.perf_counter()
    net.stop()
    t4 = time.perf_counter()
print('NVBRESULT ' + json.dumps(dict(build=t2 - t0, construct=t1 - t0, start=t2 - t1,
                                     teardown=t4 - t3, settled=t4 - t3, ping_ok=ok,
                                     ping_tries=tries)))
"""


def mininet_available() -> bool:
    """Mininet under Debian's Python, and brctl for its LinuxBridge (package bridge-utils)."""
    if not os.path.exists(MININET_PY) or shutil.which("brctl") is None:
        return False
    res = subprocess.run([MININET_PY, "-c", "import mininet.nodelib"], capture_output=True)
    return res.returncode == 0


def mininet_tag() -> str:
    """Short: Mininet names root-namespace links ``<tag>s1-eth1000``, at most 15 bytes."""
    return f"nvb{os.getpid() % 16:x}"


def mininet_once(n: int) -> dict[str, Any]:
    tag = mininet_tag()
    links = os.listdir("/sys/class/net")
    if any(x.startswith(f"{tag}s1") or x.startswith(f"{tag}h") for x in links):
        raise RuntimeError(f"links named {tag}s1*/{tag}h* exist already: not ours to touch")
    res = subprocess.run([MININET_PY, "-c", _MININET_CHILD, tag, str(n)],
                         capture_output=True, text=True, timeout=600)
    for line in res.stdout.splitlines():
        if line.startswith("NVBRESULT "):
            out: dict[str, Any] = json.loads(line[len("NVBRESULT "):])
            return out
    raise RuntimeError(f"Mininet run failed (exit {res.returncode}): {res.stderr.strip()[-800:]}")


# -- the benchmark --------------------------------------------------------
def run(args: argparse.Namespace, rep: Report) -> None:
    import uvloop

    import netvirt

    rep.log(f"== build: star sizes {args.sizes}, {args.runs} runs, prefix {args.prefix}")
    rep.log(machine_line())
    use_mn = not args.no_mininet and not args.smoke and mininet_available()
    if not use_mn and not args.no_mininet and not args.smoke:
        rep.note("Mininet anchor skipped: 'import mininet' fails under /usr/bin/python3 "
                 "or brctl is missing (apt-get install mininet bridge-utils)")
    lab = f"{args.prefix}n"
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    workdir = tempfile.mkdtemp(prefix="nvb-build.")
    runs_log: dict[str, list[dict[str, Any]]] = {}
    try:
        for n in args.sizes:
            t = now()
            scenario = netvirt.load(SCENARIO, {"n": str(n)})
            rep.log(f"  N={n}: scenario loaded in {now() - t:.3f} s (not timed)")
            shell = ShellStar(args.prefix, n, tempfile.mkdtemp(dir=workdir))
            sides: dict[str, list[dict[str, Any]]] = {"netvirt": [], "ipbatch": [], "mininet": []}
            order = ["netvirt", "ipbatch"] + (["mininet"] if use_mn and n <= args.mininet_max
                                              else [])
            for r in range(1, args.runs + 1):
                for side in order:  # interleaved: A, B, C, A, B, C, ...
                    if side == "netvirt":
                        d = runner.run(netvirt_once(scenario, lab, n))
                    elif side == "ipbatch":
                        d = shell.run()
                    else:
                        d = mininet_once(n)
                    sides[side].append(d)
                    rep.log(f"  {side} N={n} run {r}: build={d['build']:.3f}s "
                            f"teardown={d['teardown']:.3f}s settled={d['settled']:.3f}s "
                            f"ping={'ok' if d['ping_ok'] else 'FAILED'} ({d['ping_tries']} tries)"
                            + (" phases " + " ".join(f"{k}={v:.3f}s" for k, v in d['phases']
                                                     .items()) if "phases" in d else ""))
                    if not d["ping_ok"]:
                        rep.fail(f"{side} N={n} run {r}: no ping from the first host to the last")
                    time.sleep(args.pause)
            for side, ds in sides.items():
                if not ds:
                    continue
                runs_log[f"{side}-N{n}"] = ds
                for k in ("build", "teardown", "settled"):
                    rep.result(f"{side}-N{n}-{k}", "s", [d[k] for d in ds])
                if side == "ipbatch":  # root = netns add + veth add: one process, kernel work
                    rep.result(f"ipbatch-N{n}-phase-root", "s", [d["phases"]["root"] for d in ds])
            rep.ratio(f"build-N{n} netvirt/ip-batch", f"netvirt-N{n}-build", f"ipbatch-N{n}-build",
                      "<= 0.6" if n == 200 else None)
            rep.ratio(f"build-N{n} ip-batch/netvirt", f"ipbatch-N{n}-build", f"netvirt-N{n}-build")
            rep.ratio(f"teardown-N{n} netvirt/ip-batch", f"netvirt-N{n}-teardown",
                      f"ipbatch-N{n}-teardown")
            rep.ratio(f"settled-N{n} netvirt/ip-batch", f"netvirt-N{n}-settled",
                      f"ipbatch-N{n}-settled", "<= 1.0" if n == 200 else None)
            if sides["mininet"]:
                rep.ratio(f"build-N{n} mininet/netvirt", f"mininet-N{n}-build",
                          f"netvirt-N{n}-build", ">= 20" if n == 200 else None)
                rep.ratio(f"teardown-N{n} mininet/netvirt-settled", f"mininet-N{n}-teardown",
                          f"netvirt-N{n}-settled")
        if 100 in args.sizes and 1000 in args.sizes:
            rep.ratio("scaling netvirt t(1000)/t(100)", "netvirt-N1000-build",
                      "netvirt-N100-build", "<= 11")
            rep.ratio("scaling ip-batch t(1000)/t(100)", "ipbatch-N1000-build",
                      "ipbatch-N100-build")
            rep.ratio("scaling ip-batch root phase t(1000)/t(100)", "ipbatch-N1000-phase-root",
                      "ipbatch-N100-phase-root")
    finally:
        runner.close()
        shutil.rmtree(workdir, ignore_errors=True)
    rep.extra["runs"] = runs_log


def profile(n: int, prefix: str, top: int) -> None:
    """cProfile of one netvirt build + teardown at size ``n``: the event-loop thread and,
    summed over them, the namespace worker threads (where the netlink work runs)."""
    import cProfile
    import pstats
    import threading

    import uvloop

    import netvirt

    scenario = netvirt.load(SCENARIO, {"n": str(n)})
    workers: list[cProfile.Profile] = []
    orig_run = threading.Thread.run

    def run_profiled(self: threading.Thread) -> None:
        p = cProfile.Profile()
        workers.append(p)
        p.enable()
        try:
            orig_run(self)
        finally:
            p.disable()

    main, down = cProfile.Profile(), cProfile.Profile()
    threading.Thread.run = run_profiled  # type: ignore[method-assign]
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            topo = netvirt.Topology(scenario.with_name(f"{prefix}p"))
            t0 = now()
            main.enable()
            try:
                runner.run(topo.build())
            finally:
                main.disable()
                t1 = now()
                down.enable()
                try:
                    runner.run(topo.teardown())
                finally:
                    down.disable()
                    t2 = now()
    finally:
        threading.Thread.run = orig_run  # type: ignore[method-assign]
    print(f"== cProfile of netvirt build, star N={n}: {t1 - t0:.3f} s wall under the profiler "
          f"(teardown {t2 - t1:.3f} s)")
    print(f"-- build, event-loop thread, top {top} by cumulative time")
    pstats.Stats(main).sort_stats("cumulative").print_stats(top)
    if workers:
        print(f"-- build and teardown, {len(workers)} worker threads summed (concurrent: sums "
              f"exceed wall time), top {top} by cumulative time")
        pstats.Stats(*workers).sort_stats("cumulative").print_stats(top)
    print(f"-- teardown, event-loop thread, top {top} by cumulative time")
    pstats.Stats(down).sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    p = parser("S3b star build/teardown: netvirt vs ip -batch vs Mininet", runs=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 200, 1000], metavar="N")
    p.add_argument("--no-mininet", action="store_true", help="skip the Mininet anchor")
    p.add_argument("--mininet-max", type=int, default=200, metavar="N",
                   help="largest size run with Mininet (default 200: it needs ~35 ms/host)")
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds between runs, for the kernel's deferred cleanup (default 0.2)")
    p.add_argument("--profile", type=int, metavar="N", help="only profile one netvirt build")
    p.add_argument("--top", type=int, default=15, help="functions shown by --profile")
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.profile:
        profile(args.profile, args.prefix, args.top)
        return 0
    if args.smoke:
        args.sizes, args.runs, args.pause = [4], 1, 0.0
    rep = Report("build", json_mode=args.json)
    run(args, rep)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
