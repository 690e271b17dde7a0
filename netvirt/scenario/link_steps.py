"""Validation of the steps that act on links and measure them (SPEC.md sections 7 and 8).

A mixin of :class:`netvirt.scenario.steps.StepChecker`, kept apart so that
module stays small. As written in a scenario:

``link``
    ``endpoint`` NODE:IFNAME (an end of a link), ``state`` ``down`` | ``up``.
``impair``
    ``endpoint`` NODE:IFNAME, netem's keys (``delay``, ``loss``, ...: what
    leaves that end), ``both`` (both directions), or ``reset: true``.
``throughput``
    ``from`` NODE, ``to`` ADDR:PORT, ``proto`` tcp | udp, ``seconds`` (3),
    ``rate`` (UDP: the offered rate, e.g. 20mbit), ``expect`` a rate bound
    (``9mbit..11mbit``, ``>= 5mbit``), ``loss`` (UDP) a percentage bound.
``ping`` extras
    ``interval`` (seconds, or a time such as 200ms), ``loss`` (``<= 15%``),
    ``rtt`` ``{min|avg|p50|p99|max: BOUND}`` (``40ms..44ms``, ``60ms`` = at most).
``retry`` on any step: ``{for: 30s, every: 0.5s}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netvirt.impair.conditions import KEYS, parse_conditions
from netvirt.impair.expect import Bound, parse_bound
from netvirt.impair.units import parse_rate, parse_time
from netvirt.scenario.checker import At, Checker
from netvirt.scenario.model import Endpoint, LinkSpec

__all__ = ["LINK_STEP_KEYS", "RTT_KEYS", "LinkStepChecks"]

LINK_STEP_KEYS: dict[str, tuple[str, ...]] = {
    "link": ("endpoint", "state"),
    "impair": ("endpoint", "reset", "both", *KEYS),
    "throughput": ("from", "to", "proto", "seconds", "rate", "expect", "loss"),
}
LINK_STEP_REQUIRED: dict[str, tuple[str, ...]] = {
    "link": ("endpoint", "state"), "impair": ("endpoint",), "throughput": ("from", "to"),
}
RTT_KEYS = ("min", "avg", "p50", "p99", "max")


class LinkStepChecks:
    ck: Checker
    links: Sequence[LinkSpec]
    base_dir: Path | None

    def _opt(self, at: At, key: str, default: Any, check: Any) -> Any: ...  # from StepChecker
    def _node(self, at: At) -> str | None: ...
    def _server(self, to: At, out: dict[str, Any]) -> None: ...
    def _parse_endpoint(self, at: At, what: str) -> Endpoint | None: ...

    def _link_end(self, at: At) -> Endpoint | None:
        ep = self._parse_endpoint(at, "endpoint")
        if ep is None:
            return None
        if not any(link.has(ep) for link in self.links):
            self.ck.add(at, f"{ep} is not an end of any link under links")
            return None
        return ep

    def _bound(self, at: At, kind: str) -> Bound | None:
        if at.value is None:
            return None
        try:
            return parse_bound(at.value, kind)
        except ValueError as exc:
            self.ck.add(at, str(exc))
            return None

    def _link(self, at: At) -> dict[str, Any]:
        return {"endpoint": self._link_end(at.key("endpoint")),
                "state": self.ck.choice(at.key("state"), "state", ("down", "up"))}

    def _impair(self, at: At) -> dict[str, Any]:
        keys = {k: v for k, v in at.value.items() if k in KEYS}
        reset = self._opt(at, "reset", False, lambda a: self.ck.boolean(a, "reset"))
        both = self._opt(at, "both", False, lambda a: self.ck.boolean(a, "both"))
        cond = None
        if reset and keys:
            self.ck.add(at, "an impair step either resets (reset: true) or sets conditions, not both")
        elif not reset:
            if not keys:
                self.ck.add(at, "an impair step needs netem keys (e.g. delay: 20ms) or reset: true")
            else:
                cond, problems = parse_conditions(keys, at.path, base_dir=self.base_dir)
                for p in problems:
                    key = p.path[len(at.path) + 1:].split(".")[0]
                    self.ck.add(At(None, p.path, at.key(key).line), p.message)
        return {"endpoint": self._link_end(at.key("endpoint")), "conditions": cond,
                "reset": bool(reset), "both": bool(both)}

    def _throughput(self, at: At) -> dict[str, Any]:
        proto = self._opt(at, "proto", "tcp", lambda a: self.ck.choice(a, "proto", ("tcp", "udp")))
        out: dict[str, Any] = {
            "from": self._node(at.key("from")), "proto": proto,
            "seconds": float(self._opt(at, "seconds", 3.0,
                                       lambda a: self.ck.number(a, "seconds", 0.1))),
            "expect": self._bound(at.key("expect"), "rate"),
            "loss": self._bound(at.key("loss"), "percent"),
            "rate": None,
        }
        if at.has("rate"):
            try:
                out["rate"] = parse_rate(at.value["rate"])
            except ValueError as exc:
                self.ck.add(at.key("rate"), str(exc))
        if proto == "tcp" and (at.has("loss") or at.has("rate")):
            self.ck.add(at, "rate and loss apply to proto: udp only (TCP neither loses nor is paced)")
        self._server(at.key("to"), out)
        return out

    def _ping_extras(self, at: At) -> dict[str, Any]:
        out: dict[str, Any] = {"interval": None, "loss": self._bound(at.key("loss"), "percent"),
                               "rtt": {}}
        if at.has("interval"):
            v = at.value["interval"]
            try:
                out["interval"] = float(v) if isinstance(v, int | float) and not isinstance(v, bool) \
                    else parse_time(v) / 1e9
            except ValueError as exc:
                self.ck.add(at.key("interval"), str(exc))
        rtt = at.key("rtt")
        if rtt.value is not None and self.ck.mapping(rtt, RTT_KEYS, "rtt"):
            for key, item in rtt.items():
                bound = self._bound(item, "time")
                if bound is not None:
                    out["rtt"][key] = bound
        return out
