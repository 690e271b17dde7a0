"""Link conditions with netem's semantics, served in userspace, and link control.

SPEC.md section 7. Layers, each usable alone:

- :mod:`.units`, :mod:`.conditions`: the ``impair:`` keys parsed into inert
  :class:`Conditions`, every problem located (pure);
- :mod:`.dist`, :mod:`.engine`: netem's decisions and queue for one
  direction on a virtual clock (:class:`Direction`, pure, sans I/O);
- :mod:`.frames`: tap frames behind a vnet header (GSO-aware lengths,
  segmentation, corruption with completed checksums; pure);
- :mod:`.timer`, :mod:`.datapath`: a timerfd and the forwarding thread;
- :mod:`.link`: :class:`ImpairedLink`, a tap pair in place of a veth, with
  ``impair()``, ``reset()``, ``down()``, ``up()``, ``stats()``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> module (imported lazily: the datapath worker imports only what it needs)
_WHERE = {
    "BACKEND": "link", "KEYS": "conditions", "Conditions": "conditions", "Direction": "engine",
    "End": "link", "ImpairedLink": "link", "LinkEnd": "link", "Loss": "conditions",
    "PlainFrames": "engine", "conditions_from_keys": "link", "parse_conditions": "conditions",
    "parse_impair": "conditions", "read_trace": "conditions",
}

if TYPE_CHECKING:
    from .conditions import KEYS, Conditions, Loss, parse_conditions, parse_impair, read_trace
    from .engine import Direction, PlainFrames
    from .link import BACKEND, End, ImpairedLink, LinkEnd, conditions_from_keys


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'netvirt.impair' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)

__all__ = [
    "BACKEND",
    "KEYS",
    "Conditions",
    "Direction",
    "End",
    "ImpairedLink",
    "LinkEnd",
    "Loss",
    "PlainFrames",
    "conditions_from_keys",
    "parse_conditions",
    "parse_impair",
    "read_trace",
]
