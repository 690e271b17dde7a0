"""The one error tree of netvirt.

Every error a user can meet derives from :class:`NetvirtError` and carries the
process exit code the CLI uses for it (README, "The command line")::

    NetvirtError                      exit 1 unless a subclass says otherwise
    ├── UsageError                    exit 2  bad command line
    │   └── ClosedResourceError               use of a closed namespace or device (also a RuntimeError)
    ├── ScenarioError                 exit 2  bad scenario file (all problems at once)
    ├── EnvironmentProblem            exit 3  the machine cannot do what was asked
    │   ├── NotRootError                      not running as root
    │   ├── UnsupportedError                  a kind or option this kernel lacks
    │   ├── NameTakenError                    a namespace, link or lab name exists already
    │   └── MachineError                      a machine of a lab across machines failed (its
    │                                         name; exit code that of the failure there)
    ├── KernelError                   exit 3  a netlink request or ioctl failed (errno, op, where)
    │   └── NoSuchObjectError                 ENOENT/ENODEV: namespace or link missing
    └── StepFailed                    exit 1  a scenario check failed

Netlink and OS errors are translated into this tree at one place,
``netvirt._netlink.errors`` (``translate()`` / ``to_netvirt()``): netlink answers,
tun/tap ioctls, namespace mounts and sysctls go through it. The few messages
written elsewhere (a capture socket, a program's socket or file) say what only
their caller knows: the interface, the path.
"""

from __future__ import annotations

import errno as _errno
from typing import NamedTuple

__all__ = [
    "ClosedResourceError",
    "EnvironmentProblem",
    "KernelError",
    "MachineError",
    "NameTakenError",
    "NetvirtError",
    "NoSuchObjectError",
    "NotRootError",
    "Problem",
    "ScenarioError",
    "StepFailed",
    "UnsupportedError",
    "UsageError",
]


class NetvirtError(Exception):
    """Root of all netvirt errors. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class UsageError(NetvirtError):
    exit_code = 2


class ClosedResourceError(UsageError, RuntimeError):
    """A namespace (or device) used after it was closed: a bug in the calling code."""


class Problem(NamedTuple):
    """One thing wrong in a scenario: where (key path, file line) and what.

    A NamedTuple, not a dataclass: ``import netvirt`` (and so ``--help``) stays free of
    ``dataclasses`` and ``inspect``."""

    path: str
    message: str
    line: int | None = None
    file: str | None = None

    def __str__(self) -> str:
        where = self.file or "<scenario>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        key = f" {self.path}:" if self.path else ""
        return f"{where}:{key} {self.message}"


class ScenarioError(NetvirtError):
    """A scenario is invalid. ``problems`` lists every problem found."""

    exit_code = 2

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class EnvironmentProblem(NetvirtError):
    exit_code = 3


class NotRootError(EnvironmentProblem):
    def __init__(self, what: str = "this command") -> None:
        super().__init__(
            f"{what} needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run it with sudo"
        )


class UnsupportedError(EnvironmentProblem):
    """A kind or option the running kernel does not offer."""


class NameTakenError(EnvironmentProblem):
    """A name netvirt wanted to create exists already (and is not ours)."""


class KernelError(NetvirtError):
    """A netlink request or ioctl failed. Carries errno, operation and place."""

    exit_code = 3

    def __init__(
        self,
        errno: int,
        op: str,
        *,
        device: str | None = None,
        netns: str | None = None,
        detail: str | None = None,
    ) -> None:
        self.errno = errno
        self.op = op
        self.device = device
        self.netns = netns
        where = []
        if device:
            where.append(f"device {device!r}")
        where.append(f"namespace {netns!r}" if netns else "the host namespace")
        reason = detail or _errno.errorcode.get(errno, str(errno))
        msg = f"{op} failed on {' in '.join(where)}: [{_errno.errorcode.get(errno, errno)}] {reason}"
        super().__init__(msg)


class NoSuchObjectError(KernelError):
    pass


class StepFailed(NetvirtError):
    exit_code = 1


class MachineError(EnvironmentProblem):
    """A machine of a lab across machines failed: unreachable, another netvirt version, or
    its share failed there. ``machine`` names it; ``exit_code`` is the failure's own."""

    def __init__(self, machine: str, message: str, exit_code: int = 3) -> None:
        super().__init__(f"machine {machine}: {message}")
        self.machine = machine
        self.exit_code = exit_code
