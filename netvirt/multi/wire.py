"""The driver <-> agent wire format: JSON lines, and a codec for the model's dataclasses.

Each line is one JSON object. The driver sends requests ``{"id": N, "op": ..., ...}``;
the agent answers each with ``{"id": N, "ok": true, ...}`` or
``{"id": N, "ok": false, "error": TEXT, "exit": CODE, "type": NAME}``.

Scenario objects (Scenario, NodeSpec, StepSpec...) cross the channel through a
generic tagged codec: a dataclass becomes ``{"$": "module:Class", field: value...}``,
a tuple ``{"$t": [...]}``, an IP address or interface ``{"$ip": "..."}`` /
``{"$if": "..."}``. It follows the fields as they are (both ends run the same
netvirt version, which the driver checks), so fields and spec classes added to
netvirt later (a new step's spec, a program's parsed config) cross without
changes here. Only dataclasses of netvirt's own modules are read back.
"""

from __future__ import annotations

import dataclasses
import importlib
import ipaddress
import json
from typing import Any


def _tag(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _class(tag: str) -> type:
    module, _, name = tag.partition(":")
    if module != "netvirt" and not module.startswith("netvirt."):
        raise TypeError(f"refusing to read a {tag!r} from the driver: not one of netvirt's specs")
    found = getattr(importlib.import_module(module), name, None)
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise TypeError(f"cannot read a {tag!r} from the driver (the same netvirt version on both sides?)")
    return found


def encode(obj: Any) -> Any:
    """``obj`` as plain JSON-able data (see the module docstring)."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        cls = type(obj)
        if not cls.__module__.startswith("netvirt."):
            raise TypeError(f"{cls.__name__} cannot cross to a machine: only netvirt's specs do")
        out = {"$": _tag(cls)}
        for f in dataclasses.fields(obj):
            out[f.name] = encode(getattr(obj, f.name))
        return out
    if isinstance(obj, ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return {"$if": str(obj)}
    if isinstance(obj, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return {"$net": str(obj)}
    if isinstance(obj, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return {"$ip": str(obj)}
    if isinstance(obj, tuple):
        return {"$t": [encode(x) for x in obj]}
    if isinstance(obj, list):
        return [encode(x) for x in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: encode(v) for k, v in obj.items()}
        return {"$d": [[encode(k), encode(v)] for k, v in obj.items()]}
    raise TypeError(f"cannot send {type(obj).__name__} to a machine: {obj!r}")


def decode(data: Any) -> Any:
    if isinstance(data, list):
        return [decode(x) for x in data]
    if not isinstance(data, dict):
        return data
    if "$" in data:
        cls = _class(data["$"])
        return cls(**{k: decode(v) for k, v in data.items() if k != "$"})
    if "$t" in data:
        return tuple(decode(x) for x in data["$t"])
    if "$if" in data:
        return ipaddress.ip_interface(data["$if"])
    if "$net" in data:
        return ipaddress.ip_network(data["$net"])
    if "$ip" in data:
        return ipaddress.ip_address(data["$ip"])
    if "$d" in data:
        return {decode(k): decode(v) for k, v in data["$d"]}
    return {k: decode(v) for k, v in data.items()}


def dumps(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()


def loads(line: bytes) -> dict[str, Any]:
    msg = json.loads(line)
    if not isinstance(msg, dict):
        raise ValueError("a message is a JSON object")
    return msg


__all__ = ["decode", "dumps", "encode", "loads"]
