"""Shared helpers of the benchmarks: options, statistics, result lines, names, settling.

Output contract (the same as the anchor scripts the figures are compared with, so figures
can be read side by side)::

    RESULT <name>: median=1.234 min=1.200 max=1.300 s (n=3) runs=1.234 1.200 1.300
    RATIO <name>: 0.52 (paired runs 0.49-0.55)  [target <= 0.6: met]
    TARGET <name>: 0.123 s  [target < 0.25: met]

With ``--json`` these lines (and the progress) go to stderr and stdout gets
one JSON document with the same figures, the machine and the command line.

Ratios are ratios of medians; "paired runs" is the range of the per-run
ratios (netvirt and the anchor run alternately, A,B,A,B..., so run i of
each shares the machine's noise).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import datetime
import json
import os
import platform
import re
import select
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

now = time.perf_counter
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{1,10}$")


# -- options -------------------------------------------------------------
def default_prefix() -> str:
    """``nvb`` plus a tag of this process: what every benchmark object is named after."""
    return f"nvb{os.getpid() % 4096:03x}"


def parser(description: str, *, runs: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--runs", type=int, default=runs, help=f"runs per side (default {runs})")
    p.add_argument("--smoke", action="store_true",
                   help="tiny sizes, 1 run, no optional anchors: checks that it works")
    p.add_argument("--json", action="store_true",
                   help="one JSON document on stdout (the text lines go to stderr)")
    p.add_argument("--prefix", default=default_prefix(),
                   help="start of every name created (namespaces, labs); [a-z][a-z0-9]{1,10}, "
                        "default nvb + a tag of this process")
    return p


def check_args(args: argparse.Namespace) -> None:
    if not _PREFIX_RE.match(args.prefix):
        raise SystemExit(f"--prefix {args.prefix!r}: want [a-z][a-z0-9]{{1,10}} (lab names are "
                         f"at most 12 characters)")
    if args.runs < 1:
        raise SystemExit("--runs must be at least 1")


def require_root() -> None:
    if os.geteuid() != 0:
        raise SystemExit("this benchmark creates namespaces: run it as root")


# -- statistics and results ----------------------------------------------
@dataclass
class Result:
    name: str
    unit: str
    runs: list[float]
    median: float = 0.0
    min: float = 0.0
    max: float = 0.0
    n: int = 0

    def __post_init__(self) -> None:
        v = [x for x in self.runs if x == x]  # drop NaN (failed runs)
        self.n = len(v)
        if v:
            self.median, self.min, self.max = statistics.median(v), min(v), max(v)
        else:
            self.median = self.min = self.max = float("nan")


@dataclass
class Ratio:
    name: str
    value: float
    paired_min: float
    paired_max: float
    target: str | None = None  # e.g. "<= 0.6"
    met: bool | None = None


@dataclass
class Target:
    name: str
    value: float
    unit: str
    target: str
    met: bool


def _fmt(x: float) -> str:
    if x != x:
        return "nan"
    return f"{x:.3f}" if abs(x) < 1000 else f"{x:.0f}"


def _meets(value: float, target: str) -> bool:
    op, _, num = target.partition(" ")
    t = float(num)
    return {"<=": value <= t, "<": value < t, ">=": value >= t, ">": value > t}[op]


@dataclass
class Report:
    """Collects and prints the figures of one benchmark run."""

    benchmark: str
    json_mode: bool = False
    results: dict[str, Result] = field(default_factory=dict)
    ratios: list[Ratio] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    started: str = field(default_factory=lambda: datetime.datetime.now().astimezone()
                         .isoformat(timespec="seconds"))

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr if self.json_mode else sys.stdout, flush=True)

    def note(self, msg: str) -> None:
        self.notes.append(msg)
        self.log(f"NOTE {msg}")

    def fail(self, msg: str) -> None:
        """A run that did not work (ping failed, iperf3 error): reported, exit code 1."""
        self.failures.append(msg)
        self.log(f"FAIL {msg}")

    def result(self, name: str, unit: str, runs: Sequence[float]) -> Result:
        r = Result(name, unit, list(runs))
        self.results[name] = r
        self.log(f"RESULT {name}: median={_fmt(r.median)} min={_fmt(r.min)} max={_fmt(r.max)} "
                 f"{unit} (n={r.n}) runs={' '.join(_fmt(x) for x in r.runs)}")
        return r

    def ratio(self, name: str, num: str, den: str, target: str | None = None) -> Ratio | None:
        """Ratio of the medians of results ``num`` / ``den`` (and the range of per-run ratios)."""
        a, b = self.results.get(num), self.results.get(den)
        if a is None or b is None or not a.n or not b.n or not b.median:
            return None
        paired = [x / y for x, y in zip(a.runs, b.runs, strict=False) if x == x and y == y and y]
        r = Ratio(name, a.median / b.median, min(paired, default=float("nan")),
                  max(paired, default=float("nan")), target)
        line = f"RATIO {name}: {r.value:.2f} (paired runs {r.paired_min:.2f}-{r.paired_max:.2f})"
        if target is not None:
            r.met = _meets(r.value, target)
            line += f"  [target {target}: {'met' if r.met else 'MISSED'}]"
        self.ratios.append(r)
        self.log(line)
        return r

    def target(self, name: str, result: str, target: str) -> Target | None:
        """An absolute target on a result's median, e.g. ``"< 0.25"``."""
        r = self.results.get(result)
        if r is None or not r.n:
            return None
        t = Target(name, r.median, r.unit, target, _meets(r.median, target))
        self.targets.append(t)
        self.log(f"TARGET {name}: {_fmt(t.value)} {t.unit}  [target {target}: "
                 f"{'met' if t.met else 'MISSED'}]")
        return t

    def finish(self) -> int:
        """Print the JSON document if asked; exit code 1 if any run failed."""
        if self.json_mode:
            doc = {
                "benchmark": self.benchmark,
                "started": self.started,
                "command": " ".join(shlex.quote(a) for a in sys.orig_argv),
                "machine": machine(),
                "results": [asdict(r) for r in self.results.values()],
                "ratios": [asdict(r) for r in self.ratios],
                "targets": [asdict(t) for t in self.targets],
                "notes": self.notes,
                "failures": self.failures,
                **self.extra,
            }
            json.dump(_no_nan(doc), sys.stdout, indent=1, allow_nan=False)
            print(flush=True)
        return 1 if self.failures else 0


