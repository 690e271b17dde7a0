"""The ``link`` verb: ``netvirt link LAB ENDPOINT down|up|reset|show|set --delay 20ms ...``.

Arguments and output only; the request goes to the lab's owner through
:func:`netvirt.impair.control.request`. ``set`` takes netem's keys as
options (the same as the ``impair:`` keys; ``--loss-ge P,R[,H[,K]]`` for
Gilbert-Elliott, ``--trace FILE`` for a Mahimahi trace) and replaces the
conditions of what leaves ENDPOINT (``--both``: of both directions).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from netvirt.errors import UsageError

__all__ = ["add_arguments", "format_stats", "keys_from_args", "run"]

_SIMPLE = ("delay", "jitter", "distribution", "loss", "duplicate", "corrupt", "rate", "limit", "seed")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("lab", help="the lab's name")
    p.add_argument("endpoint", help="NODE:IFNAME, one end of the link (its direction: what leaves it)")
    p.add_argument("action", choices=("down", "up", "reset", "show", "set"))
    p.add_argument("--both", action="store_true", help="set/reset: both directions")
    p.add_argument("--json", action="store_true", help="the link's state and counters as JSON")
    for key in _SIMPLE:
        p.add_argument(f"--{key}", type=int if key in ("limit", "seed") else str, default=None)
    p.add_argument("--loss-ge", metavar="P,R[,H[,K]]", help="Gilbert-Elliott loss (netem's gemodel)")
    p.add_argument("--reorder", metavar="PCT", help="reorder probability (needs --delay)")
    p.add_argument("--gap", type=int, default=None, help="reorder gap (default 1)")
    p.add_argument("--trace", metavar="FILE", help="rate from a Mahimahi trace")


def keys_from_args(args: argparse.Namespace) -> dict[str, Any]:
    keys: dict[str, Any] = {k: getattr(args, k) for k in _SIMPLE if getattr(args, k) is not None}
    if args.loss_ge:
        if "loss" in keys:
            raise UsageError("give --loss or --loss-ge, not both")
        parts = [x.strip() for x in args.loss_ge.split(",")]
        if not 1 <= len(parts) <= 4:
            raise UsageError("--loss-ge takes P,R[,H[,K]], e.g. --loss-ge 1%,20%")
        keys["loss"] = {"model": "gilbert-elliott", **dict(zip("prhk", parts, strict=False))}
    if args.reorder:
        keys["reorder"] = {"probability": args.reorder, "gap": args.gap or 1}
    elif args.gap is not None:
        raise UsageError("--gap goes with --reorder")
    if args.trace:
        if "rate" in keys:
            raise UsageError("give --rate or --trace, not both")
        keys["rate"] = {"trace": os.path.abspath(args.trace)}
    return keys


def format_stats(stats: dict[str, Any]) -> str:
    lines = [f"link served by {stats['backend']}, carrier {'up' if stats['carrier'] else 'DOWN'}"]
    for end, d in stats["directions"].items():
        cond = d["conditions"]
        text = ", ".join(f"{k} {json.dumps(v) if isinstance(v, dict) else v}" for k, v in cond.items())
        lines.append(f"  leaving {end}: {text or 'no conditions'}")
        lines.append(f"    passed {d['passed']}, dropped {d['dropped']} (loss {d['dropped_loss']}, "
                     f"queue full {d['dropped_limit']}, down {d['dropped_down']}), duplicated "
                     f"{d['duplicated']}, corrupted {d['corrupted']}, reordered {d['reordered']}, "
                     f"queue {d['queue']}, delay p50 {d['delay_p50_ms']:.3f} ms p99 "
                     f"{d['delay_p99_ms']:.3f} ms")
    return "\n".join(lines)


def run(args: argparse.Namespace, state_dir: Path) -> int:
    from .control import request  # not at import: 'netvirt --help' stays light

    keys = keys_from_args(args)
    if keys and args.action != "set":
        raise UsageError(f"conditions go with 'set', not {args.action!r}")
    result = request(state_dir, {"endpoint": args.endpoint, "op": args.action, "keys": keys,
                                 "both": args.both})
    print(json.dumps(result, indent=1) if args.json else format_stats(result))
    return 0
