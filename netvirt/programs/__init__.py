"""Programs that run on a tun, tap or macvtap fd inside netvirt's process.

A scenario attaches one with ``program: {name: NAME, ...params}`` or, for
user code, ``program: {python: "module:callable", ...}``. The built-ins are
listed in one explicit table, :data:`PROGRAMS`. The validator calls
:func:`check_program` (pure); the builder calls :func:`program_class` and
constructs the class with a :class:`ProgramContext` whose ``params`` are the
mapping minus ``name``.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from ..errors import Problem, ScenarioError
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
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return Problem(f"{place}.name" if place else "name",
                   f"unknown program {name!r}{hint}; built-in programs: {known}, "
                   "or user code with python: 'module:callable'")


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
            return Problem(place, "give either name (a built-in program) or python "
                                  "(user code), not both")
        return UserProgram
    if "name" not in spec:
        return Problem(place, "a program needs name (one of "
                              f"{', '.join(PROGRAMS)}) or python: 'module:callable'")
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


def check_program(spec: Mapping[str, Any], place: str) -> list[Problem]:
    """Every problem with a scenario's program mapping (pure, never raises)."""
    found = _resolve(spec, place)
    if isinstance(found, Problem):
        return [found]
    return found.check_params(program_params(spec), place)
