"""The one place this package imports the scenario model and its helpers from.

The model lives in ``netvirt.scenario`` (pure: no kernel side); only these
imports would change if it moved again.
"""

from __future__ import annotations

from netvirt.scenario import loader as _loader
from netvirt.scenario.model import (
    Endpoint,
    InterfaceSpec,
    IPAddress,
    LinkSpec,
    MachineSpec,
    NodeSpec,
    Scenario,
    StepSpec,
)
from netvirt.scenario.validate import validate

load_plain = _loader.load
load_text_plain = _loader.load_text

__all__ = [
    "Endpoint",
    "IPAddress",
    "InterfaceSpec",
    "LinkSpec",
    "MachineSpec",
    "NodeSpec",
    "Scenario",
    "StepSpec",
    "load_plain",
    "load_text_plain",
    "validate",
]
