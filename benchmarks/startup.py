"""Start-up time of the command line vs the interpreter's own start.

    python -m benchmarks.startup [--runs 10] [--json] [--smoke]

Wall time, measured from this process around each child (spawn to exit), of

* ``python -c pass`` (the anchor: what any Python command pays),
* ``python -m netvirt --help`` (target < 0.05 s),
* ``python -m netvirt validate scenarios/s4-udp-tunnel.yaml`` (target < 0.1 s),
* ``python -m netvirt validate scenarios/s3b_star.py --param n=200`` (target < 0.1 s),

run alternately (pass, help, validate, pass, ...) with this interpreter
(``sys.executable``, so no pyenv or venv shim is counted), from the repository
root. Each must exit 0. Needs no root and creates nothing. With ``--baseline DIR``
the netvirt commands also run from another checkout, interleaved in the same rounds.
"""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.common import REPO, Report, check_args, machine_line, now, parser

COMMANDS = {
    "python-pass": ["-c", "pass"],
    "netvirt-help": ["-m", "netvirt", "--help"],
    "netvirt-validate": ["-m", "netvirt", "validate", "scenarios/s4-udp-tunnel.yaml"],
    "netvirt-validate-star200": ["-m", "netvirt", "validate", "scenarios/s3b_star.py",
                                 "--param", "n=200"],
}
TARGETS = {"netvirt-help": "< 0.05", "netvirt-validate": "< 0.1", "netvirt-validate-star200": "< 0.1"}


def time_once(args: list[str], repo: str = REPO) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    env = {**os.environ, "PYTHONPATH": repo}
    t0 = now()
    res = subprocess.run([sys.executable, *args], cwd=repo, env=env, capture_output=True)
    return now() - t0, res


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
    for r in range(1, args.runs + 1):
        for name, (a, repo) in runs.items():
            t, res = time_once(a, repo)
            if res.returncode != 0:
                rep.fail(f"{name} run {r}: exit {res.returncode}: "
                         f"{res.stderr.decode(errors='replace').strip()[-300:]}")
                t = float("nan")
            times[name].append(t)
    for name, v in times.items():
        rep.result(f"startup-{name}", "s", v)
    for name in TARGETS:
        rep.ratio(f"{name}/python-pass", f"startup-{name}", "startup-python-pass")
        rep.target(f"{name} absolute", f"startup-{name}", TARGETS[name])
    if args.baseline:
        for name in TARGETS:
            rep.ratio(f"{name}/baseline", f"startup-{name}", f"startup-{name}@baseline")
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
