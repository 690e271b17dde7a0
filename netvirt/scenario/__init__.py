"""Scenarios: the inert model, loading from YAML or Python, validation, pictures.

``load(path)`` reads and validates a scenario file and returns a
:class:`Scenario`; every problem in it comes at once in one
:class:`~netvirt.errors.ScenarioError`. The builder (``netvirt.topology``) turns
a Scenario into a live topology. Nothing in this package touches the kernel or
imports the devices, the netlink seam or pyroute2 (a test checks it), so
``netvirt validate`` and ``graph`` run anywhere, without root.

* ``model.py``: the frozen specs (Scenario, NodeSpec, InterfaceSpec, typed step specs...);
* ``loader.py``: YAML with lines (libyaml's C parser when present), Python scenarios, ``--param``;
* ``checker.py``: located raw values (``At``) and the ``Checker`` primitives;
* ``validate.py``: top level, nodes, links, routes, sysctls;
* ``interfaces.py``: per-kind keys (from ``netvirt.kinds``), programs, cross references;
* ``steps.py``: step validation into typed step specs;
* ``graph.py``: dot, svg/png and mermaid pictures.
"""

from netvirt.scenario.loader import load, load_text
from netvirt.scenario.model import (
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
    check_lab_name,
    lab_alias,
    netns_name,
)
from netvirt.scenario.validate import validate

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
    "check_lab_name",
    "lab_alias",
    "load",
    "load_text",
    "netns_name",
    "validate",
]
