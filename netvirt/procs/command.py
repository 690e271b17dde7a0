"""One-shot commands in a node (``Node.exec`` and the ``exec`` step), through the launcher.

Output goes to unlinked temporary files, not pipes: a job the command leaves
in the background (``server & echo started``) keeps its copy of stdout, and
with a pipe the reader would wait for it until the timeout. The command's own
exit ends the call; what it left running stays in its cgroup and is handed to
``jobs`` (the node's), which teardown stops. On timeout, cancellation
(Ctrl-C, SIGTERM) or any error, the command and everything it forked are
killed before the call returns.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO

from netvirt._aio import complete
from netvirt.procs.launch import Journal, Process
from netvirt.procs.view import NodeView


@dataclass(frozen=True)
class CommandResult:
    returncode: int
    stdout: str
    stderr: str


def _read(f: IO[bytes]) -> str:
    f.seek(0)
    return f.read(1 << 24).decode(errors="replace")


async def run_command(view: NodeView, argv: Sequence[str], *, timeout: float | None = 60.0,
                      input: bytes | None = None, env: Mapping[str, str] | None = None,
                      cwd: str | None = None, journal: Journal | None = None,
                      jobs: list[Process] | None = None, name: str = "exec") -> CommandResult:
    """Run ``argv`` in the node; TimeoutError (with what was killed) after ``timeout`` s."""
    import asyncio

    out = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
    err = tempfile.TemporaryFile()  # noqa: SIM115
    stdin = None
    try:
        if input is not None:
            stdin = tempfile.NamedTemporaryFile()  # noqa: SIM115 (the gate opens it by name)
            stdin.write(input)
            stdin.seek(0)
        proc = await Process.start(view, argv, name=name, stdin=stdin, stdout=out, stderr=err,
                                   env={**os.environ, **(env or {})}, cwd=cwd, journal=journal)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            left = len(proc.members())
            await complete(proc.kill())
            raise TimeoutError(f"{argv[-1] if argv[:2] == ['sh', '-c'] else ' '.join(argv)!r} did not exit "
                               f"within {timeout:g} s: killed it and the {left} process(es) it ran") from None
        except BaseException:
            await complete(proc.kill())
            raise
        if proc.alive and jobs is not None:
            jobs.append(proc)  # it left jobs running: they are the node's until teardown
        elif proc.alive:
            await complete(proc.kill())
        else:
            await proc.stop()  # nothing runs: just removes its cgroup
        return CommandResult(code, _read(out), _read(err))
    finally:
        for f in (out, err, stdin):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


async def stop_jobs(jobs: list[Process], timeout: float = 2.0) -> None:
    """Stop what commands left running (teardown). Every job is stopped, whatever fails."""
    import asyncio

    results = await asyncio.gather(*(complete(j.stop(timeout=timeout)) for j in jobs), return_exceptions=True)
    jobs.clear()
    for r in results:
        if isinstance(r, BaseException):
            raise r


__all__ = ["CommandResult", "run_command", "stop_jobs"]
