"""A live node: one network namespace plus what runs and lives in it."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import dataclass
from typing import Any

from netvirt.devices import Device
from netvirt.netns import Namespace


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def exec_argv(netns: str | None, argv: list[str]) -> list[str]:
    """The command line that runs ``argv`` inside ``netns`` as ``ip netns exec`` does.

    ``ip netns exec`` also remounts /sys for the namespace and binds the files
    of /etc/netns/<ns>/, so tools see the node's own interfaces.
    """
    if netns is None:
        return list(argv)
    return ["ip", "netns", "exec", netns, *argv]


class Node:
    """One node of a live topology (see ``Topology.node``)."""

    def __init__(self, name: str, ns: Namespace) -> None:
        self.name = name
        self.ns = ns
        self.devices: dict[str, Device] = {}

    def __repr__(self) -> str:
        return f"<Node {self.name} netns={self.ns.label}>"

    @property
    def netns(self) -> str | None:
        """The namespace name (None for a node in the host namespace)."""
        return self.ns.name

    def device(self, ifname: str) -> Device:
        return self.devices[ifname]

    async def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
                     proto: int = 0) -> socket.socket:
        """A non-blocking socket inside this node's namespace."""
        return await self.ns.socket(family, type, proto)

    async def exec(self, cmd: str | list[str], *, timeout: float | None = 60.0,
                   input: bytes | None = None, env: dict[str, Any] | None = None) -> ExecResult:
        """Run a command in this node (a string goes through ``sh -c``)."""
        argv = ["sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        proc = await asyncio.create_subprocess_exec(
            *exec_argv(self.ns.name, argv),
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(input), timeout)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        return ExecResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))

    async def sysctl(self, key: str, value: str | int | None = None) -> str:
        return await self.ns.sysctl(key, value)
