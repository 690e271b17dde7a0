"""Link conditions (SPEC.md section 7): the ``impair:`` keys, parsed into inert data.

Pure: :func:`parse_conditions` reads one map of netem keys and returns a
:class:`Conditions` plus a list of located :class:`~netvirt.errors.Problem`
(every problem at once, nothing raised), :func:`parse_impair` reads a
link's ``impair:`` value (one map for both directions, or one map per
endpoint). The meaning of each key is netem's (tc-netem(8)); what no
backend can do (a reorder without delay, a distribution without jitter, a
rate and a trace at once) is a problem here, before anything is created.

Gilbert-Elliott (netem's ``gemodel``): ``p`` is P(good -> bad), ``r`` is
P(bad -> good) (default ``1 - p``), ``h`` is the probability that a packet
*passes* in the bad state (default 0%), ``k`` that it passes in the good
state (default 100%); tc's ``gemodel p r 1-h 1-k`` takes the complements of
the last two.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from netvirt.errors import Problem

from .dist import DISTRIBUTIONS
from .units import format_rate, format_time, parse_percent, parse_rate, parse_time

__all__ = ["KEYS", "Conditions", "Loss", "parse_conditions", "parse_impair", "read_trace"]

KEYS = ("delay", "jitter", "distribution", "loss", "duplicate", "corrupt", "reorder", "rate",
        "limit", "seed")
DEFAULT_LIMIT = 1000
#: Bytes a direction's queue may hold whatever ``limit`` says (GSO packets count as one, as in netem).
BYTE_LIMIT = 64 << 20
TRACE_MTU = 1500


@dataclass(frozen=True)
class Loss:
    """A loss model: ``random`` (``p``) or ``gilbert-elliott`` (``p``, ``r``, ``h``, ``k``)."""

    model: str = "random"
    p: float = 0.0
    r: float = 1.0
    h: float = 0.0
    k: float = 1.0

    def mean(self) -> float:
        """The long-run loss probability."""
        if self.model == "random":
            return self.p
        if self.p + self.r == 0:
            return 1.0 - self.k
        bad = self.p / (self.p + self.r)
        return (1 - bad) * (1 - self.k) + bad * (1 - self.h)


@dataclass(frozen=True)
class Conditions:
    """What one direction of a link does to the packets that leave an endpoint."""

    delay: int = 0  # ns
    jitter: int = 0  # ns
    distribution: str = "uniform"
    loss: Loss | None = None
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0
    gap: int = 0
    rate: int = 0  # bit/s, 0 = unlimited
    trace: tuple[int, ...] = ()  # Mahimahi delivery opportunities, ms
    trace_file: str | None = None
    limit: int = DEFAULT_LIMIT
    seed: int | None = None

    @property
    def per_packet(self) -> bool:
        """True if a decision is taken per wire packet (GSO super-packets must be cut)."""
        return bool(self.loss and self.loss.mean() > 0) or self.duplicate > 0 or self.corrupt > 0 \
            or self.reorder > 0

    @property
    def idle(self) -> bool:
        """True if these conditions change nothing (a plain wire)."""
        return self == Conditions(limit=self.limit, seed=self.seed)

    def with_seed(self, seed: int | None) -> Conditions:
        return replace(self, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """The keys as a user writes them (for ``status``, ``show`` and the journal)."""
        out: dict[str, Any] = {}
        if self.delay:
            out["delay"] = format_time(self.delay)
        if self.jitter:
            out["jitter"] = format_time(self.jitter)
            out["distribution"] = self.distribution
        if self.loss:
            if self.loss.model == "random":
                out["loss"] = f"{self.loss.p * 100:g}%"
            else:
                out["loss"] = {"model": "gilbert-elliott", "p": f"{self.loss.p * 100:g}%",
                               "r": f"{self.loss.r * 100:g}%", "h": f"{self.loss.h * 100:g}%",
                               "k": f"{self.loss.k * 100:g}%"}
        for key in ("duplicate", "corrupt"):
            if getattr(self, key):
                out[key] = f"{getattr(self, key) * 100:g}%"
        if self.reorder:
            out["reorder"] = {"probability": f"{self.reorder * 100:g}%", "gap": self.gap}
        if self.rate:
            out["rate"] = format_rate(self.rate)
        if self.trace:
            out["rate"] = {"trace": self.trace_file or "<trace>"}
        if self.limit != DEFAULT_LIMIT:
            out["limit"] = self.limit
        if self.seed is not None:
            out["seed"] = self.seed
        return out

    def describe(self) -> str:
        parts = []
        for k, v in self.to_dict().items():
            if isinstance(v, dict):
                v = "{" + ", ".join(f"{a}: {b}" for a, b in v.items()) + "}"
            parts.append(f"{k} {v}")
        return ", ".join(parts) or "none"


def read_trace(path: Path) -> tuple[int, ...]:
    """A Mahimahi trace: one delivery opportunity per line, in ms, non-decreasing."""
    out: list[int] = []
    with open(path, encoding="ascii") as fh:
        for n, line in enumerate(fh, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            try:
                ms = int(text)
            except ValueError:
                raise ValueError(f"{path.name}:{n}: {text!r} is not a whole number of ms") from None
            if ms < 0 or (out and ms < out[-1]):
                raise ValueError(f"{path.name}:{n}: times must be >= 0 and never decrease")
            out.append(ms)
    if not out or out[-1] <= 0:
        raise ValueError(f"{path.name}: a trace needs at least one opportunity after 0 ms")
    return tuple(out)


def _loss(raw: object, path: str, problems: list[Problem]) -> Loss | None:
    def pct(v: object, key: str) -> float:
        try:
            return parse_percent(v)
        except ValueError as exc:
            problems.append(Problem(f"{path}.{key}" if key else path, str(exc)))
            return 0.0

    if not isinstance(raw, Mapping):
        p = pct(raw, "")
        return Loss("random", p) if p else None
    model = raw.get("model", "random")
    known = {"random": {"model", "p"}, "gilbert-elliott": {"model", "p", "r", "h", "k"}}
    if model not in known:
        problems.append(Problem(f"{path}.model", f"unknown loss model {model!r}: use random or "
                                                 "gilbert-elliott"))
        return None
    for key in raw:
        if key not in known[model]:
            problems.append(Problem(f"{path}.{key}", f"unknown key for loss model {model}: "
                                                     f"use {', '.join(sorted(known[model]))}"))
    if "p" not in raw:
        problems.append(Problem(f"{path}.p", f"loss model {model} needs p (a percentage)"))
        return None
    p = pct(raw["p"], "p")
    if model == "random":
        return Loss("random", p)
    r = pct(raw["r"], "r") if "r" in raw else 1.0 - p
    h = pct(raw["h"], "h") if "h" in raw else 0.0
    k = pct(raw["k"], "k") if "k" in raw else 1.0
    return Loss("gilbert-elliott", p, r, h, k)


def parse_conditions(raw: object, path: str, *, base_dir: Path | None = None,
                     keys: tuple[str, ...] = KEYS) -> tuple[Conditions | None, list[Problem]]:
    """Conditions from one map of netem keys; ``path`` names it in problems."""
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        return None, [Problem(path, "must be a map of netem keys, e.g. {delay: 20ms, loss: 1%}")]
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"{path}.{key}"
        if key not in keys:
            problems.append(Problem(where, f"unknown key {key!r}: use {', '.join(keys)}"))
            continue
        try:
            if key in ("delay", "jitter"):
                values[key] = parse_time(value)
            elif key == "distribution":
                if value not in DISTRIBUTIONS:
                    raise ValueError(f"{value!r} is not a distribution: use {', '.join(DISTRIBUTIONS)}")
                values[key] = value
            elif key == "loss":
                values["loss"] = _loss(value, where, problems)
            elif key in ("duplicate", "corrupt"):
                values[key] = parse_percent(value)
            elif key == "reorder":
                _reorder(value, where, values, problems)
            elif key == "rate":
                _rate(value, where, values, problems, base_dir)
            elif key in ("limit", "seed"):
                lo, hi = (1, 1_000_000) if key == "limit" else (0, 2**63 - 1)
                if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                    raise ValueError(f"{value!r} must be a whole number from {lo} to {hi}")
                values[key] = value
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
    if "distribution" in values and not values.get("jitter"):
        problems.append(Problem(f"{path}.distribution", "a distribution needs a jitter (as in netem): "
                                                        "add e.g. jitter: 2ms"))
    if values.get("reorder") and not values.get("delay"):
        problems.append(Problem(f"{path}.reorder", "reordering needs a delay (as in netem): "
                                                   "add e.g. delay: 10ms"))
    if problems:
        return None, problems
    return Conditions(**values), []


def _reorder(value: object, where: str, values: dict[str, Any], problems: list[Problem]) -> None:
    if not isinstance(value, Mapping):
        values["reorder"] = parse_percent(value)
        values["gap"] = 1
        return
    for key in value:
        if key not in ("probability", "gap"):
            problems.append(Problem(f"{where}.{key}", "unknown key: use probability and gap"))
    if "probability" not in value:
        raise ValueError("needs probability (a percentage), e.g. {probability: 25%, gap: 5}")
    values["reorder"] = parse_percent(value["probability"])
    gap = value.get("gap", 1)
    if isinstance(gap, bool) or not isinstance(gap, int) or not 1 <= gap <= 1_000_000:
        problems.append(Problem(f"{where}.gap", f"{gap!r} must be a whole number from 1 up"))
        return
    values["gap"] = gap


def _rate(value: object, where: str, values: dict[str, Any], problems: list[Problem],
          base_dir: Path | None) -> None:
    if not isinstance(value, Mapping):
        values["rate"] = parse_rate(value)
        return
    if set(value) != {"trace"} or not isinstance(value["trace"], str):
        raise ValueError("a rate is e.g. 10mbit, or {trace: FILE} (a Mahimahi trace)")
    file = Path(value["trace"])
    if not file.is_absolute() and base_dir is not None:
        file = base_dir / file
    try:
        values["trace"] = read_trace(file)
    except FileNotFoundError:
        problems.append(Problem(f"{where}.trace", f"trace file {str(file)!r} not found (paths are "
                                                  "relative to the scenario)"))
        return
    except (OSError, ValueError) as exc:
        problems.append(Problem(f"{where}.trace", str(exc)))
        return
    values["trace_file"] = value["trace"]


def parse_impair(raw: object, endpoints: tuple[str, str], path: str, *,
                 base_dir: Path | None = None) -> tuple[dict[str, Conditions], list[Problem]]:
    """A link's ``impair:``: one map (both directions) or ``{ENDPOINT: map}``.

    Returns the conditions of what *leaves* each endpoint (absent: untouched).
    """
    if not isinstance(raw, Mapping):
        return {}, [Problem(path, "must be a map of netem keys, or one map per endpoint")]
    if any(k in endpoints or (isinstance(k, str) and ":" in k) for k in raw):  # per endpoint
        out: dict[str, Conditions] = {}
        problems: list[Problem] = []
        for ep, sub in raw.items():
            if ep not in endpoints:
                problems.append(Problem(f"{path}.{ep}", f"{ep!r} is not an endpoint of this link "
                                                        f"({endpoints[0]}, {endpoints[1]})"))
                continue
            cond, probs = parse_conditions(sub, f"{path}.{ep}", base_dir=base_dir)
            problems += probs
            if cond is not None:
                out[ep] = cond
        return out, problems
    cond, problems = parse_conditions(raw, path, base_dir=base_dir)
    if cond is None:
        return {}, problems
    return {endpoints[0]: cond, endpoints[1]: cond}, []
