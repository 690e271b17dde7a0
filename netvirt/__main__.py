import os
import signal
import sys


def _interrupt(sig: int, frame: object) -> None:
    raise KeyboardInterrupt


# first of all: a signal while netvirt is still being imported must neither kill
# the process (SIGTERM's default) nor print a traceback; netvirt.cli.main then
# installs the handlers it keeps
signal.signal(signal.SIGTERM, _interrupt)
try:
    from netvirt.cli import main
except KeyboardInterrupt:
    print("netvirt: interrupted", file=sys.stderr)
    sys.exit(130)

code = main()
# the verb is over and its lab torn down: flush and leave without the interpreter's
# finalization (freeing every module: ~15 ms of a 0.45 s job), as a C program would
try:
    sys.stdout.flush()
    sys.stderr.flush()
except OSError:  # a closed pipe (netvirt status | head): the output has nowhere to go
    pass
os._exit(code)
