"""Scenarios: the inert model, loading from YAML or Python, validation, pictures.

``load(path)`` reads and validates a scenario file and returns a
:class:`Scenario`; every problem in it comes at once in one
:class:`~netvirt.errors.ScenarioError`. The builder (elsewhere) turns a
Scenario into a live topology; nothing in this package touches the kernel.
"""

from netvirt.topology.loader import load, load_text
from netvirt.topology.model import (
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
)
from netvirt.topology.validate import validate

__all__ = [
    "Endpoint",
    "IPAddress",
    "IPInterface",
    "IPNetwork",
    "InterfaceSpec",
    "LinkSpec",
    "NodeSpec",
    "ProgramSpec",
    "RouteSpec",
    "Scenario",
    "StepSpec",
    "load",
    "load_text",
    "validate",
]
