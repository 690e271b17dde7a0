"""Start a scenario's program on a live device (the builder's side of programs/)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from netvirt.devices import Device, Macvtap
from netvirt.programs import Program, ProgramContext, UserProgram, get_program
from netvirt.topology.model import InterfaceSpec
from netvirt.topology.node import Node


def _relative_to(source: str, target: str) -> str:
    """``file.py:callable`` with a relative file: relative to the scenario file, if it is there."""
    module, sep, attr = target.rpartition(":")
    if sep and module.endswith(".py") and not os.path.isabs(module):
        candidate = os.path.join(os.path.dirname(os.path.abspath(source)), module)
        if os.path.exists(candidate):
            return f"{candidate}:{attr}"
    return target


async def start_program(iface: InterfaceSpec, dev: Device, node: Node,
                        source: str | None = None) -> tuple[Program, asyncio.Task[None]]:
    spec = iface.program
    assert spec is not None
    cls: type[Program] = UserProgram if spec.name == "python" else get_program(spec.name, spec.place)
    device_mac = ""
    if isinstance(dev, Macvtap):  # the kernel hands the fd only frames for the macvtap's MAC
        device_mac = (await dev.info()).mac or ""
    port: Any = dev.port  # type: ignore[attr-defined]
    ctx = ProgramContext(port=port, params=dict(spec.params), addresses=list(iface.addresses),
                         open_socket=node.ns.socket, device_name=f"{node.name}:{iface.name}",
                         place=spec.place, device_mac=device_mac)
    if spec.name == "python" and source:
        ctx.params["python"] = _relative_to(source, str(ctx.params.get("python", "")))
    prog = cls(ctx)
    return prog, prog.start()
