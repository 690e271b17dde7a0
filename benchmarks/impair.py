"""Accuracy and speed of impaired links (netvirt's userspace netem) on real traffic.

    python -m benchmarks.impair [--runs 3] [--seconds 5] [--packets 100000] [--json] [--smoke]

Two namespaces joined by a ``netvirt.impair.ImpairedLink`` (a tap pair and
its datapath process), and, for the speed anchor, two namespaces joined by a
plain veth made with ``ip``. Every figure comes from traffic between the
namespaces, measured at the receiving socket:

* **delay** 1, 10, 100 ms: one-way delays of UDP probes (the send time taken
  just before ``send``, the receive time from the kernel's ``SO_TIMESTAMPNS``,
  both CLOCK_REALTIME), p50 and p99 against the request (targets: within
  0.1 ms and 0.5 ms);
* **jitter** 20 ms +- 5 ms for each distribution: the Kolmogorov-Smirnov
  distance between the achieved one-way delays (less the path's own median
  delay, measured unimpaired) and netem's law, with the 99% critical value;
* **rate** 1 Mbit/s, 100 Mbit/s (UDP, 1442-byte frames, offered at 1.2x the
  rate: the arrival rate of frames at the receiver) and 1 Gbit/s (iperf3
  TCP: the receiver's goodput times 1514/1448, a full frame per 1448-byte
  segment); target within 3%;
* **loss** 1%, 10% and a Gilbert-Elliott setting over ``--packets`` UDP
  datagrams: the count lost, against the binomial 99% interval (and, for GE,
  the interval of the Markov chain's own variance);
* **TCP** with ``delay: 10ms`` on both directions vs the plain veth, iperf3,
  interleaved runs (tcp_rmem/tcp_wmem raised to 32 MiB in all four
  namespaces: the window of a 20 ms RTT at several Gbit/s; target >= 2 Gbit/s);
* **CPU at rest**: the datapath process's CPU time over ``--seconds`` with
  conditions set and no traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import socket
import statistics
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import Report, check_args, delete_netns, machine_line, parser, require_root, sh

A_IP, B_IP = "10.94.0.1", "10.94.0.2"
V_A, V_B = "10.94.1.1", "10.94.1.2"
SO_TIMESTAMPNS = 35
SO_TIMESTAMPING = 37
#: software TX timestamps (taken by the tap driver as the frame leaves a:eth0), one id per datagram
TX_STAMPS = (1 << 1) | (1 << 4) | (1 << 7) | (1 << 11)
SO_RCVBUFFORCE = 33
_HDR = struct.Struct("!IQ")
BIG_BUF = "4096 131072 33554432"


# -- probes (threads with blocking sockets: the datapath is another process) -----------
def _socket_in(ns: Any, family: int, kind: int) -> socket.socket:
    sock: socket.socket = asyncio.run_coroutine_threadsafe(ns.socket(family, kind), _LOOP).result()
    return sock


_LOOP: asyncio.AbstractEventLoop


def _tx_stamps(tx: socket.socket) -> dict[int, int]:
    """The kernel's TX timestamps from the error queue: datagram number -> ns (CLOCK_REALTIME)."""
    out: dict[int, int] = {}
    while True:
        try:
            _data, anc, _f, _a = tx.recvmsg(64, 512, socket.MSG_ERRQUEUE | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return out
        ts = ident = None
        for lvl, typ, d in anc:
            if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPING:
                sec, nsec = struct.unpack_from("qq", d)
                ts = sec * 10**9 + nsec
            elif lvl == socket.IPPROTO_IP and typ == 11:  # IP_RECVERR: sock_extended_err
                ident = struct.unpack_from("IBBBBII", d)[6]
        if ts is not None and ident is not None:
            out[ident] = ts


def udp_run(a: Any, b: Any, count: int, *, pps: float, size: int = 64, settle: float = 0.5,
            port: int = 7300, stamps: bool = False) -> tuple[int, list[tuple[int, int, int]]]:
    """Send ``count`` datagrams a -> b at ``pps``; return (sent, [(seq, sent ns, kernel rx ns)]).

    With ``stamps`` the sent time is the kernel's TX timestamp (the frame entering the tap),
    so both ends of each delay are the kernel's: no user-space scheduling in the figure.
    """
    rx = _socket_in(b, socket.AF_INET, socket.SOCK_DGRAM)
    tx = _socket_in(a, socket.AF_INET, socket.SOCK_DGRAM)
    got: list[tuple[int, int, int]] = []
    try:
        rx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
        rx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        rx.bind((B_IP, port))
        rx.settimeout(0.2)
        tx.connect((B_IP, port))
        if stamps:
            tx.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_STAMPS)
            tx.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        done = threading.Event()

        def receive() -> None:
            while True:
                try:
                    data, anc, _f, _a = rx.recvmsg(65536, 64)
                except TimeoutError:
                    if done.is_set():
                        return
                    continue
                ts = next((d for lvl, typ, d in anc if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS),
                          None)
                rns = time.time_ns() if ts is None else (lambda s, n: s * 10**9 + n)(*struct.unpack("qq", ts))
                seq, t = _HDR.unpack_from(data)
                got.append((seq, t, rns))

        th = threading.Thread(target=receive)
        th.start()
        pad = bytes(max(0, size - _HDR.size))
        t0 = time.monotonic()
        sent = 0
        for i in range(count):
            due = t0 + i / pps
            while True:
                slack = due - time.monotonic()
                if slack <= 0:
                    break
                time.sleep(slack if slack > 0.0015 else 0)
            try:
                tx.send(_HDR.pack(i, time.time_ns()) + pad)
                sent += 1
            except (BlockingIOError, OSError):
                time.sleep(0.001)
        time.sleep(settle)
        done.set()
        th.join()
        if stamps:
            kernel = _tx_stamps(tx)
            got = [(q, kernel[q], r) for q, _t, r in got if q in kernel]
    finally:
        rx.close()
        tx.close()
    return sent, got


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(q * len(s) + 0.5) - 1))] if s else float("nan")


