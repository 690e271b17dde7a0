"""The shipped scenarios across two namespace-machines, driven in-process."""

from __future__ import annotations

import pytest

from netvirt.multi.machines import load
from netvirt.multi.testing import ROOT, NsMachines
from tests.conftest import unique

pytestmark = pytest.mark.root


@pytest.mark.parametrize(("file", "params", "agent_loop"), [
    ("s3b_star_split.py", {"n": "6"}, "asyncio"),
    ("s4-udp-tunnel-split.yaml", None, "uvloop"),
])
@pytest.mark.asyncio(loop_factories=["asyncio"])
async def test_shipped_split_scenario_passes(ns_machines: NsMachines, file: str,
                                             params: dict[str, str] | None, agent_loop: str) -> None:
    lab = unique()
    ms = ns_machines.adapt(load(ROOT / "scenarios" / file, params).with_name(lab))
    async with ns_machines.driver(ms, loop=agent_loop) as multi:  # the machines' event loop
        assert set(multi.plan.shares) == {"m1", "m2"} and multi.plan.crossing
        results = await multi.run_steps()
    assert results and all(r.ok for r in results), [(r.title, r.detail) for r in results if not r.ok]
    assert ns_machines.lab_traces(lab) == []
