"""Building blocks of scenario validation: located raw values and primitive checks.

The YAML loader builds :class:`LineDict` / :class:`LineList` (plain dict and
list that also remember 1-based file lines); a Python scenario gives ordinary
dicts and lists, whose lines are simply unknown (``None``). :class:`At` is a
raw value together with its key path and line, and :class:`Checker` collects
every :class:`~netvirt.errors.Problem` so that all of them are reported at once.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from netvirt.errors import Problem
from netvirt.kinds import KINDS, ifname_problem

#: the longest any wait or timeout may be (a day): the build and the step runners sleep
#: on floats that must stay finite and sane
MAX_SECONDS = 86400.0

# --- raw containers with lines -------------------------------------------------------


class LineDict(dict[Any, Any]):
    """A mapping from YAML: ``line`` of its start, ``key_lines`` of each key,
    ``duplicates`` (key, line) of keys that appeared more than once."""

    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.key_lines: dict[Any, int] = {}
        self.duplicates: list[tuple[Any, int]] = []


class LineList(list[Any]):
    """A sequence from YAML: ``line`` of its start, ``item_lines`` of each item."""

    line: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.item_lines: list[int] = []


def join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class At(NamedTuple):
    """A raw value, its key path (``nodes.left.interfaces``) and file line."""

    value: Any
    path: str
    line: int | None

    def key(self, key: str) -> At:
        """The value under ``key`` (``None`` if absent), located."""
        value = self.value if isinstance(self.value, dict) else {}
        lines = getattr(value, "key_lines", {})
        return At(value.get(key), join(self.path, key), lines.get(key, self.line))

    def has(self, key: str) -> bool:
        return isinstance(self.value, dict) and key in self.value

    def items(self) -> Iterator[tuple[Any, At]]:
        lines = getattr(self.value, "key_lines", {})
        for k, v in self.value.items():
            yield k, At(v, join(self.path, k), lines.get(k, self.line))

    def elements(self) -> Iterator[At]:
        lines = getattr(self.value, "item_lines", [])
        for i, v in enumerate(self.value):
            yield At(v, f"{self.path}[{i}]", lines[i] if i < len(lines) else self.line)


# --- the problem collector -----------------------------------------------------------


@dataclass
class Checker:
    """Collects problems; every check returns a clean value or ``None``."""

    source: str | None
    problems: list[Problem] = field(default_factory=list)

    def add(self, at: At, message: str) -> None:
        self.problems.append(Problem(at.path, one_line(message), at.line, self.source))

    def adopt(self, problems: Iterable[Problem], at: At) -> None:
        """Take problems from elsewhere (a program's check), filling in line and file."""
        for p in problems:
            line = p.line if p.line is not None else at.line
            self.problems.append(Problem(p.path or at.path, one_line(p.message), line,
                                         p.file or self.source))

    def mapping(
        self,
        at: At,
        allowed: Iterable[str],
        what: str,
        *,
        required: Iterable[str] = (),
        elsewhere: dict[str, str] | None = None,
    ) -> bool:
        """Check ``at`` is a mapping with string keys among ``allowed``.

        ``elsewhere`` maps keys that are valid in another context to a hint
        (e.g. ``stp`` -> "applies to kind bridge only"). Returns False when
        ``at`` is not a mapping at all.
        """
        if not isinstance(at.value, dict):
            self.add(at, f"{what} must be a mapping, not {describe(at.value)}")
            return False
        allowed = list(allowed)
        for key, line in getattr(at.value, "duplicates", []):
            self.add(At(None, join(at.path, key), line),
                     f"duplicate key {describe(key)}: it appears more than once in {what}")
        for key, child in at.items():
            if not isinstance(key, str):
                self.add(child, f"key {describe(key)} in {what} must be a string")
            elif key not in allowed:
                if elsewhere and key in elsewhere:
                    self.add(child, f"key {describe(key)} {elsewhere[key]}")
                else:
                    self.add(child, f"unknown key {describe(key)} in {what}{suggest(key, allowed)}")
        for key in required:
            if key not in at.value:
                self.add(at.key(key), f"required key {key!r} is missing from {what}")
            elif at.value[key] is None:
                self.add(at.key(key), f"required key {key!r} of {what} has no value: give it one")
        return True

    # -- primitives: each returns the clean value, or None after adding a problem --

    def string(self, at: At, what: str) -> str | None:
        if isinstance(at.value, str) and at.value:
            return at.value
        self.add(at, f"{what} must be a non-empty string, not {describe(at.value)}")
        return None

    def boolean(self, at: At, what: str) -> bool | None:
        if isinstance(at.value, bool):
            return at.value
        self.add(at, f"{what} must be true or false, not {describe(at.value)}")
        return None

    def integer(self, at: At, what: str, lo: int, hi: int | None = None) -> int | None:
        v = at.value
        if isinstance(v, int) and not isinstance(v, bool) and v >= lo and (hi is None or v <= hi):
            return v
        rng = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
        self.add(at, f"{what} must be an integer {rng}, not {describe(v)}")
        return None

    def number(self, at: At, what: str, lo: float = 0.0, hi: float = MAX_SECONDS) -> float | None:
        """A finite number of seconds from ``lo`` to ``hi`` (a day unless told)."""
        v = at.value
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) \
                and lo <= v <= hi:
            return float(v)
        self.add(at, f"{what} must be a finite number of seconds from {lo:.15g} to {hi:.15g}, "
                     f"not {describe(v)}")
        return None

    def choice(self, at: At, what: str, choices: Iterable[str]) -> str | None:
        choices = list(choices)
        if isinstance(at.value, str) and at.value in choices:
            return at.value
        self.add(at, f"{what} must be one of {', '.join(choices)}, not {describe(at.value)}")
        return None

    def ifname(self, at: At, name: object, what: str = "interface name") -> bool:
        problem = ifname_problem(name)
        if problem:
            self.add(at, f"{what} {describe(name)} {problem}")
        return problem is None

    def mac(self, at: At) -> str | None:
        v = at.value
        if isinstance(v, int) and not isinstance(v, bool):
            self.add(at, f"MAC {v!r} was read as a number: write it in quotes, e.g. "
                         "'02:00:00:00:00:01'")
            return None
        if not isinstance(v, str) or not MAC_RE.fullmatch(v):
            self.add(at, f"{describe(v)} is not a MAC address: write six hex octets "
                         "separated by colons, e.g. 02:00:00:00:00:01")
            return None
        first = int(v[:2], 16)
        if first & 1:
            self.add(at, f"MAC {v} is a multicast address (lowest bit of the first octet set): "
                         "use a unicast one, e.g. 02:00:00:00:00:01 (locally administered)")
            return None
        if int(v.replace(":", ""), 16) == 0:
            self.add(at, "MAC 00:00:00:00:00:00 is not a valid device address: use e.g. "
                         "02:00:00:00:00:01")
            return None
        return v.lower()

    def cidr(self, at: At) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface | None:
        v = at.value
        if isinstance(v, str) and "/" in v:
            try:
                return ipaddress.ip_interface(v)
            except ValueError:
                pass
        hint = "" if isinstance(v, str) and "/" in v else " (the prefix length is required)"
        self.add(at, f"{describe(v)} is not an address with prefix{hint}: write e.g. "
                     "10.0.0.1/24 or fd00::1/64")
        return None

    def address(self, at: At, what: str = "address") -> ipaddress.IPv4Address | \
            ipaddress.IPv6Address | None:
        v = at.value
        if isinstance(v, str):
            try:
                return ipaddress.ip_address(v)
            except ValueError:
                pass
        self.add(at, f"{what} must be an IPv4 or IPv6 address without prefix, e.g. 10.0.0.1, "
                     f"not {describe(v)}")
        return None


