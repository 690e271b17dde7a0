"""Entry point of a link's datapath process: ``python -m netvirt.impair._worker FD0 FD1 CTL``.

Started by :class:`netvirt.impair.process.DatapathProcess` with the two tap
fds and its end of the control socketpair; imports only the pure engine and
the datapath (no netlink, no asyncio), so it starts in tens of milliseconds.
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
    fd0, fd1, ctl, parent = (int(x) for x in argv)
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the prctl
        return 0
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us in order
    dp = Datapath((fd0, fd1))
    os.write(ctl, json.dumps({"ok": True, "result": os.getpid()}).encode())
    dp.serve(ctl)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