def binomial_99(n: int, p: float) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 2.576 * sd, n * p + 2.576 * sd


def ge_99(n: int, p: float, r: float, h: float, k: float) -> tuple[float, float, float]:
    """Mean and 99% interval of the losses of n packets under netem's Gilbert-Elliott chain."""
    pb = p / (p + r)
    lg, lb = 1 - k, 1 - h
    mean = (1 - pb) * lg + pb * lb
    lam = 1 - p - r
    var1 = mean * (1 - mean) + 2 * (lb - lg) ** 2 * pb * (1 - pb) * lam / (1 - lam)
    sd = math.sqrt(n * var1)
    return mean, n * mean - 2.576 * sd, n * mean + 2.576 * sd


async def iperf(client_ns: str, server_ns: str, addr: str, seconds: int, *extra: str) -> dict[str, Any]:
    srv = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", addr,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        doc: dict[str, Any] = {}
        for attempt in range(20):
            await asyncio.sleep(0.2 if attempt == 0 else 0.1)
            cli = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", client_ns, "iperf3", "-c", addr, "-t", str(seconds), "-J", *extra,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(cli.communicate(), seconds + 60)
            try:
                doc = json.loads(out)
            except ValueError:
                doc = {"error": (err or out).decode(errors="replace").strip()}
            if "refused" not in str(doc.get("error", "")):
                break
        return doc
    finally:
        if srv.returncode is None:
            srv.terminate()
        await srv.wait()


def _ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


