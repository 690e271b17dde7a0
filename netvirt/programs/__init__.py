"""Programs that run on a tun, tap or macvtap fd inside netvirt's process.

A scenario attaches one with ``program: {name: NAME, ...params}`` or, for
user code, ``program: {python: "module:callable", ...}``. The built-ins are
listed in one explicit table, :data:`PROGRAMS`, the only registry; what each
accepts is its schema (``_checks.SCHEMAS``, and ``USER`` for ``python``).
Validation calls :func:`parse_program` (pure, no kernel), which checks a
program mapping against its schema once and keeps the result in a typed
:class:`~netvirt.scenario.model.ProgramSpec`; it imports no program class, so
validating a scenario never loads asyncio or the packet code. The builder
(``topology/builder.py``) takes the class by the spec's name
(:func:`get_program`, or :class:`UserProgram` for ``python``) and constructs
it with a :class:`ProgramContext` whose ``params`` are the mapping minus
``name``; the class checks them again with the same schema.
:func:`program_class` does the same from a raw mapping. The classes (and
:data:`PROGRAMS`) are imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import Problem, ScenarioError
from ..scenario.model import ProgramSpec
from ._checks import SCHEMAS, USER, Schema

if TYPE_CHECKING:
    from ._program import Program, ProgramContext
    from ._tunnel import TunnelProgram
    from .ipip_tunnel import IpipTunnel
    from .pcap import PcapProgram, PcapWriter
    from .responder import Responder
    from .sink import Sink
    from .udp_tunnel import UdpTunnel
    from .user import UserProgram

    PROGRAMS: dict[str, type[Program]]

__all__ = [
    "PROGRAMS",
    "SCHEMAS",
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

#: Where each class lives (imported on first use: the engines import asyncio).
_LAZY = {
    "IpipTunnel": ".ipip_tunnel", "PcapProgram": ".pcap", "PcapWriter": ".pcap",
    "Program": "._program", "ProgramContext": "._program", "Responder": ".responder",
    "Sink": ".sink", "TunnelProgram": "._tunnel", "UdpTunnel": ".udp_tunnel",
    "UserProgram": ".user",
}
#: The class of each built-in program's scenario name (sorted, as SCHEMAS).
_CLASSES = {"ipip-tunnel": "IpipTunnel", "pcap": "PcapProgram", "responder": "Responder",
            "sink": "Sink", "udp-tunnel": "UdpTunnel"}


def __getattr__(name: str) -> Any:
    if name == "PROGRAMS":
        programs = {key: __getattr__(cls) for key, cls in _CLASSES.items()}
        globals()["PROGRAMS"] = programs
        return programs
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def _unknown(name: object, place: str) -> Problem:
    known = ", ".join(SCHEMAS)
    close = _close_name(str(name))
    hint = f"; did you mean {close!r}?" if close else ""
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:37] + "..."
    return Problem(f"{place}.name" if place else "name",
                   f"unknown program {shown}{hint} Built-in programs: {known}; "
                   "user code: python: module:callable")


def _close_name(name: str) -> str | None:
    """The built-in program name closest to ``name``, if one is close."""
    import difflib

    close = difflib.get_close_matches(name, SCHEMAS, n=1)
    return close[0] if close else None


def get_program(name: str, place: str = "") -> type[Program]:
    """The built-in program class called ``name``; ScenarioError if there is none."""
    if not isinstance(name, str) or name not in _CLASSES:
        raise ScenarioError(_unknown(name, place))
    cls: type[Program] = __getattr__(_CLASSES[name])
    return cls


def _resolve(spec: Mapping[str, Any], place: str) -> Schema | Problem:
    if not isinstance(spec, Mapping):
        return Problem(place, "a program is a mapping such as {name: sink}")
    if USER.name in spec:
        if "name" in spec:
            return Problem(f"{place}.name", "give either name (a built-in program) or python "
                                            "(module:callable), not both")
        return USER
    if "name" not in spec:
        return Problem(f"{place}.name", "a program needs a name (one of "
                                        f"{', '.join(SCHEMAS)}) or python: module:callable")
    name = spec["name"]
    if not isinstance(name, str) or name not in SCHEMAS:
        return _unknown(name, place)
    return SCHEMAS[name]


def program_class(spec: Mapping[str, Any], place: str = "") -> type[Program]:
    """The class a scenario's program mapping names (built-in or user code)."""
    found = _resolve(spec, place)
    if isinstance(found, Problem):
        raise ScenarioError(found)
    if found is USER:
        cls: type[Program] = __getattr__("UserProgram")
        return cls
    return get_program(found.name, place)


def program_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The params a program gets: the mapping minus ``name``."""
    return {key: value for key, value in spec.items() if key != "name"}


def parse_program(spec: Mapping[str, Any], place: str) -> tuple[ProgramSpec | None, list[Problem]]:
    """A scenario's program mapping checked once: its typed spec, or every problem with it."""
    found = _resolve(spec, place)
    if isinstance(found, Problem):
        return None, [found]
    params = program_params(spec)
    problems = found.check(params, place)
    if problems:
        return None, list(problems)
    return ProgramSpec(found.name, params, place), []


def check_program(spec: Mapping[str, Any], place: str) -> list[Problem]:
    """Every problem with a scenario's program mapping (pure, never raises)."""
    return parse_program(spec, place)[1]
