"""The first program of every launch (the gate) and the checks before it (no state)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping, Sequence

from netvirt.procs.view import NodeView


def _error(message: str) -> Exception:
    from netvirt.procs.launch import ProcessError

    return ProcessError(message)


#: the first program of every launch: waits (on stdin) until the parent has put it in its
#: cgroup, then becomes the command with its real stdin and cwd (``NETVIRT_IN``, ``NETVIRT_CWD``)
GATE = ('read _ || exit 125; i=$NETVIRT_IN; d=$NETVIRT_CWD; unset NETVIRT_IN NETVIRT_CWD; '
        '[ -z "$d" ] || cd "$d" || exit 126; exec "$@" < "$i"')


def check_command(name: str, view: NodeView, argv: Sequence[str], env: Mapping[str, str] | None,
                   cwd: str | None) -> None:
    """ProcessError now for a command that cannot run (its exit code would look like its own)."""
    if not argv:
        raise _error(f"{name}: an empty command")
    prog = argv[0]
    if "/" in prog:
        path = view.host_path(prog)
        if not os.path.exists(path):
            raise _error(f"{name}: cannot start {prog!r}: No such file or directory")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise _error(f"{name}: cannot start {prog!r}: Permission denied (not an executable file)")
    else:
        search = (env if env is not None else os.environ).get("PATH", os.defpath)
        if shutil.which(prog, path=search) is None:
            raise _error(f"{name}: cannot start {prog!r}: No such file or directory "
                               f"(not in PATH {search})")
    if cwd is not None and not os.path.isdir(view.host_path(cwd)):
        raise _error(f"{name}: cannot start {prog!r} in {cwd!r}: No such file or directory")


async def read_to_eof(fd: int) -> bytes:
    """Everything written to a pipe until its last writer closes it (without blocking the loop)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    done: asyncio.Future[None] = loop.create_future()
    data = bytearray()

    def readable() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return
            except OSError:
                chunk = b""
            if not chunk:
                loop.remove_reader(fd)
                if not done.done():
                    done.set_result(None)
                return
            data.extend(chunk)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(data)


__all__ = ["GATE", "check_command", "read_to_eof"]
