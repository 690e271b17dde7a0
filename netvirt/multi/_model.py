"""The one place this package imports the scenario model and its helpers from.

The model is moving (``netvirt.topology`` -> ``netvirt.scenario``): only these
imports change then.
"""

from __future__ import annotations

from netvirt.topology import loader as _loader
from netvirt.topology._checks import LineDict, LineList, name_problem
from netvirt.topology.model import (
    Endpoint,
    InterfaceSpec,
    IPAddress,
    LinkSpec,
    NodeSpec,
    Scenario,
    StepSpec,
)
from netvirt.topology.validate import validate

load_plain = _loader.load
parse_yaml = _loader.parse_yaml
run_python = _loader._run_python  # a Python scenario's raw structure

__all__ = [
    "Endpoint",
    "IPAddress",
    "InterfaceSpec",
    "LineDict",
    "LineList",
    "LinkSpec",
    "NodeSpec",
    "Scenario",
    "StepSpec",
    "load_plain",
    "name_problem",
    "parse_yaml",
    "run_python",
    "validate",
]
