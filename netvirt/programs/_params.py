"""Parsing and checking of program params (pure: no I/O, errors as values)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import Problem

__all__ = ["IPAddress", "check_keys", "parse_endpoint", "parse_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def check_keys(params: Mapping[str, Any], allowed: Iterable[str], required: Iterable[str],
               place: str, *, what: str = "program") -> list[Problem]:
    """Unknown and missing keys of ``params`` (``name`` is always allowed)."""
    problems: list[Problem] = []
    allowed_set = set(allowed) | {"name"}
    known = ", ".join(sorted(set(allowed))) or "none"
    for key in params:
        if key not in allowed_set:
            problems.append(Problem(_join(place, str(key)),
                                    f"unknown key for {what} (allowed: {known})"))
    for key in sorted(required):
        if key not in params:
            problems.append(Problem(_join(place, key), f"{what} needs {key!r}"))
    return problems


def parse_ip(value: object) -> IPAddress:
    """An IP address from text (``"10.0.0.2"`` or ``"10.0.0.2/24"``); ValueError if bad."""
    if not isinstance(value, str):
        raise ValueError(f"expected an IP address as text, got {type(value).__name__}")
    text = value.strip()
    if "/" in text:
        return ipaddress.ip_interface(text).ip
    return ipaddress.ip_address(text)


def parse_endpoint(value: object) -> tuple[IPAddress, int]:
    """``"IP:PORT"`` or ``"[IPv6]:PORT"`` -> (address, port); ValueError if bad."""
    if not isinstance(value, str):
        raise ValueError(f"expected IP:PORT as text, got {type(value).__name__}")
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"expected IP:PORT (e.g. 172.16.1.11:6000), got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 endpoint as [ADDRESS]:PORT, got {value!r}")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"port must be a number, got {port_text!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return ipaddress.ip_address(host), port


def _join(place: str, key: str) -> str:
    return f"{place}.{key}" if place else key
