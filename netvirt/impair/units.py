"""Units of netem's keys (tc(8) and tc-netem(8)): times, percentages, rates.

Pure parsing: each function returns the value in the engine's unit
(nanoseconds, a probability in [0, 1], bits per second) or raises
``ValueError`` with a message that says what was expected; the conditions
parser turns it into a located :class:`netvirt.errors.Problem`.
"""

from __future__ import annotations

import re

__all__ = ["format_rate", "format_time", "parse_percent", "parse_rate", "parse_time"]

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_TIME = re.compile(rf"^{_NUM}\s*(ns|us|usec|ms|msec|s|sec|secs)?$")
_TIME_NS = {"ns": 1, "us": 1_000, "usec": 1_000, "ms": 1_000_000, "msec": 1_000_000,
            "s": 1_000_000_000, "sec": 1_000_000_000, "secs": 1_000_000_000, None: 1_000_000}
_RATE = re.compile(rf"^{_NUM}\s*([kmgt]?)(bit|bps|ibit|ibps)?$", re.IGNORECASE)
_SI = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12}
_IEC = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_time(value: object) -> int:
    """``20ms``, ``0.5ms``, ``1s``, ``250us``; a bare number is milliseconds. Returns ns."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time: write e.g. 20ms, 0.5ms or 1s")
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str):
        text = value.strip().lower()
    else:
        raise ValueError(f"{value!r} is not a time: write e.g. 20ms, 0.5ms or 1s")
    m = _TIME.match(text)
    if not m:
        raise ValueError(f"{value!r} is not a time: write e.g. 20ms, 0.5ms or 1s")
    ns = round(float(m.group(1)) * _TIME_NS[m.group(2)])
    if ns > 3600 * 10**9:
        raise ValueError(f"{value!r} is more than an hour: netem's delays are at most seconds")
    return ns


def parse_percent(value: object) -> float:
    """``1%``, ``0.5%``, or a bare number of percent. Returns a probability in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a percentage: write e.g. 1% or 0.5%")
    text = str(value).strip()
    if text.endswith("%"):
        text = text[:-1].strip()
    try:
        pct = float(text)
    except ValueError:
        raise ValueError(f"{value!r} is not a percentage: write e.g. 1% or 0.5%") from None
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"{value!r} is not between 0% and 100%")
    return pct / 100.0


def parse_rate(value: object) -> int:
    """tc's rate units: ``10mbit``, ``500kbit``, ``1gbit``, ``1mibit``; ``Nbps`` is bytes/s.

    Returns bits per second.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a rate: write e.g. 10mbit, 500kbit or 1gbit")
    m = _RATE.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a rate: write e.g. 10mbit, 500kbit or 1gbit")
    num, prefix, unit = float(m.group(1)), m.group(2).lower(), (m.group(3) or "bit").lower()
    scale = _IEC[prefix] if unit.startswith("i") else _SI[prefix]
    bits = num * scale * (8 if unit.endswith("bps") else 1)
    if bits < 8:
        raise ValueError(f"{value!r} is below 8 bit/s: too slow to carry a packet")
    return round(bits)


def format_time(ns: int) -> str:
    if ns % 1_000_000_000 == 0 and ns:
        return f"{ns // 1_000_000_000}s"
    if ns % 1_000_000 == 0:
        return f"{ns // 1_000_000}ms"
    if ns % 1_000 == 0:
        return f"{ns // 1_000}us"
    return f"{ns}ns"


def format_rate(bits: int) -> str:
    for unit, scale in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits >= scale and bits % (scale // 1000 or 1) == 0:
            value = bits / scale
            return f"{value:g}{unit}"
    return f"{bits}bit"
