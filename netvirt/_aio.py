"""Cleanup that completes under cancellation (trio-style), for every unwind path."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def complete(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end even if the caller is cancelled meanwhile (once or
    many times); then re-raise that cancellation.

    A bare ``await asyncio.shield(x)`` returns at the first cancellation and
    leaves ``x`` running unawaited, so a second Ctrl-C, or ``asyncio.run``
    cancelling leftover tasks at exit, could stop a teardown half-way.
    """
    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():  # the work itself was cancelled, not just us
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def unwind(first: BaseException, cleanup: Awaitable[object]) -> None:
    """Run ``cleanup`` after ``first`` failed, to its end; the caller then re-raises ``first``.

    The first error is what the user must see: a failure of the
    cleanup becomes a note on it instead of replacing it.
    """
    try:
        await complete(cleanup)
    except asyncio.CancelledError:
        pass  # cancelled meanwhile: the cleanup still finished, and `first` propagates
    except Exception as exc:
        first.add_note(f"netvirt: the cleanup after this error failed too: {exc}")


async def readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` is readable (uvloop has no sock_recvfrom: use add_reader)."""
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())
