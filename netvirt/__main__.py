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

sys.exit(main())
