"""What each built-in program accepts, checked without the program itself (pure, light).

A :class:`Schema` is a program's keys, the device framings it serves and the
checks of its values. :data:`SCHEMAS` (plus :data:`USER` for ``python:``
user code) is what validation consults: it imports this module and
``_params`` only, never the programs' engines (asyncio, the packet and
segmentation code), so ``netvirt validate`` of a scenario with a tunnel
stays a start-up's worth of time. Each built-in program class takes its
schema (``schema = SCHEMAS[...]``) and checks its params with it again at
construction, so the two cannot disagree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import Problem
from ._params import IPAddress, check_keys, parse_endpoint, parse_ip

__all__ = ["OFFLOAD_VALUES", "SCHEMAS", "USER", "Schema", "ip_list", "split_target"]

Values = Callable[[Mapping[str, Any], str], list[Problem]]


@dataclass(frozen=True)
class Schema:
    """A program's accepted params and device framings (``"ip"``: a tun, ``"ether"``:
    a tap or macvtap); ``values`` checks the values beyond the keys."""

    name: str
    allowed: frozenset[str] = frozenset()
    required: frozenset[str] = frozenset()
    framings: tuple[str, ...] = ("ip", "ether")
    values: Values | None = None
    #: Any key goes (user code reads its own params); ``values`` checks the rest.
    any_keys: bool = False

    def check(self, params: Mapping[str, Any], place: str) -> list[Problem]:
        """Every problem with ``params`` (pure, never raises)."""
        problems = [] if self.any_keys else check_keys(
            params, self.allowed, self.required, place, what=f"program {self.name!r}")
        if self.values is not None:
            problems += self.values(params, place)
        return problems


# -- the value checks ------------------------------------------------------------------
OFFLOAD_VALUES = ("auto", False)


def _udp_tunnel(params: Mapping[str, Any], place: str) -> list[Problem]:
    problems: list[Problem] = []
    parsed: dict[str, IPAddress] = {}
    for key in ("local", "remote"):
        if key not in params:
            continue
        try:
            parsed[key] = parse_endpoint(params[key])[0]
        except ValueError as exc:
            problems.append(Problem(f"{place}.{key}", str(exc)))
            continue
        if parsed[key].is_multicast or key == "remote" and parsed[key].is_unspecified:
            problems.append(Problem(f"{place}.{key}", f"{parsed[key]} is not a host address"))
    if len(parsed) == 2 and parsed["local"].version != parsed["remote"].version:
        problems.append(Problem(f"{place}.remote",
                                "local and remote must both be IPv4 or both IPv6"))
    if "offload" in params and params["offload"] not in OFFLOAD_VALUES:
        problems.append(Problem(f"{place}.offload", "expected auto (the default: the tunnel "
                                f"switches on its tun's offload) or false, not "
                                f"{params['offload']!r}"))
    return problems


def _ipip_tunnel(params: Mapping[str, Any], place: str) -> list[Problem]:
    problems: list[Problem] = []
    for key in ("local", "remote"):
        if key not in params:
            continue
        try:
            addr = parse_ip(params[key])
        except ValueError as exc:
            problems.append(Problem(f"{place}.{key}", f"not an IPv4 address: {exc}"))
            continue
        if addr.version != 4:
            problems.append(Problem(f"{place}.{key}",
                                    "IP-in-IP (protocol 4) runs over IPv4: "
                                    "give an IPv4 address"))
        elif addr.is_multicast or addr.is_unspecified and key == "remote":
            problems.append(Problem(f"{place}.{key}", f"{addr} is not a host address"))
    return problems


def _pcap(params: Mapping[str, Any], place: str) -> list[Problem]:
    path = params.get("path", "x")
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        return [Problem(f"{place}.path", "expected a file path such as lab.pcap")]
    return []


def ip_list(value: object) -> list[object]:
    """The responder's ``ip``: one address or a list of them."""
    return list(value) if isinstance(value, list | tuple) else [value]


def _responder(params: Mapping[str, Any], place: str) -> list[Problem]:
    problems: list[Problem] = []
    if "ip" in params:
        values = ip_list(params["ip"])
        if not values:
            problems.append(Problem(f"{place}.ip", "give at least one address"))
        for i, value in enumerate(values):
            where = f"{place}.ip" if not isinstance(params["ip"], list) else f"{place}.ip[{i}]"
            try:
                addr = parse_ip(value)
            except ValueError as exc:
                problems.append(Problem(where, f"not an IP address: {exc}"))
                continue
            if addr.is_multicast or addr.is_unspecified:
                problems.append(Problem(where, f"{addr} cannot be a host address"))
    if "probe" in params:
        try:
            if parse_ip(params["probe"]).version != 4:
                raise ValueError("IPv4 only")
        except ValueError as exc:
            problems.append(Problem(f"{place}.probe", f"expected an IPv4 address: {exc}"))
    if "mac" in params:
        mac = params["mac"]
        try:
            raw = bytes.fromhex(mac.replace(":", "").replace("-", "")) if isinstance(mac, str) \
                else b""
        except ValueError:
            raw = b""
        if len(raw) != 6 or raw[0] & 1 or raw == bytes(6):
            problems.append(Problem(f"{place}.mac", "expected a unicast MAC such as "
                                    f"02:00:00:00:00:01, got {mac!r}"))
    return problems


_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def split_target(target: str) -> tuple[str, str]:
    """``module:callable`` (or ``file.py:callable``) as (module, callable)."""
    module, sep, attr = target.rpartition(":")
    return (module, attr) if sep else ("", target)


def _user(params: Mapping[str, Any], place: str) -> list[Problem]:
    where = f"{place}.python" if place else "python"
    target = params.get("python")
    if not isinstance(target, str):
        return [Problem(where, "expected 'module:callable' (or 'file.py:callable')")]
    module, attr = split_target(target)
    problems = []
    if not module or not (module.endswith(".py") or _DOTTED.match(module)):
        problems.append(Problem(where, f"expected 'module:callable', got {target!r}: "
                                       "the module is a dotted name or a .py file"))
    if not _DOTTED.match(attr):
        problems.append(Problem(where, f"expected 'module:callable', got {target!r}: "
                                       f"{attr!r} is not a (dotted) Python name"))
    return problems


_PAIR = frozenset({"local", "remote"})
#: The built-in programs' schemas by scenario name (sorted).
SCHEMAS: dict[str, Schema] = {
    "ipip-tunnel": Schema("ipip-tunnel", _PAIR, _PAIR, ("ip",), _ipip_tunnel),
    "pcap": Schema("pcap", frozenset({"path"}), frozenset({"path"}), values=_pcap),
    "responder": Schema("responder", frozenset({"ip", "mac", "probe"}), values=_responder),
    "sink": Schema("sink"),
    "udp-tunnel": Schema("udp-tunnel", _PAIR | {"offload"}, _PAIR, values=_udp_tunnel),
}
#: ``program: {python: module:callable, ...}``: a user's handler.
USER = Schema("python", values=_user, any_keys=True)
