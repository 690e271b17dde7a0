"""Start-up time of the command line vs the interpreter's own start.

    python -m benchmarks.startup [--runs 10] [--json] [--smoke]

Wall time, measured from this process around each child (spawn to exit), of

* ``python -c pass`` (the anchor: what any Python command pays),
* ``python -m netvirt --help`` (target < 0.05 s),
* ``python -m netvirt validate scenarios/s4-udp-tunnel.yaml`` (target < 0.1 s),
* ``python -m netvirt validate scenarios/s3b_star.py --param n=200`` (target < 0.1 s),

run alternately (pass, help, validate, pass, ...) with this interpreter
(``sys.executable``, so no pyenv or venv shim is counted), from the repository
root, with bytecode cached as an installed package has it (in a scratch
PYTHONPYCACHEPREFIX filled by the warm-up round, removed at the end; an inherited
PYTHONDONTWRITEBYTECODE is dropped for the children). Each must exit 0. Needs no
root and creates nothing else. With ``--baseline DIR``
the netvirt commands also run from another checkout, interleaved in the same rounds.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile

from benchmarks.common import REPO, Report, check_args, machine_line, now, parser

COMMANDS = {
    "python-pass": ["-c", "pass"],
    "netvirt-help": ["-m", "netvirt", "--help"],
    "netvirt-validate": ["-m", "netvirt", "validate", "scenarios/s4-udp-tunnel.yaml"],
    "netvirt-validate-star200": ["-m", "netvirt", "validate", "scenarios/s3b_star.py",
                                 "--param", "n=200"],
}
TARGETS = {"netvirt-help": "< 0.05", "netvirt-validate": "< 0.1", "netvirt-validate-star200": "< 0.1"}


#: bytecode as an installed package has it (pip compiles on install): children may write it,
#: into a cache of this run (PYTHONPYCACHEPREFIX), never into the checkout; the untimed
#: warm-up round fills it. PYTHONDONTWRITEBYTECODE would time the compiler instead.
_PYCACHE = tempfile.mkdtemp(prefix="nv-startup-pyc-")
_BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def time_once(args: list[str], repo: str = REPO) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall seconds, CPU seconds of the child: user + system, res). CPU time is what the
    command costs; on a loaded machine it is far steadier than the wall time."""
    env = {**_BASE_ENV, "PYTHONPATH": repo, "PYTHONPYCACHEPREFIX": _PYCACHE}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = now()
    res = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True)
    wall = now() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), res


def main(argv: list[str] | None = None) -> int:
    p = parser("start-up time of python -m netvirt vs python -c pass", runs=10)
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed rounds first, so the page cache is warm (default 1)")
    p.add_argument("--baseline", metavar="DIR",
                   help="another checkout (e.g. 'git worktree add /tmp/v010 v0.1.0'): its netvirt "
                        "commands run interleaved with these, reported as NAME@baseline")
    args = p.parse_args(argv)
    check_args(args)
    if args.smoke:
        args.runs, args.warmup = 1, 0
    rep = Report("startup", json_mode=args.json)
    rep.log(f"== startup: {args.runs} runs each, {sys.executable}")
    rep.log(machine_line())
    runs: dict[str, tuple[list[str], str]] = {k: (a, REPO) for k, a in COMMANDS.items()}
    if args.baseline:
        base = os.path.abspath(args.baseline)
        runs.update({f"{k}@baseline": (a, base) for k, a in COMMANDS.items() if k != "python-pass"})
    for _ in range(args.warmup):
        for a, repo in runs.values():
            time_once(a, repo)
    times: dict[str, list[float]] = {k: [] for k in runs}
    cpu: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(1, args.runs + 1):
        for name, (a, repo) in runs.items():
            t, c, res = time_once(a, repo)
            if res.returncode != 0:
                rep.fail(f"{name} run {r}: exit {res.returncode}: "
                         f"{res.stderr.decode(errors='replace').strip()[-300:]}")
                t = c = float("nan")
            times[name].append(t)
            cpu[name].append(c)
    for name, v in times.items():
        rep.result(f"startup-{name}", "s", v)
    for name, v in cpu.items():
        rep.result(f"startup-cpu-{name}", "s", v)
    for name in TARGETS:
        rep.ratio(f"{name}/python-pass", f"startup-{name}", "startup-python-pass")
        rep.target(f"{name} absolute", f"startup-{name}", TARGETS[name])
    if args.baseline:
        for name in TARGETS:
            rep.ratio(f"{name}/baseline", f"startup-{name}", f"startup-{name}@baseline")
            rep.ratio(f"cpu {name}/baseline", f"startup-cpu-{name}", f"startup-cpu-{name}@baseline")
    return rep.finish()


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        shutil.rmtree(_PYCACHE, ignore_errors=True)
