"""Entry point of a link's datapath process: ``... _worker FD0 FD1 CTL PARENT_PID REALTIME``.

Started by :class:`netvirt.impair.process.DatapathProcess` with the two tap
fds and its end of the control socketpair; imports only the pure engine and
the datapath (no netlink, no asyncio), so it starts in tens of milliseconds.

Scheduling: netem runs in the kernel's softirq, ahead of every task; the
worker asks for the lowest real-time priority (SCHED_FIFO 1) so that a
busy machine does not delay a packet past its time (measured here under a
load average of 6 on 2 cores: p99 lateness 0.06-0.18 ms with it, 1-17 ms
without; BENCHMARKS.md). The kernel's real-time throttling (95% of each
period) still leaves ordinary tasks their share if a link is saturated.
Without the privilege it runs as an ordinary task.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import sys

from .datapath import Datapath

_PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    fd0, fd1, ctl, parent, rt = (int(x) for x in argv)
    realtime = bool(rt)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl
        return 0
    policy = "other"
    if realtime:
        try:  # the lowest real-time priority: above every ordinary task, below the kernel's own
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            policy = "fifo"
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us in order
    dp = Datapath((fd0, fd1))
    dp.policy = policy
    os.write(ctl, json.dumps({"ok": True, "result": os.getpid()}).encode())
    dp.serve(ctl)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