def _no_nan(x: Any) -> Any:
    """NaN (a failed run) becomes null: strict JSON."""
    if isinstance(x, float) and x != x:
        return None
    if isinstance(x, dict):
        return {k: _no_nan(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_no_nan(v) for v in x]
    return x


# -- the machine ----------------------------------------------------------
def _version_of(mod: str) -> str:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return "absent"


def _first_line(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return "absent"


def machine() -> dict[str, str]:
    return {
        "nproc": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyroute2": _version_of("pyroute2"),
        "uvloop": _version_of("uvloop"),
        "iproute2": _first_line(["ip", "-V"]),
        "iperf3": _first_line(["iperf3", "--version"]),
        "loadavg": " ".join(open("/proc/loadavg").read().split()[:3]),
    }


def machine_line() -> str:
    m = machine()
    return (f"machine: {m['nproc']} CPUs, kernel {m['kernel']}, Python {m['python']}, "
            f"pyroute2 {m['pyroute2']}, uvloop {m['uvloop']}, {m['iproute2']}, "
            f"load average {m['loadavg']}")


# -- processes and namespaces --------------------------------------------
def sh(argv: Sequence[str], *, check: bool = True, timeout: float = 300,
       input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} -> exit {res.returncode}: {res.stderr.strip()}")
    return res


def netns_exists(name: str) -> bool:
    return os.path.exists(f"/run/netns/{name}")


def delete_netns(names: Sequence[str]) -> None:
    """Delete exactly these namespaces (those that still exist), in one ``ip -batch``."""
    left = [n for n in names if netns_exists(n)]
    if left:
        sh(["ip", "-force", "-batch", "-"], check=False,
           input="".join(f"netns del {n}\n" for n in left))


def ping_until_ok(netns: str, addr: str, tries: int = 20) -> tuple[bool, int]:
    """``ping -c1 -W1`` from ``netns`` up to ``tries`` times (as bench/02 does)."""
    for i in range(1, tries + 1):
        res = subprocess.run(["ip", "netns", "exec", netns, "ping", "-c1", "-W1", addr],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if res.returncode == 0:
            return True, i
    return False, tries


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
CLONE_NEWNET = 0x40000000


def socket_in_netns(ns_fd: int, family: int, type: int, proto: int) -> socket.socket:
    """A socket opened inside the namespace behind ``ns_fd`` (by a short-lived thread)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            if _libc.setns(ns_fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns: {os.strerror(err)}")
            box["sock"] = socket.socket(family, type, proto)
        except BaseException as exc:  # re-raised in the caller
            box["exc"] = exc

    t = threading.Thread(target=run, name="nvb-setns")  # the thread dies in that namespace
    t.start()
    t.join()
    if "exc" in box:
        raise box["exc"]
    sock: socket.socket = box["sock"]
    return sock


# -- "settled": the kernel has really destroyed the host namespaces --------
NETLINK_ROUTE = 0
RTMGRP_LINK = 1
RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 1, 0x300
IFLA_LINKINFO, IFLA_INFO_KIND = 18, 1
SO_RCVBUFFORCE = 33


def _attrs(buf: bytes, off: int, end: int) -> dict[int, bytes]:
    out = {}
    while off + 4 <= end:
        alen, atype = struct.unpack_from("=HH", buf, off)
        if alen < 4:
            break
        out[atype & 0x3FFF] = buf[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def _links(buf: bytes) -> list[tuple[int, int, str | None]]:
    """(message type, ifindex, kind) of each link message in ``buf``; type DONE ends a dump."""
    out = []
    off = 0
    while off + 16 <= len(buf):
        mlen, mtype = struct.unpack_from("=IH", buf, off)
        if mlen < 16:
            break
        if mtype in (RTM_NEWLINK, RTM_DELLINK):
            index = struct.unpack_from("=i", buf, off + 20)[0]
            info = _attrs(buf, off + 32, off + mlen).get(IFLA_LINKINFO)
            kind = None
            if info is not None:
                raw = _attrs(info, 0, len(info)).get(IFLA_INFO_KIND)
                kind = raw.rstrip(b"\0").decode() if raw else None
            out.append((mtype, index, kind))
        elif mtype in (NLMSG_DONE, NLMSG_ERROR):
            out.append((mtype, 0, None))
        off += (mlen + 3) & ~3
    return out


class SettleWatcher:
    """Watches one namespace (the star's switch) until its veth ports are gone.

    Opened *before* the teardown starts, on the switch namespace's file: our fd
    keeps that namespace alive whoever unlinks its name, so both sides (netvirt,
    which removes the switch namespace too, and the shell script) are measured
    the same way: until the kernel has destroyed every host namespace, which
    deletes each host's veth and so its peer on the bridge. The deletions
    arrive as RTM_DELLINK on a netlink socket opened inside the switch
    namespace (no polling, no process start per look); after a lost
    notification (ENOBUFS) a dump recounts.
    """

    def __init__(self, netns: str) -> None:
        self._fd = os.open(f"/run/netns/{netns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._sock = socket_in_netns(self._fd, socket.AF_NETLINK, socket.SOCK_RAW,
                                         NETLINK_ROUTE)
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)
            except OSError:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 << 20)
            self._sock.bind((0, RTMGRP_LINK))
            self.ports = self._dump_veths()
        except BaseException:
            self.close()
            raise
        self.initial = len(self.ports)

    def _dump_veths(self) -> set[int]:
        """A fresh dump on a separate socket (the watcher's own socket keeps the events)."""
        s = socket_in_netns(self._fd, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            s.bind((0, 0))
            req = struct.pack("=IHHII", 32, RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
            s.send(req + struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0))
            found: set[int] = set()
            while True:
                msgs = _links(s.recv(1 << 20))
                for mtype, index, kind in msgs:
                    if mtype == RTM_NEWLINK and kind == "veth":
                        found.add(index)
                if any(m[0] in (NLMSG_DONE, NLMSG_ERROR) for m in msgs):
                    return found
        finally:
            s.close()

    def wait(self, timeout: float = 120.0) -> float:
        """Block until no veth port is left; return the time (``now()``) that happened."""
        deadline = now() + timeout
        poller = select.poll()  # not select(): the fd may be above 1024 (N=1000 star)
        poller.register(self._sock, select.POLLIN)
        while self.ports:
            left = deadline - now()
            if left <= 0:
                raise TimeoutError(f"{len(self.ports)} veth ports still in the switch "
                                   f"namespace after {timeout:.0f} s")
            if not poller.poll(min(left, 0.5) * 1000):
                continue
            try:
                data = self._sock.recv(1 << 20)
            except OSError as exc:  # ENOBUFS: events were lost, recount
                if exc.errno != 105:
                    raise
                self.ports &= self._dump_veths()
                continue
            for mtype, index, _kind in _links(data):
                if mtype == RTM_DELLINK:
                    self.ports.discard(index)
        return now()

    def close(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SettleWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def readme_install(workdir: str) -> str:
    """netvirt installed as the README's first command does: a venv, ``pip install .``.
    Returns the venv's interpreter. (A venv has no site-packages ``.pth`` files of the
    machine's interpreter: this one's editable install and a certifi hook cost 25 ms at
    every start.)"""
    venv = os.path.join(workdir, "venv")
    subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    py = os.path.join(venv, "bin", "python")
    res = subprocess.run([py, "-m", "pip", "install", "-q", "--disable-pip-version-check", REPO],
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"pip install . into {venv} failed: {res.stderr.strip()[-800:]}")
    return py
