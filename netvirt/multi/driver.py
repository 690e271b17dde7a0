"""The driver: one lab over several machines (SPEC.md section 10).

``async with MultiLab(ms) as lab: results = await lab.run_steps()``

Build, in order, so that nothing exists anywhere until everything is known to fit:

1. the split (``split.plan``) with what ``machines:`` says: a scenario error
   (placement) stops here;
2. the driver's own state record, ``/run/netvirt/<lab>/lab.json``, naming every
   machine and its share (so ``down LAB`` finds them after a kill -9 of the driver);
3. every machine in parallel: SSH, netvirt's version there, the agent, the MTU of
   its underlay; an unreachable machine is a MachineError naming it (exit 3);
4. the split again with the MTUs the machines reported: an MTU that cannot fit is
   a located ScenarioError, before anything is created;
5. every share in parallel, its crossing links as VXLAN ends.

Any failure, Ctrl-C or cancellation unwinds every machine (each agent tears down
its share, and also does so by itself when its channel ends), then re-raises the
first error. Steps run one by one where their node lives; a lost connection
during the steps fails the run with the machine's name.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from netvirt._aio import complete, unwind
from netvirt.errors import EnvironmentProblem, MachineError
from netvirt.multi import wire
from netvirt.multi._live import STATE_ROOT, LabState, StepResult
from netvirt.multi.machines import MultiScenario
from netvirt.multi.remote import Remote
from netvirt.multi.split import Plan, plan

ProgressFn = Callable[[str], None]


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def gather_all(coros: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run ``coros`` concurrently; on the first failure cancel the rest, raise that failure."""
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(c) for c in coros]
    except BaseExceptionGroup as group:
        raise _first_leaf(group) from None
    return [t.result() for t in tasks]


class MultiLab:
    """A lab across machines; the driver side. Constructing it does no I/O."""

    def __init__(self, ms: MultiScenario, *, ssh_config: Sequence[str] | None = None,
                 netns: str | None = None, loop: str = "asyncio", state_root: Path | None = None,
                 progress: ProgressFn | None = None) -> None:
        if not ms.layout:
            raise ValueError("MultiLab needs a scenario with machines:")
        self.ms = ms
        self.scenario = ms.scenario
        self.lab = ms.scenario.name
        # pure: placement errors right away; MTUs not given are checked once the machines tell
        unknown = {m: 65535 for m, spec in ms.layout.machines.items() if spec.mtu is None}
        self.plan: Plan = plan(ms.scenario, ms.layout, unknown)
        self.remotes: dict[str, Remote] = {}
        self.built: dict[str, dict[str, Any]] = {}
        self._ssh = {"ssh_config": ssh_config, "netns": netns}
        self._loop = loop
        self._state = LabState(self.lab, root=state_root or STATE_ROOT)
        self._progress = progress
        self._torn_down = False
        self._sent_build: set[str] = set()
        self.build_seconds = 0.0

    def _say(self, what: str) -> None:
        if self._progress is not None:
            self._progress(what)

    async def __aenter__(self) -> MultiLab:
        await self.build()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await complete(self.teardown())

    # -- build ---------------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        return {"multi": {"machines": {
            m: {"ssh": share.machine.ssh, "command": share.machine.command, "share": share.lab,
                "underlay": str(share.machine.underlay), "nodes": sorted(share.scenario.nodes)}
            for m, share in self.plan.shares.items()}},
            "nodes": [], "host_nodes": []}  # the nodes live on the machines

    async def build(self) -> None:
        t0 = time.perf_counter()
        try:
            self._state.claim(scenario=self.scenario.source, detail=self._record())
        except OSError as exc:
            raise EnvironmentProblem(
                f"cannot write the driver's state record {self._state.dir}: {exc.strerror or exc}; run "
                "as root (or point NETVIRT_STATE_DIR at a directory you own)") from None
        try:
            self._say(f"reaching {len(self.plan.shares)} machines")
            mtus = await gather_all([self._reach(m) for m in self.plan.shares])
            fixed = {m: mtu for m, mtu in zip(self.plan.shares, mtus, strict=True)
                     if self.ms.layout.machines[m].mtu is None}
            self.plan = plan(self.scenario, self.ms.layout, fixed)  # MTU errors: nothing made yet
            self._say("building the shares")
            done = await gather_all([self._build_share(m) for m in self.plan.shares])
            self.built = dict(zip(self.plan.shares, done, strict=True))
        except BaseException as exc:
            await unwind(exc, self.teardown())
            raise
        self.build_seconds = time.perf_counter() - t0

    async def _reach(self, machine: str) -> int:
        remote = Remote(self.plan.shares[machine].machine, **self._ssh)  # type: ignore[arg-type]
        self.remotes[machine] = remote
        await remote.connect()
        # the version check and the agent's start-up (each a Python start there) overlap;
        # nothing is asked of the agent before the version is known to match
        await gather_all([remote.check_version(), remote.start_agent(self._loop)])
        hello = await remote.request("hello", underlay=str(remote.machine.underlay))
        return int(hello["mtu"])

    async def _build_share(self, machine: str) -> dict[str, Any]:
        share = self.plan.shares[machine]
        self._sent_build.add(machine)
        return await self.remotes[machine].request(
            "build", share=share.lab, scenario=wire.encode(share.scenario), vxlans=wire.encode(share.vxlans))

    # -- steps ---------------------------------------------------------------------
    async def run_steps(self, on_result: Callable[[StepResult], None] | None = None) -> list[StepResult]:
        """Every step in order, each where its node lives; a lost machine ends the run."""
        results: list[StepResult] = []

        async def steps() -> None:
            for i, step in enumerate(self.scenario.steps, 1):
                result = await self.run_step(step, i)
                if on_result is not None:
                    on_result(result)
                results.append(result)

        work: asyncio.Future[Any] = asyncio.ensure_future(steps())
        lost: dict[asyncio.Future[Any], str] = {
            asyncio.ensure_future(asyncio.shield(r.lost)): name for name, r in self.remotes.items()}
        try:
            done, _ = await asyncio.wait({work, *lost}, return_when=asyncio.FIRST_COMPLETED)
            if work not in done:
                gone = next(iter(done))
                raise MachineError(lost[gone], str(gone.result()))
            work.result()
        finally:
            for fut in (work, *lost):
                fut.cancel()
            await asyncio.gather(work, *lost, return_exceptions=True)
        return results

    async def run_step(self, step: Any, index: int = 1) -> StepResult:
        from netvirt.multi.steps import run_step

        return await run_step(self, step, index)

    # -- teardown ------------------------------------------------------------------
    async def teardown(self) -> None:
        """Tear down every machine's share (in parallel), close the connections. Safe twice.

        The driver's record goes only if every machine confirmed; else ``down LAB`` finds them.
        """
        if self._torn_down:
            return
        self._torn_down = True
        results = await asyncio.gather(*(self._teardown_one(r) for r in self.remotes.values()),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if self._state.claimed and not errors:
            self._state.release()
        if errors:
            raise errors[0]

    async def _teardown_one(self, remote: Remote) -> None:
        confirmed = False
        try:
            if remote.running:
                with contextlib.suppress(MachineError, TimeoutError):  # lost: it tears down by itself
                    await asyncio.wait_for(remote.request("teardown"), 120)
                    confirmed = True
        finally:
            await remote.close()
        if not confirmed and remote.name in self._sent_build:
            raise MachineError(remote.name, f"{remote.lost.result()}; its share may still be there: "
                                            f"run 'netvirt down {self.lab}'")


__all__ = ["MultiLab", "gather_all"]
