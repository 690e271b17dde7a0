"""Start-up time of the command line vs the interpreter's own start.

    python -m benchmarks.startup [--runs 10] [--json] [--smoke]

Wall time, measured from this process around each child (spawn to exit), of

* ``python -c pass`` (the anchor: what any Python command pays),
* ``python -m netvirt --help`` (target < 0.05 s),
* ``python -m netvirt validate scenarios/s4-udp-tunnel.yaml`` (target < 0.1 s),
* ``python -m netvirt validate scenarios/s3b_star.py --param n=200`` (target < 0.1 s),

run alternately (pass, help, validate, pass, ...), as a user runs them after the
README's install: a venv of this interpreter with ``pip install .`` (in a scratch
directory, removed at the end), its ``bin/python`` for the anchor and netvirt alike,
from outside the checkout (scenario paths absolute), so the installed package and
its compiled bytecode are what runs. A venv has none of the machine interpreter's
site-packages ``.pth`` hooks (here an editable finder and a certifi hook, about
25 ms at every start, ``python -c pass`` included).

``--in-place`` runs this interpreter (``sys.executable``) from the repository root
instead, the checkout on PYTHONPATH, with bytecode cached in a scratch
PYTHONPYCACHEPREFIX filled by the warm-up round (an inherited
PYTHONDONTWRITEBYTECODE is dropped for the children). ``--baseline DIR`` (in
place, too) also runs the netvirt commands from another checkout, interleaved in
the same rounds; ``--smoke`` (one round) runs in place, too. Each command must exit 0.
Needs no root.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile

from benchmarks.common import REPO, Report, check_args, machine_line, now, parser, readme_install

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


#: the interpreter and working directory of an installed run (main() fills it in; empty:
#: in place)
_INSTALLED: dict[str, str] = {}


def time_once(args: list[str], repo: str = REPO) -> tuple[float, float, subprocess.CompletedProcess[bytes]]:
    """(wall seconds, CPU seconds of the child: user + system, res). CPU time is what the
    command costs; on a loaded machine it is far steadier than the wall time."""
    if _INSTALLED and repo == REPO:
        python, cwd, env = _INSTALLED["python"], _INSTALLED["cwd"], _BASE_ENV
        args = [os.path.join(REPO, a) if a.startswith("scenarios/") else a for a in args]
    else:
        python, cwd = sys.executable, repo
        env = {**_BASE_ENV, "PYTHONPATH": repo, "PYTHONPYCACHEPREFIX": _PYCACHE}
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = now()
    res = subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True)
    wall = now() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), res


def main(argv: list[str] | None = None) -> int:
    p = parser("start-up time of python -m netvirt vs python -c pass", runs=10)
    p.add_argument("--warmup", type=int, default=1,
                   help="untimed rounds first, so the page cache is warm (default 1)")
    p.add_argument("--baseline", metavar="DIR",
                   help="another checkout (e.g. 'git worktree add /tmp/v010 v0.1.0'): its netvirt "
                        "commands run interleaved with these, reported as NAME@baseline "
                        "(implies --in-place)")
    p.add_argument("--in-place", action="store_true",
                   help="this interpreter with the checkout on PYTHONPATH, instead of a venv "
                        "with the README's pip install .")
    args = p.parse_args(argv)
    check_args(args)
    if args.smoke:
        args.runs, args.warmup = 1, 0
    rep = Report("startup", json_mode=args.json)
    if not (args.in_place or args.baseline or args.smoke):  # (--smoke: in place, no pip)
        _INSTALLED.update(python=readme_install(_PYCACHE), cwd=_PYCACHE)
    how = (f"installed as the README does ({_INSTALLED['python']})" if _INSTALLED
           else f"in place ({sys.executable}, PYTHONPATH={REPO})")
    rep.log(f"== startup: {args.runs} runs each, {how}")
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
