"""The live lab: builds a Scenario into namespaces and devices, runs it, tears it down.

Everything here owns or inspects kernel objects (the inert scenario is
``netvirt.scenario``):

* ``builder.py``: :class:`Topology`, the build phases, program start, teardown;
* ``node.py``: :class:`Node` (one namespace) and ``exec``;
* ``journal.py``: the state record of a lab, written before each creation, and its replay;
* ``down.py``: ``netvirt down``: stop a lab's process, then replay its journal;
* ``steps.py``: the step runners (ping, connect, exec, counters, fdb, wait);
* ``probes.py``: netvirt's own ping and the TCP/UDP echo the runners use;
* ``capture.py``: AF_PACKET capture of an interface into a pcap file;
* ``status.py``: what ``netvirt status`` shows, collected from state records and the kernel.

Names are imported lazily: importing one module of the package (e.g. the journal)
does not import the devices. For 0.1.0 code, the scenario names (``load``,
``Scenario``, ``validate``...) are still importable from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "Endpoint",
    "ExecResult",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "InterfaceSpec",
    "LinkSpec",
    "Node",
    "NodeSpec",
    "ProgramSpec",
    "RouteSpec",
    "Scenario",
    "StepResult",
    "StepSpec",
    "Topology",
    "down_lab",
    "load",
    "load_text",
    "ping",
    "run_step",
    "run_steps",
    "validate",
]

_LIVE = {
    "Topology": "netvirt.topology.builder",
    "Node": "netvirt.topology.node",
    "ExecResult": "netvirt.topology.node",
    "StepResult": "netvirt.topology.steps",
    "ping": "netvirt.topology.probes",
    "run_step": "netvirt.topology.steps",
    "run_steps": "netvirt.topology.steps",
    "down_lab": "netvirt.topology.down",
}

if TYPE_CHECKING:
    from netvirt.scenario import (
        Endpoint,
        InterfaceSpec,
        IPAddress,
        IPInterface,
        IPNetwork,
        LinkSpec,
        NodeSpec,
        ProgramSpec,
        RouteSpec,
        Scenario,
        StepSpec,
        load,
        load_text,
        validate,
    )
    from netvirt.topology.builder import Topology
    from netvirt.topology.down import down_lab
    from netvirt.topology.node import ExecResult, Node
    from netvirt.topology.probes import ping
    from netvirt.topology.steps import StepResult, run_step, run_steps


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'netvirt.topology' has no attribute {name!r}")
    module = _LIVE.get(name, "netvirt.scenario")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
