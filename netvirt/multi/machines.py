"""``machines:`` and ``machine:`` (SPEC.md section 10): parsing and checks (pure).

A lab across machines is an ordinary scenario plus a top-level ``machines:``
map and an optional ``machine:`` per node::

    machines:
      m1: {ssh: "root@192.0.2.1", underlay: 192.0.2.1}
      m2: {ssh: "root@192.0.2.2", underlay: 192.0.2.2, command: "python3 -m netvirt", mtu: 9000}

``ssh`` is what ``ssh`` would be given (``[user@]host[:port]``, a host alias of the
user's ssh config works), ``underlay`` the machine's address that VXLAN uses,
``command`` how netvirt is started there (default ``netvirt``), ``mtu`` the
underlay's MTU (default: asked from the machine before anything is built).

:func:`load` reads such a file: it takes these keys out of the raw structure,
checks them, lets the ordinary validator check the rest, and reports every
problem of both at once, each with its place and file line.
"""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from netvirt.errors import Problem, ScenarioError
from netvirt.multi._model import IPAddress, Scenario, name_problem, parse_yaml, run_python, validate

MACHINE_KEYS = ("ssh", "underlay", "command", "mtu")
DEFAULT_COMMAND = "netvirt"
#: a share is named <lab>-<k>, k one of these: the share names stay valid lab names
SHARE_SUFFIXES = "123456789abcdefghijklmnopqrstuvwxyz"
LAB_MAX = 10


@dataclass(frozen=True)
class MachineSpec:
    """One machine of a lab: how to reach it and its underlay address."""

    name: str
    ssh: str
    underlay: IPAddress
    command: str = DEFAULT_COMMAND
    mtu: int | None = None
    index: int = 0  # position in machines: (names the machine's share)
    place: str = ""

    @property
    def share_suffix(self) -> str:
        return SHARE_SUFFIXES[self.index]


@dataclass(frozen=True)
class Layout:
    """What ``machines:`` adds to a scenario: the machines, and the nodes that name one."""

    machines: Mapping[str, MachineSpec] = field(default_factory=dict)
    assigned: Mapping[str, str] = field(default_factory=dict)  # node -> machine
    lines: Mapping[str, int] = field(default_factory=dict)  # place -> file line

    def __bool__(self) -> bool:
        return bool(self.machines)


@dataclass(frozen=True)
class MultiScenario:
    """A validated scenario and its layout (empty when everything is local)."""

    scenario: Scenario
    layout: Layout

    def with_name(self, name: str) -> MultiScenario:
        problem = lab_name_problem(name) if self.layout else None
        if problem:
            raise ScenarioError(Problem("name", problem, None, self.scenario.source))
        return replace(self, scenario=self.scenario.with_name(name))


def lab_name_problem(name: str) -> str | None:
    if len(name) > LAB_MAX:
        return (f"lab name {name!r} is {len(name)} characters long; a lab across machines has at "
                f"most {LAB_MAX}, since each machine's share is named <lab>-<k>")
    return None


def _line(obj: Any, key: Any) -> int | None:
    lines = getattr(obj, "key_lines", None)
    if lines and key in lines:
        return int(lines[key])
    return getattr(obj, "line", None)


@dataclass
class RawLayout:
    """The raw ``machines:`` value and ``machine:`` values taken out of a scenario."""

    machines: dict[str, Any] = field(default_factory=dict)
    line: int | None = None  # of the machines: key
    assigned: dict[str, tuple[Any, int | None]] = field(default_factory=dict)  # node -> (value, line)
    lines: dict[str, int] = field(default_factory=dict)  # of name and links[i], for later problems


def extract(raw: Any, source: str | None) -> tuple[Any, RawLayout, list[Problem]]:
    """``raw`` without ``machines:`` and ``nodes.X.machine`` (copied where changed), and those."""
    problems: list[Problem] = []
    out = RawLayout()
    if not isinstance(raw, dict):
        return raw, out, problems
    raw = copy.copy(raw)  # a LineDict keeps its lines
    if "machines" in raw:
        out.line = _line(raw, "machines")
        value = raw.pop("machines")
        if isinstance(value, dict):
            out.machines = value
        elif value is not None:
            problems.append(Problem("machines", "machines must be a mapping of machine name to "
                                                "{ssh, underlay, command, mtu}", out.line, source))
    name_line = _line(raw, "name")
    if name_line is not None:
        out.lines["name"] = name_line
    for i, line in enumerate(getattr(raw.get("links"), "item_lines", [])):
        out.lines[f"links[{i}]"] = line
    nodes = raw.get("nodes")
    if isinstance(nodes, dict):
        raw["nodes"] = nodes = copy.copy(nodes)
        for name, node in nodes.items():
            if isinstance(node, dict) and "machine" in node:
                nodes[name] = node = copy.copy(node)
                out.assigned[str(name)] = (node.pop("machine"), _line(node, "machine"))
    return raw, out, problems


