"""The package's layout promises: the pure scenario imports nothing of the kernel side,
the public names of 0.1.0 still resolve, validation needs no root."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import netvirt
from netvirt.kinds import KINDS

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)


def test_scenario_package_imports_no_kernel_side() -> None:
    res = _python(
        "import sys, netvirt.scenario, netvirt.scenario.graph, netvirt.kinds\n"
        "s = netvirt.scenario.load('scenarios/s4-udp-tunnel.yaml')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('pyroute2', 'asyncio') or\n"
        "    m.startswith(('netvirt.devices', 'netvirt._netlink', 'netvirt.netns',\n"
        "                  'netvirt.topology', 'netvirt.packetio', 'netvirt.wire.tso')))\n"
        "assert not bad, bad  # a scenario with programs checks them by their schemas\n")
    assert res.returncode == 0, res.stderr


def test_cli_help_imports_nothing_heavy() -> None:
    res = _python("import sys, runpy\nsys.argv = ['netvirt', '--help']\n"
                  "try:\n    runpy.run_module('netvirt', run_name='__main__')\n"
                  "except SystemExit:\n    pass\n"
                  "heavy = [m for m in ('yaml', 'pyroute2', 'scapy', 'uvloop') if m in sys.modules]\n"
                  "assert not heavy, heavy\n")
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("scenario", ["scenarios/s3b_star.py", "scenarios/s4-udp-tunnel.yaml"])
def test_validate_runs_without_privileges(scenario: str) -> None:
    """As a user (``.ci/run`` runs tests/unit as nobody) directly; as root, with every
    capability dropped (the interpreter may live where nobody cannot read it)."""
    cmd = [sys.executable, "-m", "netvirt", "validate", scenario]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.fail("setpriv (util-linux) is needed to drop root's capabilities for this test")
        cmd = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all",
               "--no-new-privs", *cmd]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"})
    assert res.returncode == 0, res.stderr
    assert "ok: lab" in res.stdout


def test_public_names_of_0_1_0_resolve() -> None:
    for name in netvirt.__all__:
        assert getattr(netvirt, name) is not None
    assert netvirt.__all__ == sorted(netvirt.__all__)
    devices = importlib.import_module("netvirt.devices")
    topology = importlib.import_module("netvirt.topology")
    for name in ("Bridge", "Device", "Macvlan", "Macvtap", "Tap", "Tun", "Veth", "VethPeer"):
        assert hasattr(devices, name)
    for name in topology.__all__:
        assert getattr(topology, name) is not None


def test_every_kind_has_a_driver_with_that_kind() -> None:
    for name, kind in KINDS.items():
        cls = kind.driver_class()
        assert cls.kind == name, (name, cls)
        assert kind.phase in ("local", "link", "child")


def test_netlink_seam_imports_only_the_pyroute2_modules_it_uses() -> None:
    res = _python(
        "import sys, netvirt._netlink, netvirt.devices\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('pyroute2.ndb', 'pyroute2.ipdb',\n"
        "    'pyroute2.iproute', 'pyroute2.conntrack')))\n"
        "assert not heavy, heavy\n"
        "assert 'pyroute2' not in sys.modules  # the stand-in package is gone again\n"
        "import pyroute2\n"  # and whoever imports pyroute2 later gets the real package
        "from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg\n"
        "from netvirt._netlink.decode import ifinfmsg as ours\n"
        "assert pyroute2.IPRoute and ifinfmsg is ours\n")
    assert res.returncode == 0, res.stderr


def test_the_run_path_imports_no_pyroute2_until_something_is_decoded() -> None:
    """A build reads raw attributes only: pyroute2's message modules (~18 ms) load on the
    first decode (a dump of links, addresses or the FDB), not at start-up."""
    res = _python(
        "import sys, netvirt.cli.live, netvirt.topology.builder, netvirt.topology.steps\n"
        "assert not [m for m in sys.modules if m.startswith('pyroute2')]\n"
        "from netvirt._netlink.decode import decode\n"
        "from netvirt._netlink import encode\n"
        "m = decode('ifinfmsg', encode.set_link(ifname='lo', up=True))\n"
        "assert m.get('ifname') == 'lo' and 'pyroute2.netlink.rtnl.ifinfmsg' in sys.modules\n")
    assert res.returncode == 0, res.stderr
