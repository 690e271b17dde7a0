"""netvirt: asyncio network virtualization for Linux.

    import netvirt

    scenario = netvirt.load("scenarios/s4-udp-tunnel.yaml")
    async with netvirt.Topology(scenario) as topo:
        tun = topo.device("left", "tun0")
        await topo.node("left").exec("ip route")

Devices work on their own too, in any namespace::

    from netvirt import Namespace
    from netvirt.devices import Tun

    async with await Namespace.create("demo") as ns, Tun("tun0", netns=ns) as tun:
        packet = await tun.read()

Names are imported lazily, so ``import netvirt`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0.dev0"

__all__ = [
    "Device",
    "EnvironmentProblem",
    "KernelError",
    "NameTakenError",
    "Namespace",
    "NetvirtError",
    "NoSuchObjectError",
    "Node",
    "NotRootError",
    "PacketPort",
    "Scenario",
    "ScenarioError",
    "StepFailed",
    "StepResult",
    "Topology",
    "UnsupportedError",
    "UsageError",
    "load",
    "load_text",
    "ping",
    "run_steps",
]

_LAZY = {
    "Namespace": "netvirt.netns",
    "PacketPort": "netvirt.packetio",
    "Scenario": "netvirt.scenario.model",
    "load": "netvirt.scenario.loader",
    "load_text": "netvirt.scenario.loader",
    "Node": "netvirt.topology.node",
    "Device": "netvirt.devices.base",
    "Topology": "netvirt.topology.builder",
    "StepResult": "netvirt.topology.steps",
    "run_steps": "netvirt.topology.steps",
    "ping": "netvirt.topology.probes",
}

from netvirt.errors import (  # noqa: E402  (cheap: no third-party imports)
    EnvironmentProblem,
    KernelError,
    NameTakenError,
    NetvirtError,
    NoSuchObjectError,
    NotRootError,
    ScenarioError,
    StepFailed,
    UnsupportedError,
    UsageError,
)

if TYPE_CHECKING:
    from netvirt.devices.base import Device
    from netvirt.netns import Namespace
    from netvirt.packetio import PacketPort
    from netvirt.scenario.loader import load, load_text
    from netvirt.scenario.model import Scenario
    from netvirt.topology.builder import Topology
    from netvirt.topology.node import Node
    from netvirt.topology.probes import ping
    from netvirt.topology.steps import StepResult, run_steps


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netvirt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
