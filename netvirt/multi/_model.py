"""The one place this package imports the scenario model and its helpers from.

The model lives in ``netvirt.scenario`` (pure: no kernel side); only these
imports would change if it moved again.
"""

from __future__ import annotations

from netvirt.scenario import loader as _loader
from netvirt.scenario import model as _model_module
from netvirt.scenario.checker import LineDict, LineList, name_problem
from netvirt.scenario.model import (
    Endpoint,
    InterfaceSpec,
    IPAddress,
    LinkSpec,
    NodeSpec,
    Scenario,
    StepSpec,
)
from netvirt.scenario.validate import validate

#: the modules whose dataclasses cross the wire to the machines (wire.CLASSES)
MODEL_MODULES = (_model_module,)
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
    "MODEL_MODULES",
    "NodeSpec",
    "Scenario",
    "StepSpec",
    "load_plain",
    "name_problem",
    "parse_yaml",
    "run_python",
    "validate",
]
