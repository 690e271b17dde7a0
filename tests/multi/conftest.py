"""The namespace-machines fixture (see ``netvirt.multi.testing``): one set per test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from netvirt.multi.testing import NsMachines


@pytest.fixture(scope="session")
def ns_machines() -> Iterator[NsMachines]:
    """Two machines with sshd (m1, m2) and one without (m3), on an underlay bridge in
    the driver's namespace. Needs root and Debian's openssh-server (``.ci/run`` installs it)."""
    if shutil.which("sshd", path="/usr/sbin:/usr/bin") is None:
        pytest.fail("sshd is missing: apt-get install openssh-server (bash .ci/run does)")
    machines = NsMachines().start()
    try:
        yield machines
    finally:
        machines.stop()
