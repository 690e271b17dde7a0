"""netvirt ``udp-tunnel`` against OpenVPN 2.6 without crypto, in one interleaved run.

    python -m benchmarks.tunnel [--runs 3] [--seconds 5] [--tunnels ...] [--json] [--smoke]

Needs root, iperf3 and OpenVPN 2.6 (Debian: ``apt-get install iperf3 openvpn``;
without openvpn the anchor is skipped with a note and no ratio is reported).

Method (the anchor of BASELINES.md section 6, ``bench/06_openvpn_vs_pytunnel.py``):
netvirt builds the underlay, two nodes ``a`` and ``b`` (namespaces
``nv-<prefix>t-a`` / ``-b``) joined by one veth pair (MTU 1500, 10.201.0.1 <->
10.201.0.2). Every tunnel below is up at the same time on that veth, each
with its own tun pair (MTU 1400, so plain packets never fragment), overlay
subnet and UDP port, and they are measured alternately, run by run (the
order rotates each run), in the same script run. Per tunnel and run: iperf3
TCP for ``--seconds`` (the receiver's rate) and iperf3 UDP ``-l 64 -b 0``
(sent and received packets per second); iperf3's server runs in ``b``, its
client in ``a``. Also recorded, to explain the figures: the CPU time of the
tunnel's processes per GB (TCP) and per received packet (UDP), and where UDP
packets were lost (the tun in ``a`` dropping what the tunnel did not read in
time, full UDP receive buffers in ``b``).

Tunnels (``--tunnels``, comma separated):

* ``openvpn``: ``openvpn --dev nvuov1 --dev-type tun --ifconfig ... --proto
  udp --local ... --lport 1194 --remote ... --rport 1194 --tun-mtu 1400
  --mssfix 0`` in each node; with neither ``--secret`` nor TLS it runs in
  cleartext. Two processes, one per end.
* ``netvirt``: the ``udp-tunnel`` program as a user writes it: a tun with no
  ``offload`` key, program params ``local`` and ``remote`` only (so the
  program switches its tun's offload on itself and cuts super-packets into
  MTU-sized segments on the standard wire). One end per process, two
  processes (this module's ``--end`` mode: netvirt's ``Tun`` in a borrowed
  namespace plus ``UdpTunnel``, on uvloop), as OpenVPN runs: the
  like-for-like comparison.
* ``netvirt-plain``: the same with the program's ``offload: false`` (one IP
  packet per read and write, 0.1.0's plain mode).
* ``netvirt-1proc``: both ends as a scenario runs them (the same scenario
  keys as ``netvirt``), in netvirt's own process (the one running this
  script), on one event loop.
* ``netvirt-nogso``: ``netvirt`` without UDP GSO/GRO on the underlay socket
  (one syscall per datagram, no merged writes), to see what those are worth.
* ``kernel``: no tunnel at all, iperf3 straight over the underlay veth (MTU
  1500): the ceiling any tunnel on this machine stays below, measured in the
  same run (BASELINES.md section 1 is its anchor).

Every tunnel's wire is one IP packet per datagram. The benchmark checks it:
the underlay namespaces' IP fragment counters (``/proc/net/snmp``, what
``nstat`` shows as IpFragCreates, IpFragOKs and IpReasmReqds) must not move
during the whole run, for any tunnel, or the run fails loudly.

No CPU pinning (none for OpenVPN either). Ratios are medians over the median
of ``openvpn``; "paired runs" is the range of the per-run ratios. The
targets (issue 12) apply to ``netvirt``: TCP >= 3x, UDP 64 B received >= 3x.
``--smoke`` runs ``netvirt`` (and ``openvpn`` if installed; otherwise a note
says it was skipped) once for one second each. Everything created is named
after ``--prefix`` (default ``nvu`` + a tag of this process) or ``nvu*``
inside the lab's namespaces, and deleted at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from typing import Any

from benchmarks.common import Report, check_args, machine_line, parser, require_root

TUN_MTU = 1400
UNDERLAY = ("10.201.0.1", "10.201.0.2")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class TunnelDef:
    #: "openvpn", "proc" (one process per end), "inproc" (ends in this process) or "none"
    #: (no tunnel: iperf3 over the underlay veth itself, the ceiling of this machine)
    kind: str
    subnet: int  # overlay 10.<subnet>.0.1 <-> .2
    port: int
    offload: str = "auto"  # the program's offload param (the tun is opened plain)
    devs: tuple[str, str] = ("", "")
    gso: bool = True  # UDP GSO/GRO on the underlay socket (UdpTunnel.udp_gso)

    def addr(self, side: int) -> str:
        if self.kind == "none":
            return UNDERLAY[side]
        return f"10.{self.subnet}.0.{side + 1}"


TUNNELS: dict[str, TunnelDef] = {
    "openvpn": TunnelDef("openvpn", 202, 1194, devs=("nvuov1", "nvuov2")),
    "netvirt": TunnelDef("proc", 203, 6001, "auto", ("nvupo1", "nvupo2")),
    "netvirt-plain": TunnelDef("proc", 204, 6002, "false", ("nvupn1", "nvupn2")),
    "netvirt-1proc": TunnelDef("inproc", 205, 6003, "auto", ("nvuio1", "nvuio2")),
    "netvirt-nogso": TunnelDef("proc", 207, 6005, "auto", ("nvupg1", "nvupg2"), gso=False),
    "kernel": TunnelDef("none", 0, 0),
}
DEFAULT = "openvpn,netvirt,netvirt-plain,netvirt-1proc"
#: key, result name suffix, unit
METRICS = (
    ("tcp", "tcp", "Mbit/s"),
    ("udp_rcvd", "udp64-received", "kpps"),
    ("udp_sent", "udp64-sent", "kpps"),
    ("tcp_cpu", "tcp-cpu", "CPU s/GB"),
    ("udp_cpu", "udp64-cpu", "CPU us/packet"),
    ("udp_tun_drop", "udp64-lost-at-tun", "% of sent"),
    ("udp_rcvbuf_drop", "udp64-lost-at-rcvbuf", "% of sent"),
)
TARGETS = {"tcp": ">= 3", "udp_rcvd": ">= 3"}  # issue 12, for "netvirt"
#: IP counters of /proc/net/snmp that must not move (nstat's IpFragCreates...)
FRAGMENT_COUNTERS = ("FragCreates", "FragOKs", "FragFails", "ReasmReqds")


# -- one tunnel end in its own process (``--end``) ------------------------------------------
async def run_end(netns: str, dev: str, addr: str, local: str, remote: str, offload: str,
                  gso: bool, profile: str | None) -> None:
    """Serve one end until SIGTERM; print READY, then the counters as JSON at the end."""
    from netvirt.devices import Tun
    from netvirt.netns import Namespace
    from netvirt.programs import ProgramContext, UdpTunnel

    ns = await Namespace.borrow(netns)
    try:
        async with Tun(dev, netns=ns, addresses=[f"{addr}/24"], mtu=TUN_MTU) as tun:
            params: dict[str, object] = {"local": local, "remote": remote}
            if offload != "auto":
                params["offload"] = False
            ctx = ProgramContext(port=tun.port, params=params, addresses=[],
                                 open_socket=ns.socket, device_name=dev)
            program = UdpTunnel(ctx)
            program.udp_gso = gso
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, stop.set)
            loop.add_signal_handler(signal.SIGINT, stop.set)
            prof = None
            if profile:
                import cProfile

                prof = cProfile.Profile()
                prof.enable()
            await program.wait_ready()
            print("READY", flush=True)
            await stop.wait()
            if prof is not None and profile:
                prof.disable()
                prof.dump_stats(profile)
            await program.stop()
            print(json.dumps({**program.counters, "offload_flags": program.offload_flags}),
                  flush=True)
    finally:
        await ns.close()


# -- the orchestrator ------------------------------------------------------------------------
async def run(*argv: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def underlay_yaml(lab: str, inproc: list[TunnelDef]) -> str:
    """The lab: nodes a and b, one veth; plus the tuns of the in-process tunnels."""
    ifaces: list[list[str]] = [[f"eth0: {{addresses: [{UNDERLAY[s]}/24]}}"] for s in (0, 1)]
    for t in inproc:
        for s in (0, 1):
            extra = "" if t.offload == "auto" else ", offload: false"
            prog = (f"{{name: udp-tunnel, local: '{UNDERLAY[s]}:{t.port}', "
                    f"remote: '{UNDERLAY[1 - s]}:{t.port}'{extra}}}")
            ifaces[s].append(f"{t.devs[s]}: {{kind: tun, mtu: {TUN_MTU}, "
                             f"addresses: [{t.addr(s)}/24], program: {prog}}}")
    nodes = "".join(f"  {n}:\n    interfaces:\n" + "".join(f"      {i}\n" for i in ifaces[s])
                    for s, n in enumerate("ab"))
    return f"name: {lab}\nnodes:\n{nodes}links:\n  - [a:eth0, b:eth0]\n"


class Bench:
    def __init__(self, lab: str, rep: Report, profile_dir: str | None) -> None:
        self.ns = (f"nv-{lab}-a", f"nv-{lab}-b")
        self.rep = rep
        self.procs: list[asyncio.subprocess.Process] = []
        self.ends: dict[str, list[asyncio.subprocess.Process]] = {}
        self.profile_dir = profile_dir
        self.counters: dict[str, list[Any]] = {}
        #: the processes doing each tunnel's work, for CPU accounting
        self.pids: dict[str, list[int]] = {}

    async def start(self, name: str) -> None:
        t = TUNNELS[name]
        if t.kind == "none":
            return
        if t.kind == "inproc":
            self.pids[name] = [os.getpid()]  # built with the underlay, served by this loop
            return
        for s in (0, 1):
            local, remote = UNDERLAY[s], UNDERLAY[1 - s]
            if t.kind == "openvpn":
                argv = ["ip", "netns", "exec", self.ns[s], "openvpn", "--dev", t.devs[s],
                        "--dev-type", "tun", "--ifconfig", t.addr(s), t.addr(1 - s),
                        "--proto", "udp", "--local", local, "--lport", str(t.port),
                        "--remote", remote, "--rport", str(t.port), "--tun-mtu", str(TUN_MTU),
                        "--mssfix", "0", "--verb", "1"]
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
                self.procs.append(proc)
                self.pids.setdefault(name, []).append(proc.pid)  # ip netns exec execs openvpn
                continue
            argv = [sys.executable, "-m", "benchmarks.tunnel", "--end", self.ns[s], t.devs[s],
                    t.addr(s), f"{local}:{t.port}", f"{remote}:{t.port}"]
            argv += ["--offload", t.offload]
            if not t.gso:
                argv.append("--no-gso")
            if self.profile_dir:
                argv += ["--profile", os.path.join(self.profile_dir, f"{name}-{'ab'[s]}.prof")]
            proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
            self.procs.append(proc)
            self.pids.setdefault(name, []).append(proc.pid)
            self.ends.setdefault(name, []).append(proc)
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if line.strip() != b"READY":
                raise RuntimeError(f"tunnel end {name} did not start: {line!r}")

    async def wait_passing(self, name: str) -> None:
        dst = TUNNELS[name].addr(1)
        for _ in range(100):
            code, _out = await run("ip", "netns", "exec", self.ns[0], "ping", "-c1", "-W1", dst)
            if code == 0:
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"tunnel {name} does not pass traffic (ping {dst} fails)")

    async def iperf(self, dst: str, args: list[str], seconds: float) -> dict[str, Any]:
        server = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", self.ns[1], "iperf3", "-s", "-1", "-B", dst,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            await asyncio.sleep(0.3)
            _code, out = await run("ip", "netns", "exec", self.ns[0], "iperf3", "-c", dst,
                                   "-t", str(seconds), "-J", *args, timeout=seconds + 30)
            try:
                result: dict[str, Any] = json.loads(out)
            except ValueError:
                result = {"error": out[-300:]}
        finally:
            if server.returncode is None:
                server.terminate()
            await server.wait()
        return result

    def cpu_seconds(self, name: str) -> float:
        """CPU time (user + system) used so far by the processes of tunnel ``name``."""
        total = 0.0
        for pid in self.pids.get(name, []):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
                total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        return total

    async def drops(self, name: str) -> tuple[int, int]:
        """(packets the tun in ``a`` dropped because the tunnel did not read them in time,
        UDP datagrams node ``b`` dropped for a full socket receive buffer)."""
        tun = 0
        if TUNNELS[name].devs[0]:
            _code, out = await run("ip", "-n", self.ns[0], "-s", "-j", "link", "show", "dev",
                                   TUNNELS[name].devs[0])
            tun = json.loads(out)[0]["stats64"]["tx"]["dropped"] if out.startswith("[") else 0
        _code, out = await run("ip", "netns", "exec", self.ns[1], "cat", "/proc/net/snmp")
        udp = [line.split() for line in out.splitlines() if line.startswith("Udp:")]
        rcvbuf = int(udp[1][udp[0].index("RcvbufErrors")]) if len(udp) == 2 else 0
        return tun, rcvbuf

    async def measure(self, name: str, seconds: float, tests: str) -> dict[str, float]:
        dst, nan = TUNNELS[name].addr(1), float("nan")
        res = {key: nan for key, _, _ in METRICS}
        if "tcp" in tests:
            cpu = self.cpu_seconds(name)
            d = await self.iperf(dst, [], seconds)
            cpu = self.cpu_seconds(name) - cpu
            if "end" in d:
                res["tcp"] = d["end"]["sum_received"]["bits_per_second"] / 1e6
                if name in self.pids:  # (no tunnel, no tunnel CPU)
                    res["tcp_cpu"] = cpu / (d["end"]["sum_received"]["bytes"] / 1e9)
            else:
                self.rep.fail(f"iperf3 TCP through {name}: {d.get('error')}")
        if "udp" not in tests:
            return res
        before = await self.drops(name)
        cpu = self.cpu_seconds(name)
        d = await self.iperf(dst, ["-u", "-l", "64", "-b", "0"], seconds)
        cpu = self.cpu_seconds(name) - cpu
        after = await self.drops(name)
        if "end" in d:
            s = d["end"]["sum"]
            got = s["packets"] - s["lost_packets"]
            res["udp_sent"] = s["packets"] / s["seconds"] / 1e3
            res["udp_rcvd"] = got / s["seconds"] / 1e3
            if name in self.pids:
                res["udp_cpu"] = cpu / max(1, got) * 1e6
            if TUNNELS[name].devs[0]:
                res["udp_tun_drop"] = 100 * (after[0] - before[0]) / max(1, s["packets"])
            res["udp_rcvbuf_drop"] = 100 * (after[1] - before[1]) / max(1, s["packets"])
        else:
            self.rep.fail(f"iperf3 UDP through {name}: {d.get('error')}")
        return res

    async def fragments(self) -> dict[str, int]:
        """The IP fragment counters of both underlay namespaces (``/proc/net/snmp``)."""
        out: dict[str, int] = {}
        for side, ns in zip("ab", self.ns, strict=True):
            _code, text = await run("ip", "netns", "exec", ns, "cat", "/proc/net/snmp")
            rows = [line.split() for line in text.splitlines() if line.startswith("Ip:")]
            values = dict(zip(rows[0][1:], rows[1][1:], strict=True)) if len(rows) == 2 else {}
            for key in FRAGMENT_COUNTERS:
                out[f"{side}:Ip{key}"] = int(values.get(key, -1))
        return out

    async def stop(self) -> None:
        for name, procs in self.ends.items():
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
                assert proc.stdout is not None
                with contextlib.suppress(Exception):
                    out = await asyncio.wait_for(proc.stdout.read(), 10)
                    lines = out.decode().strip().splitlines()
                    if lines:
                        self.counters.setdefault(name, []).append(json.loads(lines[-1]))
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def measure(args: argparse.Namespace, rep: Report) -> None:
    import netvirt

    tunnels = [t.strip() for t in args.tunnels.split(",") if t.strip()]
    unknown = [t for t in tunnels if t not in TUNNELS]
    if unknown:
        raise SystemExit(f"unknown tunnels {unknown}; known: {', '.join(TUNNELS)}")
    if "openvpn" in tunnels and not shutil.which("openvpn"):
        tunnels.remove("openvpn")
        rep.note("openvpn is not installed: the OpenVPN anchor was skipped "
                 "(apt-get install openvpn)")
    ovpn = None
    if "openvpn" in tunnels:
        ovpn = (await run("openvpn", "--version"))[1].split("\n")[0].split(" [")[0]
    rep.log(machine_line())
    rep.log(f"tunnels: {', '.join(tunnels)}; {args.runs} runs x {args.seconds} s; tun MTU "
            f"{TUN_MTU} on a veth of MTU 1500; {ovpn or 'no OpenVPN'}")
    lab = f"{args.prefix}t"
    inproc = [TUNNELS[n] for n in tunnels if TUNNELS[n].kind == "inproc"]
    scenario = netvirt.load_text(underlay_yaml(lab, inproc), f"<{lab}>")
    runs: dict[str, dict[str, list[float]]] = {t: {k: [] for k, _, _ in METRICS} for t in tunnels}
    bench = Bench(lab, rep, args.profile)
    async with netvirt.Topology(scenario) as topo:
        try:
            for name in tunnels:
                await bench.start(name)
            for name in tunnels:
                await bench.wait_passing(name)
            frag0 = await bench.fragments()
            for i in range(args.runs):
                order = tunnels[i % len(tunnels):] + tunnels[:i % len(tunnels)]
                for name in order:
                    r = await bench.measure(name, args.seconds, args.tests)
                    for key, _, _ in METRICS:
                        runs[name][key].append(r[key])
                    rep.log(f"  run {i + 1} {name:20s} TCP {r['tcp']:6.0f} Mbit/s "
                            f"({r['tcp_cpu']:4.2f} CPU s/GB) | UDP 64 B sent "
                            f"{r['udp_sent']:6.1f} received {r['udp_rcvd']:6.1f} kpps "
                            f"({r['udp_cpu']:4.1f} CPU us/packet; lost "
                            f"{r['udp_tun_drop']:.0f}% at the tun in a, "
                            f"{r['udp_rcvbuf_drop']:.0f}% at receive buffers in b)")
            frag1 = await bench.fragments()
            moved = {k: frag1[k] - frag0[k] for k in frag0}
            rep.extra["fragments"] = moved
            if any(moved.values()) or any(v < 0 for v in frag1.values()):
                rep.fail(f"the underlay carried IP fragments during the run: {moved} "
                         "(/proc/net/snmp of both underlay namespaces; want all 0)")
            else:
                rep.log(f"underlay IP fragment counters (nstat's IpFragCreates, IpFragOKs, "
                        f"IpFragFails, IpReasmReqds) in both namespaces: all 0 ({moved})")
        finally:
            await bench.stop()
            for t in inproc:
                name = next(n for n in tunnels if TUNNELS[n] is t)
                bench.counters[name] = [topo.program(n, t.devs[s]).counters
                                        for s, n in enumerate("ab")]
    for name in tunnels:
        for key, suffix, unit in METRICS:
            if any(x == x for x in runs[name][key]):
                rep.result(f"{name}-{suffix}", unit, runs[name][key])
    if "openvpn" in tunnels:
        for name in tunnels:
            if name == "openvpn":
                continue
            for key, suffix in (("tcp", "tcp"), ("udp_rcvd", "udp64-received")):
                rep.ratio(f"{name}/openvpn-{suffix}", f"{name}-{suffix}", f"openvpn-{suffix}",
                          TARGETS[key] if name == "netvirt" else None)
    rep.extra.update({"tunnels": tunnels, "openvpn": ovpn, "seconds": args.seconds,
                      "tun_mtu": TUN_MTU, "underlay_mtu": 1500, "counters": bench.counters})
    if not args.json:
        print_table(rep, tunnels)


def print_table(rep: Report, tunnels: list[str]) -> None:
    def cell(name: str, fmt: str) -> str:
        r = rep.results.get(name)
        if r is None or not r.n:
            return "-"
        return f"{r.median:{fmt}} ({r.min:{fmt}}-{r.max:{fmt}})"

    ratios = {r.name: r for r in rep.ratios}

    def ratio(name: str) -> str:
        r = ratios.get(name)
        return "-" if r is None else f"{r.value:.2f}x ({r.paired_min:.2f}-{r.paired_max:.2f})"

    print("\n| tunnel | TCP Mbit/s | TCP / OpenVPN | UDP 64 B received kpps | UDP / OpenVPN | "
          "UDP 64 B sent kpps | CPU s/GB (TCP) | CPU us/packet (UDP) | "
          "UDP lost at tun a / at buffers in b, % of sent |")
    print("|---|---|---|---|---|---|---|---|---|")
    for t in tunnels:
        print(f"| {t} | {cell(f'{t}-tcp', '.0f')} | {ratio(f'{t}/openvpn-tcp')} | "
              f"{cell(f'{t}-udp64-received', '.1f')} | {ratio(f'{t}/openvpn-udp64-received')} | "
              f"{cell(f'{t}-udp64-sent', '.0f')} | {cell(f'{t}-tcp-cpu', '.2f')} | "
              f"{cell(f'{t}-udp64-cpu', '.1f')} | {cell(f'{t}-udp64-lost-at-tun', '.0f')} / "
              f"{cell(f'{t}-udp64-lost-at-rcvbuf', '.0f')} |")
    print("load average at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n")[0], runs=3)
    p.set_defaults(prefix=f"nvu{os.getpid() % 4096:03x}")
    p.add_argument("--seconds", type=float, default=5.0, help="seconds per iperf3 run")
    p.add_argument("--tunnels", default=DEFAULT, help=f"comma separated, of {', '.join(TUNNELS)}")
    p.add_argument("--tests", default="tcp,udp", help="tcp, udp or both (default)")
    p.add_argument("--profile", metavar="DIR", help="cProfile each tunnel-end process into DIR")
    args = p.parse_args(argv)
    check_args(args)
    if len(args.prefix) > 11:
        raise SystemExit("--prefix: at most 11 characters here (the lab is PREFIX + 't')")
    require_root()
    if not shutil.which("iperf3"):
        raise SystemExit("iperf3 is needed: apt-get install iperf3")
    if args.smoke:
        args.runs, args.seconds = 1, 1.0
        if args.tunnels == DEFAULT:
            args.tunnels = "openvpn,netvirt"
    rep = Report("tunnel", json_mode=args.json)
    import uvloop

    try:
        uvloop.run(measure(args, rep))
    except KeyboardInterrupt:
        return 130
    return rep.finish()


def end_main(argv: list[str]) -> None:
    e = argparse.ArgumentParser(prog="python -m benchmarks.tunnel --end")
    for a in ("netns", "dev", "addr", "local", "remote"):
        e.add_argument(a)
    e.add_argument("--offload", default="auto", choices=("auto", "false"))
    e.add_argument("--no-gso", action="store_true")
    e.add_argument("--profile")
    ea = e.parse_args(argv)
    import uvloop

    uvloop.run(run_end(ea.netns, ea.dev, ea.addr, ea.local, ea.remote, ea.offload,
                       not ea.no_gso, ea.profile))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--end":
        end_main(sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
