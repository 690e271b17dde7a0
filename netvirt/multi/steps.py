"""Steps of a lab across machines, each run where its node lives.

A step goes to the agent of the machine that holds its node (``split.step_node``)
and comes back as an ordinary StepResult; ``wait`` runs in the driver. A
``connect`` whose listener (the node that owns the address) is on another
machine than its sender is split in two: the listener's machine opens and
serves the echo (``listen``), the sender's machine talks to it (``talk``),
the listener goes (``unlisten``) whatever happened.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from netvirt.errors import NetvirtError
from netvirt.multi import wire
from netvirt.multi._live import StepResult
from netvirt.multi._live import step_title as _title
from netvirt.multi.split import step_node, step_param, step_peer_node

if TYPE_CHECKING:
    from netvirt.multi.driver import MultiLab


async def run_step(lab: MultiLab, step: Any, index: int = 1) -> StepResult:
    node = step_node(step)
    title = _title(step)
    t0 = time.perf_counter()
    if node is None:
        if step.kind == "wait":
            seconds = float(step_param(step, "seconds"))
            await asyncio.sleep(seconds)
            return StepResult(index, step.kind, title, True, f"waited {step_param(step, 'seconds')} s",
                              time.perf_counter() - t0)
        return StepResult(index, step.kind, title, False, "this step names no node: it cannot be "
                          "placed on a machine", 0.0)
    machine = lab.plan.machine_of(node)
    peer = step_peer_node(step)
    if step.kind == "connect" and peer is not None and lab.plan.machine_of(peer) != machine:
        return await _connect_across(lab, step, index, title, machine, lab.plan.machine_of(peer))
    reply = await lab.remotes[machine].request("step", step=wire.encode(step), index=index)
    return StepResult(**reply["result"])


async def _connect_across(lab: MultiLab, step: Any, index: int, title: str, client: str,
                          server: str) -> StepResult:
    def p(*keys: str) -> Any:
        return step_param(step, *keys)

    t0 = time.perf_counter()
    srv, cli = lab.remotes[server], lab.remotes[client]
    where = {"proto": p("proto"), "address": p("address"), "port": p("port")}
    ok, detail = False, ""
    try:
        token = (await srv.request("listen", node=p("server"), **where))["token"]
        try:
            talk = await cli.request("talk", node=p("from", "src"), bytes=p("bytes"), timeout=p("timeout"),
                                     **where)
            ok, detail = bool(talk["intact"]), str(talk["detail"])
        finally:
            await srv.request("unlisten", token=token)
    except NetvirtError as exc:
        ok, detail = False, str(exc)
    if p("expect") == "failure":
        detail = f"failed as expected ({detail})" if not ok else f"{detail}; expected no connection"
        ok = not ok
    return StepResult(index, step.kind, title, ok, detail, time.perf_counter() - t0)


__all__ = ["run_step"]
