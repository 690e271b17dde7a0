"""The CLI verbs that need no event loop (validate, graph, exec) and the dispatch. Each
verb returns the process exit code; the work is library code (``netvirt.scenario``,
``netvirt.topology``)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from netvirt.errors import EnvironmentProblem, NoSuchObjectError, UsageError


def dispatch(args: argparse.Namespace) -> int:
    """Run one verb. Those that need an event loop live in ``live.py``, imported only for them."""
    light: dict[str, Callable[[argparse.Namespace], int]] = {
        "validate": cmd_validate, "graph": cmd_graph, "exec": cmd_exec, "agent": cmd_agent,
        "logs": cmd_logs,
        "link": cmd_link,
    }
    if args.verb in light:
        return light[args.verb](args)
    from netvirt.cli import live

    verbs: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": live.cmd_run, "up": live.cmd_up, "down": live.cmd_down, "status": live.cmd_status,
        "capture": live.cmd_capture,
    }
    return verbs[args.verb](args)


def cmd_link(args: argparse.Namespace) -> int:
    """``netvirt link LAB ENDPOINT ...``: asks the process that owns the lab (its control socket)."""
    from netvirt.impair.cli import run
    from netvirt.scenario.model import check_lab_name
    from netvirt.topology.journal import STATE_ROOT

    return run(args, STATE_ROOT / check_lab_name(args.lab))


# -- helpers ----------------------------------------------------------------
def _params(args: argparse.Namespace) -> dict[str, str]:
    out = {}
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


def _load(args: argparse.Namespace) -> Any:
    from netvirt.scenario import load

    scenario = load(args.file, _params(args) or None)
    if getattr(args, "name", None) is not None:  # --name "" is an error, not "no --name"
        scenario = scenario.with_name(args.name)
    return scenario


def cmd_agent(args: argparse.Namespace) -> int:
    from netvirt.multi.agent import main

    return main(args.loop)


# -- validate / graph ----------------------------------------------------------
def cmd_validate(args: argparse.Namespace) -> int:
    s = _load(args)
    n_if = sum(len(n.interfaces) for n in s.nodes.values())
    if args.json:
        import json

        print(json.dumps({"ok": True, "name": s.name, "nodes": len(s.nodes), "interfaces": n_if,
                          "links": len(s.links), "steps": len(s.steps), "machines": list(s.machines)}))
    else:
        where = f", on machines {', '.join(s.machines)}" if s.machines else ""
        print(f"{args.file}: ok: lab {s.name}: {len(s.nodes)} nodes, {n_if} interfaces, "
              f"{len(s.links)} links, {len(s.steps)} steps{where}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from netvirt.scenario.graph import render

    render(_load(args), args.output)
    print(f"wrote {args.output}")
    return 0


# -- exec / capture ----------------------------------------------------------
def _node_netns(lab: str, node: str) -> str | None:
    from netvirt.netns import netns_exists
    from netvirt.scenario.model import netns_name
    from netvirt.topology.journal import read_info

    info = read_info(lab)
    if not info:
        raise EnvironmentProblem(f"no lab named {lab!r} is up (see 'netvirt status')")
    for machine, m in info.get("multi", {}).get("machines", {}).items():
        if node in m.get("nodes", []):  # a lab across machines: the node is in a share there
            raise UsageError(f"lab {lab!r} spans machines: node {node!r} is on {machine} ({m['ssh']}), "
                             f"in its share {m['share']!r}: run 'netvirt exec {m['share']} {node} -- ...' "
                             "there")
    if node not in info.get("nodes", []):
        raise UsageError(f"lab {lab!r} has no node {node!r}; nodes: {', '.join(info.get('nodes', []))}")
    if node in info.get("host_nodes", []):
        return None
    ns = netns_name(lab, node)
    if not netns_exists(ns):
        raise NoSuchObjectError(2, "find node namespace", netns=ns)
    return ns


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise UsageError("exec needs a command: netvirt exec LAB NODE -- COMMAND")
    from netvirt.topology.node import exec_argv

    argv = exec_argv(_node_netns(args.name, args.node), cmd, lab=args.name, node=args.node)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 127  # pragma: no cover




def cmd_logs(args: argparse.Namespace) -> int:
    """``logs LAB NODE[.NAME] [-f]``: a process's stdout and stderr (SPEC.md section 9)."""
    from netvirt.procs.logs import find_log, follow
    from netvirt.topology.journal import lab_dir, owner_alive, read_info

    state = lab_dir(args.name)
    if not state.is_dir():
        raise EnvironmentProblem(f"no lab named {args.name!r} is up (see 'netvirt status')")
    path = find_log(state, args.target)
    out = sys.stdout.buffer
    info = read_info(args.name)

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    try:
        follow(path, write, keep_going=(lambda: state.is_dir() and owner_alive(info)) if args.follow
               else (lambda: False))
    except FileNotFoundError:
        raise EnvironmentProblem(f"the log {path} is gone (lab {args.name!r} torn down?)") from None
    except KeyboardInterrupt:
        return 0  # Ctrl-C is how -f ends
    return 0
