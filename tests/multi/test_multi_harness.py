"""The namespace-machines harness itself: sshd per machine, key login, nothing left."""

from __future__ import annotations

import os
import subprocess

import pytest

from netvirt.multi.testing import NsMachines

pytestmark = pytest.mark.root


def test_openssh_reaches_each_machine_with_the_throwaway_key(ns_machines: NsMachines) -> None:
    for m in ns_machines.machines[: ns_machines.n]:
        res = subprocess.run(
            ["nsenter", f"--net=/run/netns/{ns_machines.driver_netns}", "ssh", "-F",
             str(ns_machines.ssh_config), "-o", "BatchMode=yes", m.ssh, "readlink /proc/self/ns/net"],
            capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        ns_ino = os.stat(f"/run/netns/{m.netns}").st_ino
        assert res.stdout.split()[0] == f"net:[{ns_ino}]", "the session must run in the machine's namespace"


def test_a_fresh_harness_starts_and_stops_without_leftovers() -> None:
    h = NsMachines(n=1, dead=0).start()
    pid = h.machines[0].sshd.pid  # type: ignore[union-attr]
    names = [h.driver_netns, h.machines[0].netns]
    h.stop()
    assert not os.path.exists(f"/proc/{pid}"), "sshd must be gone (and reaped)"
    assert not any(os.path.exists(f"/run/netns/{n}") for n in names)
    assert not h.dir.exists()