# --- plain data -----------------------------------------------------------------------

#: nesting deeper than this is no scenario (YAML or Python); the deepest real one is about 8
MAX_DEPTH = 64
#: every integer a scenario can use fits in 64 bits (u64 counters, s64 at the least)
INT_MIN, INT_MAX = -(1 << 63), (1 << 64) - 1
PLAIN = (dict, LineDict, list, LineList, str, int, float, bool, type(None))


class BigNumber:
    """An integer literal too long to convert (YAML decimal of more than 4300 digits).

    The loader puts this in place of the value, so that validation reports it at its
    path and line (as out of every range) instead of the parser failing unlocated."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits

    def __repr__(self) -> str:
        return f"an integer of {self.digits} digits"

    def __hash__(self) -> int:
        return hash((BigNumber, self.digits))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BigNumber) and other.digits == self.digits


def plain_problems(ck: Checker, root: At) -> bool:
    """Check once, before anything else looks at it, that ``root`` is plain data.

    Plain: dicts, lists, strings, bools, None, floats and integers that fit in 64 bits,
    nested at most MAX_DEPTH deep. Later checks (and the programs' own) then never meet
    an integer whose repr raises (more than 4300 digits), an object with a raising
    ``__repr__``/``__eq__``, or nesting that ends in a RecursionError. Iterative: the
    nesting of the input cannot exhaust the stack. Returns True when all is plain.
    """
    n = len(ck.problems)
    stack: list[tuple[At, int]] = [(root, 0)]
    while stack:
        at, depth = stack.pop()
        v = at.value
        if type(v) is BigNumber or (type(v) is int and not INT_MIN <= v <= INT_MAX):
            ck.add(at, f"{describe(v)} is out of range of every setting (integers in a scenario "
                       "fit in 64 bits): write the value the setting takes")
        elif type(v) not in PLAIN:
            ck.add(at, f"a scenario holds plain data (mappings, lists, text, numbers, true/false), "
                       f"not {describe(v)}")
        elif isinstance(v, dict | list):
            if depth >= MAX_DEPTH:
                ck.add(at, f"nested more than {MAX_DEPTH} levels deep: no scenario is")
                continue
            if isinstance(v, dict):
                for key, child in at.items():
                    if type(key) not in PLAIN or (type(key) is int and not INT_MIN <= key <= INT_MAX):
                        ck.add(child, f"key {describe(key)} must be a string")
                    else:
                        stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in at.elements())
    return len(ck.problems) == n


def one_line(text: str) -> str:
    """A message as one line: each problem is printed on a line of its own."""
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


# --- names and tables ----------------------------------------------------------------

NAME_RE = re.compile(r"[a-z][a-z0-9-]*")
NAME_MAX = 12
MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")


def name_problem(name: object, what: str) -> str | None:
    """Why ``name`` is not a valid lab or node name, or None."""
    if not isinstance(name, str):
        return f"{what} must be a string, not {describe(name)}"
    if not NAME_RE.fullmatch(name):
        return (f"{what} {describe(name)} must start with a lowercase letter and hold only "
                "lowercase letters, digits and '-'")
    if len(name) > NAME_MAX:
        return (f"{what} {describe(name)} is {len(name)} characters long; at most {NAME_MAX} keep "
                "namespace names nv-<lab>-<node> readable")
    return None


#: Kinds netvirt does not build, each with what to use instead. This says nothing about
#: the running kernel (validation runs anywhere, without root): whether it has a kind
#: netvirt builds shows at build time, as "not supported by this kernel".
NOT_BUILT: dict[str, str] = {
    "dummy": "use a bridge with no ports, or a tun with the sink program",
    "vlan": "use veth or macvlan",
    "ipvlan": "use macvlan",
    "ipvtap": "use macvtap",
    "bond": "use a bridge",
    "team": "use a bridge",
    "vrf": "use one node (network namespace) per routing table",
    "ipip": "use a tun with the ipip-tunnel program",
    "vxlan": "use a tun with the udp-tunnel program",
    "ifb": "use a tun with the sink program",
    "nlmon": "use the capture verb or the pcap program",
    "hsr": "use a bridge",
    "macsec": "use veth",
    "netkit": "use veth",
    **dict.fromkeys(("geneve", "wireguard", "gre", "gretap", "ip6gre", "ip6gretap", "sit", "ip6tnl",
                     "vti", "vti6", "xfrm", "bareudp"), "use a tun with the udp-tunnel or ipip-tunnel program"),
}


@functools.cache
def elsewhere_hints(kind: str) -> dict[str, str]:
    """For keys of other kinds: which kinds they belong to (for a clear message)."""
    own = KINDS[kind].keys if kind in KINDS else ()
    hints: dict[str, str] = {}
    for k in KINDS.values():
        for key in k.keys:
            if key not in own:
                owners = [o.name for o in KINDS.values() if key in o.keys]
                hints[key] = f"does not apply to a {kind}; it is for kind {', '.join(owners)} only"
    return hints


def kind_problem(kind: object) -> str | None:
    if not isinstance(kind, str):
        return f"kind must be a string, one of {', '.join(KINDS)}; not {describe(kind)}"
    if kind in KINDS:
        return None
    if kind in NOT_BUILT:
        return f"kind {kind!r} is not one netvirt builds; {NOT_BUILT[kind]}"
    return f"unknown kind {describe(kind)}; expected one of {', '.join(KINDS)}"


def suggest(word: str, choices: Iterable[str]) -> str:
    import difflib  # only when a key is wrong

    close = difflib.get_close_matches(word, list(choices), n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f"; expected one of {', '.join(sorted(choices))}" if choices else ""


def describe(value: object) -> str:
    """A short human description of any raw value for messages; never raises.

    The one place values are shown: an integer too long for ``repr`` (more than 4300
    digits raises ValueError), a huge string, or an object whose ``__repr__`` raises
    are each described in a few words."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 128:
        digits = int(value.bit_length() * 0.30103) + 1
        return f"an integer of about {digits} digits"
    if isinstance(value, str) and len(value) > 40:
        value = value[:37]
        return _repr(value) + "..."
    text = _repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _repr(value: object) -> str:
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a user's object: describe it another way
        return f"a {type(value).__name__} that cannot be shown"
    return text if isinstance(text, str) else f"a {type(value).__name__}"
