"""Validation of ``steps:``, producing :class:`StepSpec` with typed params.

Each step is a one-key mapping ``KIND: {params}``. Each ``_KIND`` method below
collects the values (defaults filled in; addresses as strings, endpoints as
:class:`Endpoint`), and :func:`_typed` turns them into the kind's dataclass
of ``model.py`` (``from`` becomes ``src``, ``expect`` of exec becomes ``exit``
and ``stdout``). As written in a scenario:

``ping``
    ``from`` NODE, ``to`` ADDRESS (str), ``count`` int (3), ``expect``
    ``"success"`` | ``"failure"`` ("success": every echo answered; "failure":
    none), ``timeout`` float seconds to wait for each reply (1.0).
``connect``
    ``from`` NODE, ``to`` ``ADDR:PORT`` (``[v6]:PORT`` for IPv6), ``proto``
    ``"tcp"`` | ``"udp"`` (tcp), ``bytes`` int (1000), ``expect`` (success),
    ``timeout`` float seconds (5.0); added: ``address`` str, ``port`` int and
    ``server``, the node that owns ADDR (netvirt listens there).
``exec``
    ``node`` NODE, ``cmd`` str, ``expect`` ``{"exit": int (0), "stdout": REGEX | None}``,
    ``timeout`` float seconds (30.0).
``counters``
    ``device`` Endpoint (its interface must have a ``program``), ``equals``
    ``{counter: N}`` (exact values), ``at_least`` ``{counter: N}`` (minimums);
    at least one of the two, each defaulting to ``{}``; ``timeout`` float
    seconds the values may take to be reached (2.0).
``fdb``
    ``bridge`` Endpoint (a bridge), ``mac`` lowercase str, ``port`` str (an
    interface of the same node whose master is that bridge).
``wait``
    ``seconds`` float; written ``wait: 2`` or ``wait: {seconds: 2}``.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from netvirt.scenario.checker import At, Checker, describe, suggest
from netvirt.scenario.link_steps import LINK_STEP_KEYS, LINK_STEP_REQUIRED, LinkStepChecks
from netvirt.scenario.model import (
    STEP_TYPES,
    Endpoint,
    InterfaceSpec,
    LinkSpec,
    Retry,
    StepParams,
    StepSpec,
)

STEP_KEYS: dict[str, tuple[str, ...]] = {
    "ping": ("from", "to", "count", "expect", "timeout", "interval", "loss", "rtt"),
    "connect": ("from", "to", "proto", "bytes", "expect", "timeout"),
    "exec": ("node", "cmd", "expect", "timeout"),
    "counters": ("device", "equals", "at_least", "timeout"),
    "fdb": ("bridge", "mac", "port"),
    "wait": ("seconds",),
    **LINK_STEP_KEYS,
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "ping": ("from", "to"),
    "connect": ("from", "to"),
    "exec": ("node", "cmd"),
    "counters": ("device",),
    "fdb": ("bridge", "mac", "port"),
    "wait": ("seconds",),
    **LINK_STEP_REQUIRED,
}
EXPECT = ("success", "failure")

Interfaces = Mapping[str, Mapping[str, InterfaceSpec]]


class StepChecker(LinkStepChecks):
    def __init__(self, ck: Checker, interfaces: Interfaces, owners: Mapping[Any, str],
                 links: Sequence[LinkSpec] = (), base_dir: Path | None = None) -> None:
        self.ck = ck
        self.interfaces = interfaces
        self.owners = owners  # ip address -> node holding it
        self.links = links
        self.base_dir = base_dir

    def check(self, at: At) -> tuple[StepSpec, ...]:
        if at.value is None:
            return ()
        if not isinstance(at.value, list):
            self.ck.add(at, f"steps must be a list, not {describe(at.value)}")
            return ()
        steps = [self._step(item) for item in at.elements()]
        return tuple(s for s in steps if s is not None)

    def _step(self, at: At) -> StepSpec | None:
        v = at.value
        retry = None
        for key, line in getattr(v, "duplicates", []):
            self.ck.add(At(None, f"{at.path}.{key}", line), f"duplicate key {key!r}: it appears more "
                                                            "than once in the step")
        if isinstance(v, dict) and "retry" in v and len(v) == 2:
            retry = self._retry(at.key("retry"))
            v = copy.copy(v)  # keeps the file lines of its keys
            del v["retry"]
            at = At(v, at.path, at.line)
        if not isinstance(v, dict) or len(v) != 1:
            self.ck.add(at, "a step is a mapping with one key, its kind, e.g. "
                            "ping: {from: left, to: 10.0.0.2} (and optionally retry: {for: 30s})")
            return None
        kind, params = next(at.items())
        if kind not in STEP_KEYS:
            self.ck.add(params, f"unknown step {describe(kind)}{suggest(str(kind), STEP_KEYS)}")
            return None
        if kind == "wait" and not isinstance(params.value, dict):
            params = At({"seconds": params.value}, params.path, params.line)
        n = len(self.ck.problems)
        if not self.ck.mapping(params, (*STEP_KEYS[kind], "retry"), f"a {kind} step",
                               required=REQUIRED[kind]):
            return None
        retry = self._retry(params.key("retry")) or retry
        out: dict[str, Any] = getattr(self, f"_{kind}")(params)
        if len(self.ck.problems) > n:
            return None
        return StepSpec(kind, _typed(kind, out), at.path, at.line, retry)

    def _retry(self, at: At) -> Retry | None:
        """``retry: {for: 30s, every: 0.5s}`` (SPEC.md section 8); None when absent."""
        if at.value is None:
            return None
        if not self.ck.mapping(at, ("for", "every"), "retry", required=("for",)) or "for" not in at.value:
            return None
        from netvirt.procs.spec import SpecError, duration

        try:
            seconds = duration(at.value["for"], "for")
            every = duration(at.value.get("every", 0.5), "every", maximum=60.0)
        except SpecError as exc:
            self.ck.add(at.key(exc.key), f"retry {exc}")
            return None
        return Retry(seconds, every)

    # -- shared pieces -----------------------------------------------------------------

    def _node(self, at: At) -> str | None:
        if at.value is None:
            return None
        if isinstance(at.value, str) and at.value in self.interfaces:
            return at.value
        self.ck.add(at, f"node {describe(at.value)} is not defined under nodes"
                        f"{suggest(str(at.value), self.interfaces)}")
        return None

    def _parse_endpoint(self, at: At, what: str) -> Endpoint | None:
        """``at`` as NODE:IFNAME (None: absent, or a problem added)."""
        if at.value is None:
            return None
        try:
            ep = Endpoint.parse(at.value) if isinstance(at.value, str) else None
        except ValueError:
            ep = None
        if ep is None:
            self.ck.add(at, f"{what} must be NODE:IFNAME, not {describe(at.value)}")
        return ep

    def _endpoint(self, at: At, what: str) -> InterfaceSpec | None:
        ep = self._parse_endpoint(at, what)
        if ep is None:
            return None
        if ep.node not in self.interfaces:
            self.ck.add(at, f"node {describe(ep.node)} of {describe(str(ep))} is not defined under nodes")
            return None
        spec = self.interfaces[ep.node].get(ep.ifname)
        if spec is None:
            self.ck.add(at, f"node {ep.node!r} has no interface {describe(ep.ifname)}")
        elif spec.kind == "":
            return None  # a broken declaration, reported already
        return spec

    def _opt(self, at: At, key: str, default: Any, check: Any) -> Any:
        if not at.has(key) or at.value[key] is None:
            return default
        value = check(at.key(key))
        return default if value is None else value

    def _timeout(self, at: At, default: float) -> float:
        return float(self._opt(at, "timeout", default,
                               lambda a: self.ck.number(a, "timeout", 0.001)))

    def _expect(self, at: At) -> str:
        return str(self._opt(at, "expect", "success",
                             lambda a: self.ck.choice(a, "expect", EXPECT)))

    # -- one method per kind -------------------------------------------------------------

    def _ping(self, at: At) -> dict[str, Any]:
        to = at.key("to")
        addr = self.ck.address(to, "to") if to.value is not None else None
        return {
            "from": self._node(at.key("from")),
            "to": str(addr) if addr else None,
            "count": self._opt(at, "count", 3, lambda a: self.ck.integer(a, "count", 1, 10000)),
            "expect": self._expect(at),
            "timeout": self._timeout(at, 1.0),
            **self._ping_extras(at),
        }

    def _connect(self, at: At) -> dict[str, Any]:
        out: dict[str, Any] = {
            "from": self._node(at.key("from")),
            "proto": self._opt(at, "proto", "tcp",
                               lambda a: self.ck.choice(a, "proto", ("tcp", "udp"))),
            "bytes": self._opt(at, "bytes", 1000,
                               lambda a: self.ck.integer(a, "bytes", 1, 1 << 30)),
            "expect": self._expect(at),
            "timeout": self._timeout(at, 5.0),
        }
        self._server(at.key("to"), out)
        return out

    def _server(self, to: At, out: dict[str, Any]) -> None:
        """``to: ADDR:PORT`` and the node that owns ADDR (where netvirt listens)."""
        if to.value is None:
            return
        parsed = _host_port(to.value)
        if parsed is None:
            self.ck.add(to, f"to must be ADDR:PORT (e.g. 10.0.0.2:5000 or [fd00::2]:5000) "
                            f"with a port from 1 to 65535, not {describe(to.value)}")
            return
        addr, port = parsed
        server = self.owners.get(addr)
        if server is None:
            self.ck.add(to, f"no interface of this lab has address {addr}: netvirt listens "
                            "on the node that owns it, so add it to an interface's addresses")
        host = f"[{addr}]" if addr.version == 6 else str(addr)
        out.update(to=f"{host}:{port}", address=str(addr), port=port, server=server)

    def _exec(self, at: At) -> dict[str, Any]:
        cmd = self.ck.string(at.key("cmd"), "cmd (a shell command line)") \
            if at.value.get("cmd") is not None else None
        expect: dict[str, Any] = {"exit": 0, "stdout": None}
        e = at.key("expect")
        if e.value is not None and self.ck.mapping(e, ("exit", "stdout"), "expect"):
            expect["exit"] = self._opt(e, "exit", 0,
                                       lambda a: self.ck.integer(a, "exit", 0, 255))
            expect["stdout"] = self._opt(e, "stdout", None, self._regex)
        return {"node": self._node(at.key("node")), "cmd": cmd, "expect": expect,
                "timeout": self._timeout(at, 30.0)}

    def _regex(self, at: At) -> str | None:
        if not isinstance(at.value, str):
            self.ck.add(at, f"stdout must be a regular expression string, not "
                            f"{describe(at.value)}")
            return None
        try:
            re.compile(at.value)
        except re.error as e:
            self.ck.add(at, f"stdout is not a valid regular expression: {e}")
            return None
        return at.value

    def _counters(self, at: At) -> dict[str, Any]:
        spec = self._endpoint(at.key("device"), "device")
        if spec is not None and spec.program is None:
            self.ck.add(at.key("device"), f"{spec.endpoint} runs no program, so it has no "
                                          "counters: give it a program (tun, tap, macvtap)")
        out = {"device": spec.endpoint if spec else None,
               "equals": self._values(at, "equals"), "at_least": self._values(at, "at_least"),
               "timeout": self._timeout(at, 2.0)}
        if not at.value.get("equals") and not at.value.get("at_least"):
            self.ck.add(at, "a counters step needs equals: {COUNTER: N} (exact values) "
                            "and/or at_least: {COUNTER: N} (minimums)")
        return out

    def _values(self, at: At, key: str) -> dict[str, int]:
        v = at.key(key)
        if v.value is None or not self.ck.mapping(v, _str_keys(v.value), key):
            return {}
        out: dict[str, int] = {}
        for name, item in v.items():
            n = self.ck.integer(item, f"counter {describe(name)}", 0)
            if isinstance(name, str) and n is not None:
                out[name] = n
        return out

    def _fdb(self, at: At) -> dict[str, Any]:
        bridge = self._endpoint(at.key("bridge"), "bridge")
        if bridge is not None and bridge.kind != "bridge":
            self.ck.add(at.key("bridge"), f"{bridge.endpoint} is a {bridge.kind}, not a bridge")
            bridge = None
        mac = self.ck.mac(at.key("mac")) if at.value.get("mac") is not None else None
        port = at.key("port")
        name = self.ck.string(port, "port") if port.value is not None else None
        if bridge is not None and name is not None:
            spec = self.interfaces[bridge.node].get(name)
            if spec is None:
                self.ck.add(port, f"node {bridge.node!r} has no interface {describe(name)}")
            elif spec.master != bridge.name:
                self.ck.add(port, f"{spec.endpoint} is not a port of bridge {bridge.name!r}: "
                                  f"set master: {bridge.name} on it")
        return {"bridge": bridge.endpoint if bridge else None, "mac": mac, "port": name}

    def _wait(self, at: At) -> dict[str, Any]:
        return {"seconds": self.ck.number(at.key("seconds"), "seconds")}


def _typed(kind: str, values: dict[str, Any]) -> StepParams:
    """The checked values of one step as its typed parameters."""
    v = dict(values)
    if "from" in v:
        v["src"] = v.pop("from")
    if kind == "exec":
        expect = v.pop("expect")
        v["exit"], v["stdout"] = expect["exit"], expect["stdout"]
    return STEP_TYPES[kind](**v)


def _str_keys(value: Any) -> list[str]:
    return [k for k in value if isinstance(k, str)] if isinstance(value, dict) else []


def _host_port(text: object) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int] | None:
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([0-9.]+):(\d+)", text.strip())
    if not m:
        return None
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    if (addr.version == 6) != bool(m.group(1)) or not 1 <= int(port) <= 65535:
        return None
    return addr, int(port)
