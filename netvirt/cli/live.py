"""The verbs that run an event loop: run, up, down, status, capture (thin: the work is
in ``netvirt.topology``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from netvirt._aio import complete
from netvirt.cli import EXIT_INTERRUPTED, output
from netvirt.cli.commands import _load, _node_netns
from netvirt.errors import EnvironmentProblem, UsageError


class _Signals:
    """SIGINT/SIGTERM cancel the main task once; later signals are ignored so teardown finishes."""

    def __init__(self) -> None:
        self.received: int | None = None

    def install(self, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()

        def handler(sig: int) -> None:
            if self.received is None:
                self.received = sig
                task.cancel()
            else:
                print("netvirt: tearing down, please wait", file=sys.stderr)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, handler, sig)


def _run_async(args: argparse.Namespace, fn: Callable[[_Signals], Awaitable[int]]) -> int:
    sigs = _Signals()

    async def main() -> int:
        task = asyncio.current_task()
        assert task is not None
        sigs.install(task)
        try:
            return await fn(sigs)
        except asyncio.CancelledError:
            if sigs.received is not None:
                print("netvirt: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            raise

    import gc

    from netvirt.cli import _guard_signals

    gc.freeze()  # what start-up made lives to the end: later collections need not walk it
    try:
        if args.loop == "uvloop":
            import uvloop

            return uvloop.run(main())
        return asyncio.run(main())
    finally:
        _guard_signals()  # the loop's handlers are gone: SIGTERM would kill us outright


# -- run / up --------------------------------------------------------------
async def _publish(topo: Any) -> None:
    while True:
        topo.publish_counters()
        await asyncio.sleep(1.0)


def cmd_run(args: argparse.Namespace) -> int:
    scenario = _load(args)
    if scenario.machines:  # a lab across machines: this process is its driver
        from netvirt.multi import cli as multi
        from netvirt.multi.machines import MultiScenario

        return _run_async(args, lambda sigs: multi.run(
            MultiScenario.of(scenario), json_out=args.json, keep=args.keep, loop=args.loop,
            interrupted=lambda: sigs.received is not None))
    from netvirt.topology.builder import Topology
    from netvirt.topology.steps import run_steps

    async def go(sigs: _Signals) -> int:
        progress = output.Progress(enabled=not args.json)
        topo = Topology(scenario, progress=progress)
        t0 = time.perf_counter()
        results: list[Any] = []
        failures: list[str] = []
        build_s = teardown_s = 0.0
        try:
            try:
                await topo.build()
            finally:
                progress.done()
            build_s = time.perf_counter() - t0
            if not args.json:
                output.built_line(topo, build_s)
            results = await run_steps(topo, on_result=None if args.json else output.step_line)
            failures = topo.process_failures()  # a process that died while the lab ran fails the run
            if args.keep:
                try:
                    await _stay_up(topo)
                except asyncio.CancelledError:
                    if sigs.received is None:
                        raise
                    # Ctrl-C or SIGTERM is how a kept lab ends: report the steps' verdict
                    asyncio.current_task().uncancel()  # type: ignore[union-attr]
                    sigs.received = None
        finally:
            t1 = time.perf_counter()
            await complete(topo.teardown())
            teardown_s = time.perf_counter() - t1
        ok = all(r.ok for r in results) and not failures
        if args.json:
            print(json.dumps({"lab": topo.lab, "ok": ok, "build_seconds": round(build_s, 4),
                              "teardown_seconds": round(teardown_s, 4),
                              "steps": [r.as_dict() for r in results],
                              "process_failures": failures}, indent=1))
        else:
            for f in failures:
                print(f"  FAIL  {f}")
            output.summary(results, teardown_s, failures=len(failures))
        return 0 if ok else 1

    return _run_async(args, go)


async def _stay_up(topo: Any) -> None:
    log = os.environ.pop("NETVIRT_UP_LOG", None)
    if log:  # detached: the log moves into the lab's record, where `status` points to it
        with contextlib.suppress(OSError):
            os.replace(log, topo.state_dir / "up.log")
    topo.mark_ready()
    print(f"lab {topo.lab} is up; Ctrl-C or 'netvirt down {topo.lab}' tears it down", file=sys.stderr)
    await _publish(topo)


def _local_only(scenario: Any, verb: str) -> None:
    if scenario.machines:
        raise UsageError(f"'{verb}' builds a lab on this machine only; {scenario.name!r} spans machines "
                         f"({', '.join(scenario.machines)}): use 'netvirt run --keep' to keep it up")


def cmd_up(args: argparse.Namespace) -> int:
    if args.detach:
        return _detach(args)
    scenario = _load(args)
    _local_only(scenario, "up")
    if os.geteuid() != 0:  # before the kernel-side modules are even imported
        from netvirt.errors import NotRootError

        raise NotRootError("netvirt up")
    from netvirt.topology.builder import Topology

    async def go(sigs: _Signals) -> int:
        progress = output.Progress()
        topo = Topology(scenario, progress=progress)
        built = False
        try:
            t0 = time.perf_counter()
            try:
                await topo.build()
            finally:
                progress.done()
            built = True
            output.built_line(topo, time.perf_counter() - t0)
            await _stay_up(topo)
        except asyncio.CancelledError:
            if sigs.received is None or not built:
                raise  # interrupted before the lab was up: exit 130
            asyncio.current_task().uncancel()  # type: ignore[union-attr]
        finally:
            await complete(topo.teardown())
            if built:
                print(f"lab {topo.lab} torn down", file=sys.stderr)
        return 0  # Ctrl-C / SIGTERM is the normal end of 'up'

    return _run_async(args, go)


def _detach(args: argparse.Namespace) -> int:
    """Start ``up`` in a new session and return once the lab is built."""
    scenario = _load(args)  # report scenario errors here, in the foreground
    _local_only(scenario, "up --detach")
    lab = scenario.name
    from netvirt.netns import require_root
    from netvirt.topology.journal import STATE_ROOT, read_info

    require_root("netvirt up")
    argv = [sys.executable, "-m", "netvirt", "--loop", args.loop, "up", args.file,
            *(f"--param={p}" for p in args.param)] + (["--name", args.name] if args.name else [])
    STATE_ROOT.mkdir(parents=True, exist_ok=True)
    # a log of this invocation's own (two `up --detach` of one lab may race); the
    # lab moves it into its record once built
    log = STATE_ROOT / f".up-{os.getpid()}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                start_new_session=True, env={**os.environ, "NETVIRT_UP_LOG": str(log)})
    try:
        while True:
            info = read_info(lab)
            if info.get("ready") and info.get("pid") == proc.pid:
                print(f"lab {lab} is up (pid {proc.pid}, log {STATE_ROOT / lab / 'up.log'}); "
                      f"'netvirt down {lab}' tears it down")
                return 0
            code = proc.poll()
            if code is not None:
                with contextlib.suppress(OSError):
                    sys.stderr.write(log.read_text(errors="replace"))
                return code or 1
            time.sleep(0.02)
    finally:
        log.unlink(missing_ok=True)  # gone already if the lab took it


# -- down / status ----------------------------------------------------------
def cmd_down(args: argparse.Namespace) -> int:
    from netvirt.netns import require_root
    from netvirt.topology.down import down_lab

    require_root("netvirt down")

    async def go(sigs: _Signals) -> int:
        code = 0
        from netvirt.multi.down import is_multi

        for name in args.name:
            if is_multi(name):  # the driver's record of a lab across machines
                from netvirt.multi import cli as multi

                await multi.down(name, json_out=args.json)
                continue
            rep = await down_lab(name, kill_holders=args.kill_holders)
            if not rep.found:
                print(f"netvirt: error: no lab named {name!r} (see 'netvirt status')", file=sys.stderr)
                code = 3
                continue
            if args.json:
                print(json.dumps(rep.__dict__))
            else:
                output.down_line(rep)
            if rep.holders:
                for h in rep.holders:
                    print(f"netvirt: error: lab {name}: namespace {h}, so it and its devices "
                          f"are still alive", file=sys.stderr)
                print(f"netvirt: error: lab {name}: stop those processes, or run "
                      f"'netvirt down {name} --kill-holders'", file=sys.stderr)
                code = 3
        return code

    return _run_async(args, go)


def cmd_status(args: argparse.Namespace) -> int:
    from netvirt.scenario.model import check_lab_name
    from netvirt.topology.status import collect

    if args.name is not None:
        check_lab_name(args.name)  # `status ''` is a bad name, not "every lab"

    async def go(sigs: _Signals) -> int:
        labs = await collect(args.name)
        if args.json:
            print(json.dumps(labs, indent=1))
        else:
            output.status(labs)
        if args.name and not labs:
            print(f"netvirt: error: no lab named {args.name!r}", file=sys.stderr)
            return 3
        return 0

    return _run_async(args, go)


def cmd_capture(args: argparse.Namespace) -> int:
    ns = _node_netns(args.name, args.node)
    from netvirt.topology.capture import capture

    async def go(sigs: _Signals) -> int:
        done = await capture(ns, args.ifname, args.write, count=args.count, seconds=args.seconds,
                             promisc=args.promisc)
        print(f"captured {done.packets} packets to {args.write}", file=sys.stderr)
        if done.ended == "gone":
            raise EnvironmentProblem(f"capture stopped: interface {args.ifname!r} of node "
                                     f"{args.node!r} is gone (lab {args.name!r} torn down?)")
        return 0

    code = _run_async(args, go)
    return 0 if code == EXIT_INTERRUPTED else code
