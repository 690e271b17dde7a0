"""Assertions of the measuring steps (SPEC.md section 8), parsed into checkable bounds (pure).

``"40ms..44ms"`` is a closed range, ``"<= 15%"`` / ``"< 60ms"`` / ``">= 9mbit"``
one bound, a bare value (``"60ms"``) the natural bound of the quantity: at
most for a time or a loss, at least for a rate. ``retry: {for: 30s, every:
0.5s}`` is parsed here too. Values are in the engine's units: ns for times,
a fraction for percentages, bit/s for rates.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from .units import parse_percent, parse_rate, parse_time

__all__ = ["Bound", "parse_bound"]

_OPS = ("<=", ">=", "<", ">", "==")


@dataclass(frozen=True)
class Bound:
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    text: str = ""

    def holds(self, value: float) -> bool:
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        return not (self.hi is not None and (value >= self.hi if self.hi_open else value > self.hi))


def _parser(kind: str) -> Callable[[object], float]:
    if kind == "time":
        return parse_time
    if kind == "percent":
        return parse_percent
    if kind == "rate":
        return parse_rate
    raise ValueError(kind)


def parse_bound(value: object, kind: str) -> Bound:
    """A bound on a ``time``, ``percent`` or ``rate``; ValueError says what is expected."""
    parse = _parser(kind)
    text = str(value).strip()
    if ".." in text:
        lo, _, hi = text.partition("..")
        a, b = parse(lo.strip()), parse(hi.strip())
        if a > b:
            raise ValueError(f"{text!r}: the range goes from low to high")
        return Bound(a, b, text=text)
    m = re.match(r"^(<=|>=|<|>|==)\s*(.+)$", text)
    if m:
        op, num = m.group(1), parse(m.group(2))
        if op == "==":
            return Bound(num, num, text=text)
        if op.startswith("<"):
            return Bound(hi=num, hi_open=op == "<", text=text)
        return Bound(lo=num, lo_open=op == ">", text=text)
    num = parse(value)
    return Bound(lo=num, text=text) if kind == "rate" else Bound(hi=num, text=text)
