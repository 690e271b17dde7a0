"""SIGKILL a build at many points, then ``down``: nothing of the lab may remain.

Used by the kill tests, and on its own for the figures of the closing notes::

    python -m tests.kernel.chaos --trials 200 [--scenario FILE] [--param n=50]

Each trial starts ``netvirt run`` as a user would, waits until the lab's state
record exists (the build has started), kills it with SIGKILL after a delay
spread evenly over the build's duration, runs ``netvirt down``, and checks
that no namespace, state record or tagged host link of the lab is left and
that the lab name can be used again.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@dataclass
class Trial:
    lab: str
    delay: float
    down_rc: int
    leftovers: list[str] = field(default_factory=list)
    down_output: str = ""
    #: the run's own teardown had completed before the kill (a build faster than the delay)
    finished: bool = False

    @property
    def ok(self) -> bool:
        """Nothing left, and ``down`` succeeded (or found no lab: the run had finished)."""
        return not self.leftovers and (self.down_rc == 0 or (self.finished and self.down_rc == 3))


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netvirt", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def leftovers(lab: str, host_links: tuple[str, ...] = ()) -> list[str]:
    found = []
    with contextlib.suppress(FileNotFoundError):
        found += [f"namespace {n}" for n in os.listdir("/run/netns") if n.startswith(f"nv-{lab}-")]
    if Path(f"/run/netvirt/{lab}").exists():
        found.append(f"state record /run/netvirt/{lab}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if f"netvirt:{lab}" in line or name in host_links:
            found.append(f"host link {name}")
    return found


def kill_during_build(scenario: str, lab: str, delay: float, params: tuple[str, ...] = (),
                      host_links: tuple[str, ...] = ()) -> Trial:
    args = [sys.executable, "-m", "netvirt", "run", scenario, "--name", lab]
    for p in params:
        args += ["--param", p]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=ENV)
    journal = Path(f"/run/netvirt/{lab}/journal.jsonl")
    deadline = time.monotonic() + 30
    while not journal.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.0005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = not journal.exists()  # the run's own teardown had released the lab
    down = _cli("down", lab)
    return Trial(lab, delay, down.returncode, leftovers(lab, host_links), down.stdout + down.stderr,
                 finished)


def build_time(scenario: str, lab: str, params: tuple[str, ...] = ()) -> float:
    """Seconds from the state record's creation to the end of the build (one full run)."""
    args = ["run", scenario, "--name", lab, "--json"]
    for p in params:
        args += ["--param", p]
    t0 = time.monotonic()
    res = _cli(*args)
    if res.returncode != 0:
        raise AssertionError(f"reference run failed: {res.stdout}\n{res.stderr}")
    import json

    report = json.loads(res.stdout)
    return float(report.get("build_seconds") or (time.monotonic() - t0))


def clean(lab: str) -> None:
    """Remove what a failed trial left (so one failure does not poison the next trials)."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else ():
        if name.startswith(f"nv-{lab}-"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["rm", "-rf", f"/run/netvirt/{lab}"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--scenario", default="scenarios/s3b_star.py")
    ap.add_argument("--param", action="append", default=None)
    args = ap.parse_args()
    params = tuple(args.param if args.param is not None else ["n=50"])
    tag = f"ch{os.getpid() % 10000:04d}"
    span = build_time(args.scenario, f"{tag}ref", params) * 1.2
    leaks = 0
    for i in range(args.trials):
        lab = f"{tag}{i % 100:02d}"
        t = kill_during_build(args.scenario, lab, span * (i + 0.5) / args.trials, params)
        if not t.ok:
            leaks += 1
            print(f"trial {i} delay {t.delay * 1000:.1f} ms: down rc {t.down_rc}, left {t.leftovers}\n"
                  f"  {t.down_output.strip()}")
            clean(lab)
    print(f"{args.trials} kills over {span * 1000:.0f} ms of build: {leaks} left something behind")
    return 1 if leaks else 0


if __name__ == "__main__":
    sys.exit(main())
