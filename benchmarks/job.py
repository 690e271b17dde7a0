"""Whole jobs, as a user runs them: one process from start to exit, against its anchors.

    python -m benchmarks.job [--sizes 100 200 1000] [--runs 3] [--json] [--smoke]

The job: build the S3b star of N nodes (``scenarios/s3b_star.py``), ping across it,
tear it down. Each side is one process spawned by this benchmark and timed from
spawn to exit (wall), with its CPU time (user + system of the process and its
children, from ``getrusage(RUSAGE_CHILDREN)``). For each size the sides run
alternately, run by run (netvirt, ip-batch, [Mininet], netvirt, ...):

* **netvirt**: ``python -m netvirt run scenarios/s3b_star.py --param n=N --name LAB
  --json`` installed as the README says (a venv of this interpreter, ``pip install .``,
  made once per benchmark run in its scratch directory, about 10 s; run from that
  directory, so the installed package is what runs; ``--python PATH`` uses an existing
  install, ``--in-place`` this interpreter with the checkout on ``PYTHONPATH``, the
  smoke mode's choice): interpreter start, imports, scenario load, build,
  the scenario's steps (two pings, first->last and last->first, 3 each), teardown.
  Its JSON report gives the build time on its own (``build_seconds``).
* **ip-batch**: the best hand-written shell script for the same job (BASELINES.md
  section 2, "batch" mode: N+2 ``ip`` processes, the minimum iproute2 6.1 allows):
  one root ``ip -batch`` with every ``netns add`` and each veth created with both
  ends in place, one ``ip -n SW -batch`` for the bridge and its ports, one
  ``ip -n HOST -batch`` per host (address, links up); the same lab as netvirt's defaults
  make (no IPv6 link-local on the IPv4-only veth ends, a bridge without multicast
  snooping: README, "Interface keys"), which also spares the script the multicast storm
  of a thousand hosts' IPv6 start-up on one bridge; then one ``ping -c1 -W1``
  from the first host to the last (retried up to 20 times), then one ``ip -batch``
  of ``netns del``. The script writes its batch input itself (bash loops into
  ``ip -batch -``, a here-string per host: no file, no extra process), as a user's
  script would. Its root phase (``netns add`` + veth add: kernel work in one
  process) is timed inside the script, for the scaling comparison.
* **Mininet** (2.3, LinuxBridge, no controller, one process under Debian's
  ``/usr/bin/python3``): import, ``Mininet(...)``, ``net.start()``, one ping from
  the first host to the last through its shell (retried up to 20 times),
  ``net.stop()``. Run up to ``--mininet-max`` nodes when ``import mininet`` works.

A side whose ping fails fails the benchmark (exit 1), so a broken job cannot
look fast. Between runs the benchmark sleeps a little longer for larger labs:
the kernel destroys namespaces after their last user has gone, and that
cleanup must not fall into the next side's run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from benchmarks.build import MININET_PY, MININET_STAR, SCENARIO, host_addr, mininet_available, mininet_tag
from benchmarks.common import (
    REPO,
    Report,
    check_args,
    delete_netns,
    machine_line,
    netns_exists,
    now,
    parser,
    readme_install,
    require_root,
)

_IPBATCH_JOB = r"""#!/bin/bash
# The S3b star job with iproute2 alone: build, one ping first -> last, teardown.
P=$1 N=$2 LAST=$3
SW=${P}-sw
echo "T0 $EPOCHREALTIME" >&2
{
    echo "netns add $SW"
    for ((i = 1; i <= N; i++)); do echo "netns add $P-h$i"; done
    for ((i = 1; i <= N; i++)); do
        echo "link add p$i netns $SW type veth peer name eth0 netns $P-h$i"
    done
} | ip -batch - || exit 1
echo "T1 $EPOCHREALTIME" >&2
{
    echo "link add br0 type bridge mcast_snooping 0"
    echo "link set br0 up"
    for ((i = 1; i <= N; i++)); do
        echo "link set p$i addrgenmode none"
        echo "link set p$i master br0 up"
    done
} | ip -n "$SW" -batch - || exit 1
echo "T2 $EPOCHREALTIME" >&2
for ((i = 1; i <= N; i++)); do
    ip -n "$P-h$i" -batch - <<< "addr add 10.2.$((i / 250)).$((i % 250 + 1))/16 dev eth0
link set eth0 addrgenmode none
link set eth0 up
link set lo up" || exit 1
done
echo "T3 $EPOCHREALTIME" >&2
ok=0
for ((t = 1; t <= 20; t++)); do
    if ip netns exec "$P-h1" ping -c1 -W1 "$LAST" > /dev/null 2>&1; then ok=1; break; fi