def check(raw: RawLayout, lab: Any, source: str | None) -> tuple[Layout, list[Problem]]:
    """Check the raw ``machines:`` and ``machine:`` values; the Layout and the problems."""
    problems: list[Problem] = []
    lines: dict[str, int] = dict(raw.lines)
    raw_machines, raw_assigned, top_line = raw.machines, raw.assigned, raw.line

    def add(path: str, message: str, line: int | None) -> None:
        problems.append(Problem(path, message, line, source))

    machines: dict[str, MachineSpec] = {}
    seen: dict[str, str] = {}
    for index, (name, value) in enumerate(raw_machines.items()):
        path = f"machines.{name}"
        line = _line(raw_machines, name)
        if line is not None:
            lines[path] = line
        problem = name_problem(name, "machine name")
        if problem:
            add(path, problem, line)
            continue
        if index >= len(SHARE_SUFFIXES):
            add(path, f"at most {len(SHARE_SUFFIXES)} machines", line)
            continue
        spec = _machine(name, value, index, path, line, add)
        if spec is None:
            continue
        other = seen.get(str(spec.underlay))
        if other is not None:
            add(f"{path}.underlay", f"underlay {spec.underlay} is also machine {other}'s; "
                                    "each machine needs its own address", _line(value, "underlay"))
            continue
        seen[str(spec.underlay)] = name
        machines[name] = spec
    versions = {m.underlay.version for m in machines.values()}
    if len(versions) > 1:
        add("machines", "underlay addresses mix IPv4 and IPv6: VXLAN joins machines of one family",
            top_line)
    if raw_machines and isinstance(lab, str):
        problem = lab_name_problem(lab)
        if problem:
            add("name", problem, lines.get("name"))
    assigned: dict[str, str] = {}
    for node, (value, line) in raw_assigned.items():
        path = f"nodes.{node}.machine"
        if line is not None:
            lines[path] = line
        if not raw_machines:
            add(path, "machine: needs a top-level machines: map naming the machines", line)
        elif not isinstance(value, str) or value not in raw_machines:
            known = ", ".join(str(m) for m in raw_machines) or "none"
            add(path, f"unknown machine {value!r}; machines: {known}", line)
        elif value in machines:
            assigned[node] = value
    return Layout(machines, assigned, lines), problems


def _machine(name: str, value: Any, index: int, path: str, line: int | None,
             add: Any) -> MachineSpec | None:
    if not isinstance(value, dict):
        add(path, "a machine is a mapping {ssh, underlay, command, mtu}", line)
        return None
    ok = True
    for key in value:
        if key not in MACHINE_KEYS:
            add(f"{path}.{key}", f"unknown key {key!r}; a machine takes: {', '.join(MACHINE_KEYS)}",
                _line(value, key))
            ok = False
    ssh = value.get("ssh")
    if not isinstance(ssh, str) or not ssh.strip() or any(c.isspace() for c in ssh):
        add(f"{path}.ssh", "ssh is required: [user@]host[:port] or a host of your ssh config",
            _line(value, "ssh"))
        ok = False
    try:
        underlay = ipaddress.ip_address(str(value.get("underlay")))
    except ValueError:
        add(f"{path}.underlay", f"underlay must be the machine's IPv4 or IPv6 address, not "
                                f"{value.get('underlay')!r}", _line(value, "underlay"))
        ok = False
    command = value.get("command", DEFAULT_COMMAND)
    if not isinstance(command, str) or not command.strip():
        add(f"{path}.command", "command is how netvirt is started there, e.g. "
                               "'/opt/nv/bin/python -m netvirt'", _line(value, "command"))
        ok = False
    mtu = value.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 576 <= mtu <= 65535):
        add(f"{path}.mtu", f"mtu (the underlay's) must be an integer 576..65535, not {mtu!r}",
            _line(value, "mtu"))
        ok = False
    if not ok:
        return None
    assert isinstance(ssh, str)
    return MachineSpec(name, ssh, underlay, command.strip(), mtu, index, path)


def from_raw(raw: Any, source: str | None, params: Mapping[str, str] | None = None) -> MultiScenario:
    """Validate a raw scenario structure that may hold ``machines:`` / ``machine:``."""
    raw, raw_layout, problems = extract(raw, source)
    lab = raw.get("name") if isinstance(raw, dict) else None
    layout, more = check(raw_layout, lab, source)
    problems += more
    scenario: Scenario | None = None
    try:
        scenario = validate(raw, source)
    except ScenarioError as exc:
        problems += exc.problems
    if scenario is not None:
        for node in layout.assigned:
            if node not in scenario.nodes:  # pragma: no cover - extract only sees real nodes
                problems.append(Problem(f"nodes.{node}.machine", "no such node", None, source))
    if problems or scenario is None:
        raise ScenarioError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    if params:
        scenario = replace(scenario, params=dict(params))
    return MultiScenario(scenario, layout)


def load(path: str | Path, params: Mapping[str, str] | None = None) -> MultiScenario:
    """Load a scenario file (``.yaml``, ``.yml``, ``.py``) that may span machines."""
    path = Path(path)
    source = str(path)
    if path.suffix.lower() == ".py":
        return from_raw(run_python(path, dict(params or {})), source, params)
    if path.suffix.lower() not in (".yaml", ".yml"):
        from netvirt.multi._model import load_plain

        load_plain(path, params)  # raises the ordinary loader's error for this file
    if params:
        raise ScenarioError(Problem("", f"parameters apply to Python scenarios only; {path.name} is "
                                        f"YAML (given: {', '.join(sorted(params))})", None, source))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ScenarioError(Problem("", f"cannot read the scenario: {e}", None, source)) from None
    return from_raw(parse_yaml(text, source), source)


def load_text(text: str, source: str = "<string>") -> MultiScenario:
    return from_raw(parse_yaml(text, source), source)


__all__ = ["DEFAULT_COMMAND", "Layout", "MachineSpec", "MultiScenario", "RawLayout", "check", "extract",
           "from_raw", "lab_name_problem", "load", "load_text"]
