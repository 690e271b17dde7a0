"""A scenario's machines as the split sees them (``machines:`` / ``machine:``).

The keys are part of the scenario model and its validation
(``netvirt.scenario.machines``: every problem at once, with its line). This module
gives the split its view: :class:`Layout` (the machines, the nodes that name one,
file lines for later errors) and :class:`MultiScenario` (a scenario and its
layout), and loads scenario files as such.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netvirt.multi._model import MachineSpec, Scenario, load_plain, load_text_plain, validate

DEFAULT_COMMAND = "netvirt"


@dataclass(frozen=True)
class Layout:
    """The machines of a scenario, the nodes that name one, and lines of its links."""

    machines: Mapping[str, MachineSpec] = field(default_factory=dict)
    assigned: Mapping[str, str] = field(default_factory=dict)  # node -> machine
    lines: Mapping[str, int] = field(default_factory=dict)  # place -> file line

    def __bool__(self) -> bool:
        return bool(self.machines)

    @classmethod
    def of(cls, scenario: Scenario) -> Layout:
        return cls(dict(scenario.machines),
                   {n: s.machine for n, s in scenario.nodes.items() if s.machine},
                   {link.place: link.line for link in scenario.links if link.line is not None})


@dataclass(frozen=True)
class MultiScenario:
    """A validated scenario and its layout (empty when everything is local)."""

    scenario: Scenario
    layout: Layout

    @classmethod
    def of(cls, scenario: Scenario) -> MultiScenario:
        return cls(scenario, Layout.of(scenario))

    def with_name(self, name: str) -> MultiScenario:
        return MultiScenario(self.scenario.with_name(name), self.layout)


def from_raw(raw: Any, source: str | None = None) -> MultiScenario:
    return MultiScenario.of(validate(raw, source))


def load(path: str | Path, params: Mapping[str, str] | None = None) -> MultiScenario:
    return MultiScenario.of(load_plain(path, params))


def load_text(text: str, source: str = "<string>") -> MultiScenario:
    return MultiScenario.of(load_text_plain(text, source))


__all__ = ["DEFAULT_COMMAND", "Layout", "MachineSpec", "MultiScenario", "from_raw", "load", "load_text"]
