"""The verbs for labs across machines: ``run`` as the driver, ``down`` from its record.

The CLI hands a scenario with ``machines:`` to :func:`run`, and a lab name whose
record is a driver's to :func:`down`; output and exit codes are those of a local
lab (SPEC.md section 3): a machine that cannot be reached is exit 3 with its name.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from netvirt._aio import complete
from netvirt.cli import output
from netvirt.multi.driver import MultiLab
from netvirt.multi.machines import MultiScenario


def built_line(multi: MultiLab, seconds: float) -> None:
    per = ", ".join(f"{m}: {len(s.scenario.nodes)}" for m, s in multi.plan.shares.items())
    n = len(multi.plan.crossing)
    print(f"lab {multi.lab}: built {len(multi.scenario.nodes)} nodes on {len(multi.plan.shares)} "
          f"machines ({per}), {n} link{'s' * (n != 1)} over VXLAN in {seconds:.2f} s", flush=True)


async def run(ms: MultiScenario, *, json_out: bool = False, keep: bool = False, loop: str = "asyncio",
              interrupted: Any = None) -> int:
    """``netvirt run`` of a lab across machines; the exit code (errors raise)."""
    say = None if json_out or not sys.stderr.isatty() else (
        lambda what: print(f"  ... {what}", file=sys.stderr, flush=True))
    multi = MultiLab(ms, loop=loop, progress=say)
    results: list[Any] = []
    teardown_s = 0.0
    try:
        await multi.build()
        if not json_out:
            built_line(multi, multi.build_seconds)
        results = await multi.run_steps(on_result=None if json_out else output.step_line)
        if keep:
            print(f"lab {multi.lab} is up on {', '.join(multi.plan.shares)}; Ctrl-C or "
                  f"'netvirt down {multi.lab}' tears it down", file=sys.stderr)
            try:
                await asyncio.wait([asyncio.ensure_future(asyncio.shield(r.lost))
                                    for r in multi.remotes.values()], return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                if interrupted is None or not interrupted():
                    raise
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
    finally:
        t1 = time.perf_counter()
        await complete(multi.teardown())
        teardown_s = time.perf_counter() - t1
    ok = all(r.ok for r in results)
    if json_out:
        print(json.dumps({"lab": multi.lab, "ok": ok, "build_seconds": round(multi.build_seconds, 4),
                          "teardown_seconds": round(teardown_s, 4),
                          "machines": {m: {"share": s.lab, "nodes": sorted(s.scenario.nodes)}
                                       for m, s in multi.plan.shares.items()},
                          "steps": [r.as_dict() for r in results]}, indent=1))
    else:
        output.summary(results, teardown_s)
    return 0 if ok else 1


async def down(lab: str, *, json_out: bool = False) -> None:
    """``netvirt down LAB`` for a driver's record: every machine's share, then the record."""
    from netvirt.multi.down import down_multi

    done = await down_multi(lab)
    if json_out:
        print(json.dumps({"lab": lab, "machines": done}))
        return
    for machine, what in done.items():
        print(f"lab {lab}: machine {machine}: {what}")
    print(f"lab {lab}: down on {len(done)} machines")


__all__ = ["built_line", "down", "run"]