done
echo "T4 $EPOCHREALTIME" >&2
{
    for ((i = 1; i <= N; i++)); do echo "netns del $P-h$i"; done
    echo "netns del $SW"
} | ip -batch - || exit 1
echo "T5 $EPOCHREALTIME" >&2
[ "$ok" = 1 ] || { echo "ping $P-h1 -> $LAST failed" >&2; exit 2; }
"""

_MININET_JOB = MININET_STAR + r"""
net = Mininet(topo=Star(n=n), switch=LinuxBridge, controller=None, ipBase='10.78.0.0/16',
              autoSetMacs=False, waitConnected=False)
ok = False
try:
    net.start()
    h1, hn = net.get(tag + 'h1'), net.get(tag + 'h%d' % n)
    for _ in range(20):
        if ' 0% packet loss' in h1.cmd('ping -c1 -W1 %s' % hn.IP()):
            ok = True
            break
finally:
    net.stop()
sys.exit(0 if ok else 2)
"""


#: bytecode as an installed package has it (pip compiles on install): --in-place writes it
#: into a cache of this run (PYTHONPYCACHEPREFIX), never into the checkout; an untimed netvirt
#: job fills it. An inherited PYTHONDONTWRITEBYTECODE would time the compiler (about 0.12 s).
_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
#: how the netvirt side runs: its interpreter and its working directory (see run())
_NETVIRT = {"python": sys.executable, "cwd": REPO}


def timed(argv: list[str], timeout: float = 600, cwd: str = REPO,
          env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Run ``argv`` in ``cwd``: (wall s, CPU s of it and its children, result)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = now()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                         env=env or _ENV)
    t1 = now()
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return t1 - t0, cpu, res


def netvirt_job(lab: str, n: int) -> dict[str, Any]:
    names = [f"nv-{lab}-sw"] + [f"nv-{lab}-h{i}" for i in range(1, n + 1)]
    wall, cpu, res = timed([_NETVIRT["python"], "-m", "netvirt", "run", SCENARIO,
                            "--param", f"n={n}", "--name", lab, "--json"], cwd=_NETVIRT["cwd"])
    try:
        doc = json.loads(res.stdout)
    except ValueError:
        doc = {}
    if res.returncode != 0 or not doc.get("ok"):
        delete_netns(names)  # exactly this lab's: it did not exist before the run
        raise RuntimeError(f"netvirt run failed (exit {res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()[-800:]}")
    return {"job": wall, "cpu": cpu, "build": doc["build_seconds"],
            "teardown": doc["teardown_seconds"], "ping_ok": True}


def ipbatch_job(script: str, prefix: str, n: int) -> dict[str, Any]:
    names = [f"{prefix}-sw"] + [f"{prefix}-h{i}" for i in range(1, n + 1)]
    taken = [x for x in names if netns_exists(x)]
    if taken:
        raise RuntimeError(f"namespaces exist already (not ours to touch): {taken[:3]}...")
    wall, cpu, res = timed(["bash", script, prefix, str(n), host_addr(n)])
    t = {}
    for line in res.stderr.splitlines():
        k, _, v = line.partition(" ")
        if k in ("T0", "T1", "T2", "T3", "T4", "T5"):
            t[k] = float(v)
    if res.returncode not in (0, 2) or len(t) < 6:
        delete_netns(names)
        raise RuntimeError(f"ip-batch job failed (exit {res.returncode}): {res.stderr[-800:]}")
    return {"job": wall, "cpu": cpu, "build": t["T3"] - t["T0"], "root": t["T1"] - t["T0"],
            "ping": t["T4"] - t["T3"], "teardown": t["T5"] - t["T4"],
            "ping_ok": res.returncode == 0}


def mininet_job(n: int) -> dict[str, Any]:
    tag = mininet_tag()
    if any(x.startswith(f"{tag}s1") or x.startswith(f"{tag}h") for x in os.listdir("/sys/class/net")):
        raise RuntimeError(f"links named {tag}s1*/{tag}h* exist already: not ours to touch")
    wall, cpu, res = timed([MININET_PY, "-c", _MININET_JOB, tag, str(n)])
    if res.returncode not in (0, 2):
        raise RuntimeError(f"Mininet job failed (exit {res.returncode}): {res.stderr[-800:]}")
    return {"job": wall, "cpu": cpu, "ping_ok": res.returncode == 0}


def run(args: argparse.Namespace, rep: Report) -> None:
    rep.log(f"== job: star sizes {args.sizes}, {args.runs} runs, prefix {args.prefix}")
    rep.log(machine_line())
    use_mn = not args.no_mininet and not args.smoke and mininet_available()
    if not use_mn and not args.no_mininet and not args.smoke:
        rep.note("Mininet anchor skipped: 'import mininet' fails under /usr/bin/python3 "
                 "or brctl is missing (apt-get install mininet bridge-utils)")
    workdir = tempfile.mkdtemp(prefix="nvb-job.")
    script = os.path.join(workdir, "star-job.sh")
    with open(script, "w") as f:
        f.write(_IPBATCH_JOB)
    runs_log: dict[str, list[dict[str, Any]]] = {}
    try:
        if args.python:
            _NETVIRT.update(python=args.python, cwd=workdir)
        elif args.in_place or args.smoke:
            _ENV["PYTHONPYCACHEPREFIX"] = os.path.join(workdir, "pyc")
            _ENV["PYTHONPATH"] = REPO
        else:
            _NETVIRT.update(python=readme_install(workdir), cwd=workdir)
        rep.log(f"netvirt side: {_NETVIRT['python']} (cwd {_NETVIRT['cwd']})")
        netvirt_job(f"{args.prefix}j", 4)  # untimed: fills the bytecode cache (--in-place)
        for n in args.sizes:
            sides: dict[str, list[dict[str, Any]]] = {"netvirt": [], "ipbatch": [], "mininet": []}
            order = ["netvirt", "ipbatch"] + (["mininet"] if use_mn and n <= args.mininet_max
                                              else [])
            pause = args.pause + 0.002 * n  # the kernel's deferred namespace cleanup
            for r in range(1, args.runs + 1):
                for side in order:  # interleaved: A, B, C, A, B, C, ...
                    if side == "netvirt":
                        d = netvirt_job(f"{args.prefix}j", n)
                    elif side == "ipbatch":
                        d = ipbatch_job(script, f"{args.prefix}s", n)
                    else:
                        d = mininet_job(n)
                    sides[side].append(d)
                    rep.log(f"  {side} N={n} run {r}: " + " ".join(
                        f"{k}={v:.3f}s" for k, v in d.items() if isinstance(v, float))
                        + f" ping={'ok' if d['ping_ok'] else 'FAILED'}")
                    if not d["ping_ok"]:
                        rep.fail(f"{side} N={n} run {r}: no ping from the first host to the last")
                    time.sleep(pause)
            for side, ds in sides.items():
                if not ds:
                    continue
                runs_log[f"{side}-N{n}"] = ds
                for k in ("job", "cpu", "build", "root"):
                    if k in ds[0]:
                        rep.result(f"{side}-N{n}-{k}", "s", [d[k] for d in ds])
            rep.ratio(f"job-N{n} netvirt/ip-batch", f"netvirt-N{n}-job", f"ipbatch-N{n}-job",
                      "<= 0.8" if n == 200 else None)
            rep.ratio(f"job-N{n} netvirt/ip-batch CPU", f"netvirt-N{n}-cpu", f"ipbatch-N{n}-cpu")
            if sides["mininet"]:
                rep.ratio(f"job-N{n} mininet/netvirt", f"mininet-N{n}-job", f"netvirt-N{n}-job",
                          ">= 20" if n == 200 else None)
            if n == 1000:
                rep.target("job-N1000 netvirt whole job", "netvirt-N1000-job", "< 3")
        if 100 in args.sizes and 1000 in args.sizes:
            s_nv = rep.ratio("scaling netvirt build t(1000)/t(100)", "netvirt-N1000-build",
                             "netvirt-N100-build")
            s_root = rep.ratio("scaling ip-batch root phase t(1000)/t(100)",
                               "ipbatch-N1000-root", "ipbatch-N100-root")
            rep.ratio("scaling ip-batch build t(1000)/t(100)", "ipbatch-N1000-build",
                      "ipbatch-N100-build")
            rep.ratio("scaling netvirt whole job t(1000)/t(100)", "netvirt-N1000-job",
                      "netvirt-N100-job")
            if s_nv is not None and s_root is not None:
                met = s_nv.value <= s_root.value
                rep.log(f"TARGET scaling netvirt/kernel: {s_nv.value:.2f} vs {s_root.value:.2f}"
                        f"  [target <= the ip-batch root phase ratio: {'met' if met else 'MISSED'}]")
                rep.extra["scaling_met"] = met
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rep.extra["runs"] = runs_log


def main(argv: list[str] | None = None) -> int:
    p = parser("S3b star whole job: netvirt run vs an ip -batch script vs Mininet", runs=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 200, 1000], metavar="N")
    p.add_argument("--no-mininet", action="store_true", help="skip the Mininet anchor")
    p.add_argument("--python", metavar="PATH",
                   help="the interpreter of an existing netvirt install (default: install one "
                        "as the README does, a venv and pip install ., in a scratch directory)")
    p.add_argument("--in-place", action="store_true",
                   help="run the checkout with this interpreter instead (PYTHONPATH)")
    p.add_argument("--mininet-max", type=int, default=200, metavar="N",
                   help="largest size run with Mininet (default 200)")
    p.add_argument("--pause", type=float, default=0.2,
                   help="seconds between runs, plus 2 ms per node (default 0.2)")
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.smoke:
        args.sizes, args.runs, args.pause = [4], 1, 0.0
    rep = Report("job", json_mode=args.json)
    run(args, rep)
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
