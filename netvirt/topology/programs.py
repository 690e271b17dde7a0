"""Start a scenario's program on a live device (the builder's side of programs/)."""

from __future__ import annotations

import asyncio
from typing import Any

from netvirt.devices import Device, Macvtap
from netvirt.programs import Program, ProgramContext, UserProgram, get_program
from netvirt.topology.model import InterfaceSpec
from netvirt.topology.node import Node


async def start_program(iface: InterfaceSpec, dev: Device, node: Node) -> tuple[Program, asyncio.Task[None]]:
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
    prog = cls(ctx)
    return prog, prog.start()
