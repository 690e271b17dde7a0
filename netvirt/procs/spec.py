"""The pure part of processes: durations, ``ready`` and ``stop`` specs, their checks (no I/O).

Used by scenario validation (problems with a key path, all at once) and by the
Python API (``node.start(cmd, ready={"tcp": 8080})``).
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

READY_KINDS = ("exec", "tcp", "udp", "log", "file")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|min)?\s*$")
MAX_TIMEOUT = 3600.0


class SpecError(ValueError):
    """One bad value: ``key`` says where (relative to the spec), the message what."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(message)


def duration(value: Any, key: str = "timeout", *, maximum: float = MAX_TIMEOUT) -> float:
    """Seconds from ``30s``, ``500ms``, ``2m`` or a bare number of seconds (finite, > 0)."""
    if isinstance(value, bool):
        raise SpecError(key, f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        unit = m.group(2) or "s"
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]
    else:
        raise SpecError(key, f"{value!r} is not a duration (e.g. 30s, 500ms, 2m)")
    if not 0 < seconds <= maximum:
        raise SpecError(key, f"{value!r}: a duration must be above 0 and at most {maximum:.0f} s")
    return seconds


def signal_number(value: Any, key: str = "signal") -> int:
    """A signal from ``TERM``, ``SIGTERM``, ``INT`` or its number."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return int(signal.Signals(value))
        except ValueError:
            pass
    elif isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        sig = getattr(signal.Signals, name, None)
        if isinstance(sig, signal.Signals):
            return int(sig)
    raise SpecError(key, f"{value!r} is not a signal (e.g. TERM, INT, HUP, KILL)")


@dataclass(frozen=True)
class Ready:
    """When a process counts as started: one check, polled every ``every`` s for ``timeout`` s."""

    kind: str  # one of READY_KINDS
    value: str | int
    timeout: float = 30.0
    every: float = 0.1

    def describe(self) -> str:
        return {"exec": f"command {self.value!r} exits 0", "tcp": f"TCP port {self.value} listens",
                "udp": f"UDP port {self.value} is bound", "log": f"its log matches /{self.value}/",
                "file": f"{self.value} exists"}[self.kind]


@dataclass(frozen=True)
class Stop:
    signal: int = int(signal.SIGTERM)
    timeout: float = 5.0


@dataclass(frozen=True)
class ProcessSpec:
    """One ``processes:`` entry (inert). A string ``cmd`` runs through ``sh -c``."""

    name: str
    cmd: str | tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    ready: Ready | None = None
    stop: Stop = field(default_factory=Stop)

    @property
    def argv(self) -> list[str]:
        return ["sh", "-c", self.cmd] if isinstance(self.cmd, str) else list(self.cmd)

    @property
    def title(self) -> str:
        return self.cmd if isinstance(self.cmd, str) else shlex.join(self.cmd)


def _port(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise SpecError(key, f"{value!r} is not a port number (1-65535)")
    return value


def parse_ready(data: Any) -> Ready:
    """A ``ready:`` map: exactly one of exec/tcp/udp/log/file, plus ``timeout``, ``every``."""
    if not isinstance(data, Mapping):
        raise SpecError("", "ready must be a map, e.g. {tcp: 8080, timeout: 10s}")
    unknown = [k for k in data if k not in (*READY_KINDS, "timeout", "every")]
    if unknown:
        raise SpecError(str(unknown[0]), f"unknown key {unknown[0]!r} (known: {', '.join(READY_KINDS)}, "
                                         f"timeout, every)")
    kinds = [k for k in READY_KINDS if k in data]
    if len(kinds) != 1:
        raise SpecError("", f"ready needs exactly one of {', '.join(READY_KINDS)} (got {len(kinds)})")
    kind = kinds[0]
    value = data[kind]
    if kind in ("tcp", "udp"):
        value = _port(value, kind)
    elif not isinstance(value, str) or not value:
        raise SpecError(kind, f"{kind} must be a non-empty string")
    elif kind == "log":
        try:
            re.compile(value)
        except re.error as exc:
            raise SpecError(kind, f"{value!r} is not a regular expression: {exc}") from None
    elif kind == "file" and not value.startswith("/"):
        raise SpecError(kind, f"{value!r} must be an absolute path (as the node sees it)")
    timeout = duration(data.get("timeout", 30.0), "timeout")
    every = duration(data.get("every", 0.1), "every", maximum=60.0)
    return Ready(kind, value, timeout, every)


def parse_stop(data: Any) -> Stop:
    if data is None:
        return Stop()
    if not isinstance(data, Mapping):
        raise SpecError("", "stop must be a map, e.g. {signal: TERM, timeout: 5s}")
    unknown = [k for k in data if k not in ("signal", "timeout")]
    if unknown:
        raise SpecError(str(unknown[0]), f"unknown key {unknown[0]!r} (known: signal, timeout)")
    return Stop(signal_number(data.get("signal", "TERM")), duration(data.get("timeout", 5.0), "timeout",
                                                                    maximum=600.0))


__all__ = ["MAX_TIMEOUT", "READY_KINDS", "ProcessSpec", "Ready", "SpecError", "Stop", "duration", "parse_ready",
           "parse_stop", "signal_number"]
