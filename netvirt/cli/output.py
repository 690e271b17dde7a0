"""Human output of the CLI: progress line, step report, status table."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    """A one-line progress counter on a terminal (stderr); silent otherwise."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._shown = False
        self._last = 0.0

    def __call__(self, done: int, total: int, what: str) -> None:
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        if now - self._last < 0.05 and done < total:
            return
        self._last = now
        sys.stderr.write(f"\r\033[K[{done:>{len(str(total))}}/{total}] {what}")
        sys.stderr.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False


def built_line(topo: Any, seconds: float) -> None:
    n_if = sum(len(n.devices) for n in topo.nodes.values())
    procs = len(topo.processes.procs) if getattr(topo, "processes", None) is not None else 0
    extra = f", {procs} processes" if procs else ""
    print(f"lab {topo.lab}: built {len(topo.nodes)} nodes, {n_if} interfaces, "
          f"{len(topo.programs)} programs{extra} in {seconds:.2f} s", flush=True)


def step_line(r: Any) -> None:
    mark = "PASS" if r.ok else "FAIL"
    print(f"  {mark}  {r.index:>2}  {r.title:<48} {r.detail}  ({r.seconds:.2f} s)", flush=True)


def summary(results: list[Any], teardown_s: float, failures: int = 0) -> None:
    passed = sum(1 for r in results if r.ok)
    failed = len(results) - passed
    if not results:
        print(f"no steps to run: the lab was built and torn down in {teardown_s:.2f} s")
        return
    verdict = "all checks passed" if not failed else f"{failed} check{'s' * (failed != 1)} FAILED"
    if failures:
        verdict += f", {failures} process{'es' * (failures != 1)} FAILED"
    print(f"{verdict} ({passed}/{len(results)}); torn down in {teardown_s:.2f} s")


def down_line(rep: Any) -> None:
    parts = []
    if rep.stopped_pid:
        parts.append("stopped its process")
    if getattr(rep, "processes", None):
        parts.append(f"stopped {len(rep.processes)} of its processes left running")
    if rep.namespaces:
        parts.append(f"removed {len(rep.namespaces)} namespaces")
    if rep.links:
        parts.append(f"removed {len(rep.links)} host links")
    for s in rep.skipped:
        parts.append(f"left alone {s}")
    for k in rep.killed:
        parts.append(f"stopped {k}")
    if rep.holders:
        parts.append(f"{len(rep.holders)} processes still hold its namespaces (state record kept)")
    print(f"lab {rep.lab}: down" + (": " + ", ".join(parts) if parts else ""))


def status(labs: list[dict[str, Any]]) -> None:
    if not labs:
        print("no labs")
        return
    for lab in labs:
        state = "up" if lab["alive"] else "DEAD (run 'netvirt down " + lab["lab"] + "')"
        print(f"lab {lab['lab']}  {state}  pid {lab.get('pid')}  {lab.get('scenario') or ''}")
        for node in lab["nodes"]:
            if node.get("machine"):
                print(f"  node {node['name']}  (on machine {node['machine']}, share {node['share']})")
                continue
            print(f"  node {node['name']}  ({node['netns'] or 'host namespace'})")
            for i in node["interfaces"]:
                addrs = " ".join(i["addresses"])
                print(f"    {i['name']:<15} {i['kind'] or '':<8} {'UP' if i['up'] else 'DOWN':<5}"
                      f" {i['mac'] or '':<17} {addrs}")
                counters = i.get("counters")
                if i.get("program_state") == "failed":
                    print(f"      program {i.get('program')}: FAILED: {i.get('program_error')}")
                elif counters:
                    shown = " ".join(f"{k}={v}" for k, v in counters.items())
                    print(f"      program {i.get('program')}: {shown}")
            for p in node.get("processes", []):
                code = "" if p["returncode"] is None else f" exit {p['returncode']}"
                n = p.get("members") or 0
                more = f" ({n} processes)" if n > 1 or (n and p["returncode"] is not None) else ""
                print(f"    process {p['name']:<12} {p['state']:<8} pid {p['pid']}{code}{more}  {p['cmd']}")
        for f in lab.get("process_failures", []):
            print(f"  FAILED {f}")
        for name, link in lab.get("links", {}).items():
            print(f"  link {name}")
            if "error" in link:
                print(f"    served by {link['backend']}: {link['error']}")
                continue
            from netvirt.impair.cli import format_stats

            for line in format_stats(link).splitlines():
                print(f"    {line.strip() if line.startswith('link') else line}")
