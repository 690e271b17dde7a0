"""Programs that run on a tun, tap or macvtap fd inside netvirt's process.

A scenario attaches one with ``program: {name: NAME, ...params}`` or, for
user code, ``program: {python: "module:callable", ...}``. The built-ins are
listed in one explicit table, :data:`PROGRAMS`, the only registry: validation
calls :func:`parse_program` (pure, no kernel), which resolves the class and runs
its ``check_params`` once, and keeps the result in a typed
:class:`~netvirt.scenario.model.ProgramSpec` (a class may also offer
``parse_params(params, place) -> (config, problems)``: its typed ``config``
then travels in ``ProgramSpec.config``). The builder (``topology/builder.py``)
takes the class by the spec's name (:func:`get_program`, or :class:`UserProgram`
for ``python``) and constructs it with a :class:`ProgramContext` whose ``params``
are the mapping minus ``name``. :func:`program_class` does the same from a raw mapping.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..errors import Problem, ScenarioError
from ..scenario.model import ProgramSpec
from ._program import Program, ProgramContext
from ._tunnel import TunnelProgram
from .ipip_tunnel import IpipTunnel
from .pcap import PcapProgram, PcapWriter
from .responder import Responder
from .sink import Sink
from .udp_tunnel import UdpTunnel
from .user import UserProgram

__all__ = [
    "PROGRAMS",
    "IpipTunnel",
    "PcapProgram",
    "PcapWriter",
    "Program",
    "ProgramContext",
    "Responder",
    "Sink",
    "TunnelProgram",
    "UdpTunnel",
    "UserProgram",
    "check_program",
    "get_program",
    "parse_program",
    "program_class",
    "program_params",
]

#: Built-in programs by scenario name (sorted).
PROGRAMS: dict[str, type[Program]] = {
    "ipip-tunnel": IpipTunnel,
    "pcap": PcapProgram,
    "responder": Responder,
    "sink": Sink,
    "udp-tunnel": UdpTunnel,
}


def _unknown(name: object, place: str) -> Problem:
    known = ", ".join(PROGRAMS)
    close = difflib.get_close_matches(str(name), PROGRAMS, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
    return Problem(f"{place}.name" if place else "name",
                   f"unknown program {shown}{hint} Built-in programs: {known}; "
                   "user code: python: module:callable")


def get_program(name: str, place: str = "") -> type[Program]:
    """The built-in program class called ``name``; ScenarioError if there is none."""
    try:
        return PROGRAMS[name]
    except (KeyError, TypeError):
        raise ScenarioError(_unknown(name, place)) from None


def _resolve(spec: Mapping[str, Any], place: str) -> type[Program] | Problem:
    if not isinstance(spec, Mapping):
        return Problem(place, "a program is a mapping such as {name: sink}")
    if UserProgram.KEY in spec:
        if "name" in spec:
            return Problem(f"{place}.name", "give either name (a built-in program) or python "
                                            "(module:callable), not both")
        return UserProgram
    if "name" not in spec:
        return Problem(f"{place}.name", "a program needs a name (one of "
                                        f"{', '.join(PROGRAMS)}) or python: module:callable")
    name = spec["name"]
    if not isinstance(name, str) or name not in PROGRAMS:
        return _unknown(name, place)
    return PROGRAMS[name]


def program_class(spec: Mapping[str, Any], place: str = "") -> type[Program]:
    """The class a scenario's program mapping names (built-in or user code)."""
    found = _resolve(spec, place)
    if isinstance(found, Problem):
        raise ScenarioError(found)
    return found


def program_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The params a program gets: the mapping minus ``name``."""
    return {key: value for key, value in spec.items() if key != "name"}


def parse_program(spec: Mapping[str, Any], place: str) -> tuple[ProgramSpec | None, list[Problem]]:
    """A scenario's program mapping checked once: its typed spec, or every problem with it."""
    found = _resolve(spec, place)
    if isinstance(found, Problem):
        return None, [found]
    params = program_params(spec)
    config: object = None
    parse = getattr(found, "parse_params", None)
    if parse is not None:
        config, problems = parse(params, place)
    else:
        problems = found.check_params(params, place)
    if problems:
        return None, list(problems)
    name = "python" if found is UserProgram else found.name
    return ProgramSpec(name, params, place, config), []


def check_program(spec: Mapping[str, Any], place: str) -> list[Problem]:
    """Every problem with a scenario's program mapping (pure, never raises)."""
    return parse_program(spec, place)[1]
