"""``python -m netvirt VERB``: the command line (README, "The command line").

Imports stay lazy: ``--help`` and ``validate`` must not pay for pyroute2,
uvloop or scapy. Exit codes: 0 ok, 1 a step failed, 2 bad scenario or usage,
3 environment, 130 interrupted (after a complete teardown).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="netvirt",
        description="Build virtual networks (tun, tap, veth, bridge, macvlan, macvtap) "
                    "in namespaces from a scenario file, check them, tear them down.",
    )
    from netvirt import __version__

    p.add_argument("--version", action="version", version=f"netvirt {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop",
                   help="event loop (default uvloop)")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    def scenario_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("file", help="scenario file (.yaml or .py)")
        sp.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                        help="parameter of a Python scenario (repeatable)")
        sp.add_argument("--name", help="lab name to use instead of the scenario's")

    sp = sub.add_parser("run", help="build, start programs, run steps, report, tear down")
    scenario_args(sp)
    sp.add_argument("--keep", action="store_true",
                    help="after the steps, stay up in the foreground until Ctrl-C/SIGTERM")
    sp.add_argument("--json", action="store_true", help="machine-readable report on stdout")
    sp = sub.add_parser("up", help="build and stay in the foreground until Ctrl-C/SIGTERM")
    scenario_args(sp)
    sp.add_argument("--detach", action="store_true", help="go to the background once built")
    sp = sub.add_parser("down", help="tear down a lab from its state record")
    sp.add_argument("name", nargs="+", help="lab name(s)")
    sp.add_argument("--kill-holders", action="store_true",
                    help="stop (SIGTERM, then SIGKILL) the processes that keep a lab's namespace alive")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("status", help="labs, nodes, interfaces, addresses, program counters")
    sp.add_argument("name", nargs="?", help="one lab (default: all)")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("validate", help="check a scenario (no root, creates nothing)")
    scenario_args(sp)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("graph", help="draw the topology: .svg .png .dot .mmd")
    scenario_args(sp)
    sp.add_argument("-o", "--output", required=True, help="output file")
    sp = sub.add_parser("exec", help="run a command inside a node (as ip netns exec)")
    sp.add_argument("name", help="lab name")
    sp.add_argument("node", help="node name")
    sp.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    sp = sub.add_parser("logs", help="show (or follow) a process's log: stdout and stderr")
    sp.add_argument("name", help="lab name")
    sp.add_argument("target", metavar="NODE[.NAME]", help="a node (its only process) or NODE.NAME")
    sp.add_argument("-f", "--follow", action="store_true",
                    help="keep printing what is appended, until Ctrl-C or the lab is gone")
    sp = sub.add_parser("capture", help="capture packets of an interface to a pcap file")
    sp.add_argument("name", help="lab name")
    sp.add_argument("node", help="node name")
    sp.add_argument("ifname", help="interface")
    sp.add_argument("-w", "--write", required=True, metavar="FILE", help="pcap file to write")
    sp.add_argument("-c", "--count", type=int, default=0, help="stop after N packets")
    sp.add_argument("--seconds", type=float, default=0, help="stop after this many seconds")
    sp.add_argument("--no-promisc", dest="promisc", action="store_false",
                    help="only frames addressed to the interface (default: all it sees, as tcpdump)")
    from netvirt.impair.cli import add_arguments as link_args

    sp = sub.add_parser("link", help="pull, restore or impair a link of a running lab",
                        description="netvirt link LAB NODE:IFNAME down|up|reset|show|set [--delay 20ms "
                                    "--loss 1%% --rate 10mbit ...]: conditions apply to what leaves "
                                    "NODE:IFNAME (--both: both directions); the lab must be running "
                                    "(up, up --detach, run --keep)")
    link_args(sp)
    # the machine side of a lab across machines: started by the driver over SSH, JSON lines
    # on stdin/stdout (netvirt/multi/agent.py); not for direct use
    sub.add_parser("agent", help="(started by 'run' on each machine of a lab across machines)")
    return p


class Interrupted(BaseException):
    """SIGTERM (or SIGINT) outside the event loop: unwinds like KeyboardInterrupt."""


#: signals that came once the work was over (or while it was being unwound): they only
#: change the exit code. Set by the handler itself, so that it raises at most once.
_late: list[int] = []
_finishing = False


def _raise_interrupted(sig: int, frame: object) -> None:
    global _finishing
    if _finishing:
        _late.append(sig)
        return
    _finishing = True  # before the raise: a second signal cannot interrupt the unwinding
    raise Interrupted(sig)


def _guard_signals() -> None:
    """From the first instant: SIGINT and SIGTERM unwind (exit 130), never a traceback.

    While a verb's event loop runs, its own handlers take over (they cancel the
    work so that teardown completes); asyncio restores SIGTERM to the default
    action when its loop closes, so this is installed again after each loop.
    """
    signal.signal(signal.SIGINT, _raise_interrupted)
    signal.signal(signal.SIGTERM, _raise_interrupted)


def main(argv: Sequence[str] | None = None) -> int:
    global _finishing
    _guard_signals()
    caught = False
    try:
        code = _main(argv)
        _finishing = True  # inside the try: a signal before this line is caught below
    except BaseException as exc:
        # the handler sets _finishing when it raises: then whatever escapes is that signal,
        # also when the raise came inside an import and was wrapped (a class body wraps
        # exceptions of __set_name__ in RuntimeError)
        if not (_finishing or isinstance(exc, KeyboardInterrupt)):
            raise
        _finishing = True
        caught, code = True, EXIT_INTERRUPTED
    with contextlib.suppress(BaseException):
        sys.stdout.flush()
    # ignored from here to the end: the interpreter's finalization resets Python-level
    # handlers to the default action (death by signal), but leaves SIG_IGN alone
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if caught or (_late and code != EXIT_INTERRUPTED):  # a verb that returned 130 said so
        print("netvirt: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    return code


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    from netvirt.errors import NetvirtError

    try:
        from netvirt.cli import commands

        return commands.dispatch(args)
    except NetvirtError as exc:
        if args.debug:
            raise
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"netvirt: error: {line}", file=sys.stderr)
        return exc.exit_code