# -- the measurements ----------------------------------------------------------------
async def measure(args: argparse.Namespace, rep: Report) -> None:
    from netvirt.impair import End, ImpairedLink
    from netvirt.netns import Namespace

    global _LOOP
    _LOOP = asyncio.get_running_loop()
    rep.log(f"== impair: {args.runs} runs, {args.seconds} s, {args.packets} packets, prefix {args.prefix}")
    rep.log(machine_line())
    va, vb = f"{args.prefix}-v1", f"{args.prefix}-v2"
    async with contextlib.AsyncExitStack() as stack:
        a = await Namespace.create(f"{args.prefix}-a")
        stack.push_async_callback(a.close)
        b = await Namespace.create(f"{args.prefix}-b")
        stack.push_async_callback(b.close)
        link = ImpairedLink(End(a, "eth0", [f"{A_IP}/24"], ipv6_linklocal=False),
                            End(b, "eth0", [f"{B_IP}/24"], ipv6_linklocal=False), name="bench")
        await link.create()
        stack.push_async_callback(link.aclose)
        stack.callback(delete_netns, [va, vb])
        sh(["ip", "-batch", "-"], input=f"netns add {va}\nnetns add {vb}\n"
           f"link add eth0 netns {va} type veth peer name eth0 netns {vb}\n")
        for i, ns in ((1, va), (2, vb)):
            sh(["ip", "-n", ns, "-batch", "-"], input=f"addr add 10.94.1.{i}/24 dev eth0\n"
               "link set eth0 up\nlink set lo up\n")
        for ns in (str(a.name), str(b.name), va, vb):
            sh(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv4.tcp_rmem={BIG_BUF}",
                f"net.ipv4.tcp_wmem={BIG_BUF}"])
        await asyncio.to_thread(udp_run, a, b, 20, pps=200)  # neighbours resolved, caches warm

        async def udp(count: int, pps: float, **kw: Any) -> tuple[int, list[tuple[int, int, int]]]:
            return await asyncio.to_thread(udp_run, a, b, count, pps=pps, **kw)

        # the path's own one-way delay (no conditions)
        n_probe = 200 if args.smoke else 2000
        _sent, got = await udp(n_probe, 500, stamps=True)
        base = [(r - t) / 1e6 for _s, t, r in got]
        base_p50 = pct(base, 0.5)
        rep.log(f"  unimpaired one-way delay: p50 {base_p50:.3f} ms, p99 {pct(base, 0.99):.3f} ms")
        rep.extra["base_delay_ms"] = {"p50": base_p50, "p99": pct(base, 0.99)}

        # delay accuracy
        acc: dict[str, Any] = {}
        for ms in (1, 10, 100):
            await link.impair(0, delay=f"{ms}ms")
            p50s, p99s = [], []
            for _r in range(args.runs):
                _sent, got = await udp(n_probe, 500 if ms < 100 else 1000, stamps=True)
                d = [(r - t) / 1e6 for _s, t, r in got]
                p50s.append(pct(d, 0.5) - ms)
                p99s.append(pct(d, 0.99) - ms)
            rep.result(f"delay-{ms}ms-p50-error", "ms", p50s)
            rep.result(f"delay-{ms}ms-p99-error", "ms", p99s)
            st = link.stats(0)
            acc[f"{ms}ms"] = {"p50_error_ms": statistics.median(p50s), "p99_error_ms": statistics.median(p99s),
                              "engine_p50_ms": st["delay_p50_ms"], "engine_p99_ms": st["delay_p99_ms"]}
            rep.target(f"delay {ms} ms p50 within 0.1 ms", f"delay-{ms}ms-p50-error", "<= 0.1")
            rep.target(f"delay {ms} ms p99 within 0.5 ms", f"delay-{ms}ms-p99-error", "<= 0.5")
        rep.extra["delay"] = acc

        # jitter: goodness of fit of each distribution
        from netvirt.impair.dist import cdf

        fits: dict[str, Any] = {}
        n_jit = 300 if args.smoke else 3000
        for law in ("uniform", "normal", "pareto", "paretonormal"):
            await link.impair(0, delay="20ms", jitter="5ms", distribution=law)
            _sent, got = await udp(n_jit, 500, stamps=True)
            xs = sorted((r - t) / 1e6 - base_p50 for _s, t, r in got)
            n = len(xs)
            dist = max(max(abs(cdf(law, 20.0, 5.0, x) - i / n), abs(cdf(law, 20.0, 5.0, x) - (i + 1) / n))
                       for i, x in enumerate(xs))
            crit = 1.628 / math.sqrt(n)
            fits[law] = {"ks": dist, "critical_99": crit, "n": n}
            rep.log(f"  jitter {law}: KS distance {dist:.4f} (99% critical value {crit:.4f}, n={n})  "
                    f"[{'fits' if dist <= crit else 'MISFIT'}]")
        rep.extra["jitter_fit"] = fits

        # rate accuracy
        rates: dict[str, Any] = {}
        for label, bits in (("1mbit", 10**6), ("100mbit", 10**8)):
            await link.impair(0, rate=label, limit=1000)
            frame = 1442  # 1400 B of UDP payload: 1400 + 8 + 20 + 14
            secs = 1.0 if args.smoke else float(args.seconds)
            pps = 1.2 * bits / (frame * 8)
            runs = []
            for _r in range(args.runs):
                _sent, got = await udp(int(pps * secs), pps, size=1400, settle=1.0)
                rx = sorted(r for _s, _t, r in got)
                if len(rx) < 10:
                    runs.append(float("nan"))
                    continue
                runs.append((len(rx) - 1) * frame * 8 / ((rx[-1] - rx[0]) / 1e9) / bits)
            rep.result(f"rate-{label}-achieved/asked", "x", runs)
            rates[label] = statistics.median([x for x in runs if x == x] or [float("nan")])
        await link.impair(0, rate="1gbit")
        runs = []
        for _r in range(args.runs):
            # -O 1: the first second (slow start) is left out: the rate of a full link
            doc = await iperf(str(a.name), str(b.name), B_IP, 1 if args.smoke else args.seconds, "-O", "1")
            if "end" not in doc:
                rep.fail(f"rate 1gbit: iperf3: {doc.get('error')}")
                runs.append(float("nan"))
                continue
            good = doc["end"]["sum_received"]["bits_per_second"]
            runs.append(good * 1514 / 1448 / 1e9)
        rep.result("rate-1gbit-achieved/asked", "x", runs)
        rates["1gbit"] = statistics.median([x for x in runs if x == x] or [float("nan")])
        for label in ("1mbit", "100mbit", "1gbit"):
            rep.log(f"  rate {label}: achieved/asked {rates[label]:.4f}  "
                    f"[target within 3%: {'met' if abs(rates[label] - 1) <= 0.03 else 'MISSED'}]")
        rep.extra["rate"] = rates

        # loss
        losses: dict[str, Any] = {}
        n_loss = 2000 if args.smoke else args.packets
        ge = {"model": "gilbert-elliott", "p": "1%", "r": "30%", "h": "20%", "k": "99.5%"}
        for label, loss in (("1%", "1%"), ("10%", "10%"), ("gilbert-elliott", ge)):
            await link.impair(0, loss=loss)
            before = link.stats(0)["dropped_loss"]
            sent, got = await udp(n_loss, 20000)
            lost = sent - len({s for s, _t, _r in got})
            engine = link.stats(0)["dropped_loss"] - before
            if label == "gilbert-elliott":
                mean, lo, hi = ge_99(sent, 0.01, 0.30, 0.20, 0.995)
                blo, bhi = binomial_99(sent, mean)
            else:
                mean = float(label[:-1]) / 100
                lo, hi = blo, bhi = binomial_99(sent, mean)
            ok = blo <= lost <= bhi
            losses[label] = {"sent": sent, "lost": lost, "engine_dropped": engine, "expected": sent * mean,
                             "binomial_99": [blo, bhi], "within_binomial": ok,
                             "chain_99": [lo, hi], "within_chain": lo <= lost <= hi}
            rep.log(f"  loss {label}: {lost} of {sent} lost ({lost / sent:.4%}; engine dropped {engine}), "
                    f"expected {sent * mean:.0f}, binomial 99% [{blo:.0f}, {bhi:.0f}]: "
                    f"{'within' if ok else 'OUTSIDE'}" +
                    (f"; chain 99% [{lo:.0f}, {hi:.0f}]" if label == "gilbert-elliott" else ""))
        rep.extra["loss"] = losses

        # CPU at rest
        await link.impair(0, both=True, delay="10ms", jitter="1ms", loss="1%")
        pid = link.stats()["pid"]
        await asyncio.sleep(0.5)
        t0 = _ticks(pid)
        rest = 1.0 if args.smoke else float(args.seconds)
        await asyncio.sleep(rest)
        cpu = (_ticks(pid) - t0) / os.sysconf("SC_CLK_TCK") / rest * 100
        rep.log(f"  CPU of the datapath at rest: {cpu:.2f}% of a core over {rest:.0f} s")
        rep.extra["cpu_at_rest_percent"] = cpu

        # TCP throughput: delay 10 ms (both ways) vs a plain veth, interleaved
        await link.impair(0, both=True, delay="10ms")
        seconds = 1 if args.smoke else args.seconds
        tput: dict[str, list[float]] = {"impaired-10ms": [], "veth": []}
        for r in range(1, args.runs + 1):
            for name, cns, sns, addr in (("impaired-10ms", str(a.name), str(b.name), B_IP),
                                         ("veth", va, vb, V_B)):
                doc = await iperf(cns, sns, addr, seconds)
                if "end" not in doc:
                    rep.fail(f"{name} run {r}: iperf3: {doc.get('error')}")
                    tput[name].append(float("nan"))
                    continue
                mbit = doc["end"]["sum_received"]["bits_per_second"] / 1e6
                tput[name].append(mbit)
                rep.log(f"  {name} run {r}: {mbit:.0f} Mbit/s")
        for name, v in tput.items():
            rep.result(f"tcp-{name}", "Mbit/s", v)
        rep.target("TCP with delay 10ms", "tcp-impaired-10ms", ">= 2000")
        rep.ratio("impaired-10ms/veth", "tcp-impaired-10ms", "tcp-veth")
        rep.extra["datapath_stats"] = link.stats()


def main(argv: list[str] | None = None) -> int:
    p = parser("impaired links: delay/rate/loss/jitter accuracy and TCP throughput vs veth", runs=3)
    p.add_argument("--seconds", type=int, default=5, help="iperf3 -t and rate runs (default 5)")
    p.add_argument("--packets", type=int, default=100_000, help="datagrams per loss setting")
    args = p.parse_args(argv)
    check_args(args)
    require_root()
    if args.smoke:
        args.runs, args.seconds = 1, 1
    rep = Report("impair", json_mode=args.json)
    with asyncio.Runner() as runner:
        runner.run(measure(args, rep))
    return rep.finish()


if __name__ == "__main__":
    sys.exit(main())
