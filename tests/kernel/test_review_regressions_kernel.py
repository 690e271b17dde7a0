"""Regressions found by the review of 0.1.0, kernel side: lab names checked before any path,
IPv6 default routes, run --keep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netvirt
from netvirt.errors import UsageError
from netvirt.scenario.model import check_lab_name
from tests.conftest import unique
from tests.kernel.helpers import ROOT, assert_lab_gone
from tests.kernel.helpers import netvirt as cli


@pytest.mark.parametrize("bad", ["", ".", "..", "/", "/tmp", "a/../../b", "UPPER", "x" * 13])
def test_lab_names_are_checked_before_any_path_is_built(bad: str) -> None:
    with pytest.raises(UsageError):
        check_lab_name(bad)
    # before the check, `down ""` removed /run/netvirt itself and `down /tmp` removed /tmp
    res = cli("down", bad)
    assert res.returncode == 2 and "lab name" in res.stderr, res.stderr


@pytest.mark.root
async def test_ipv6_default_route_keeps_its_family(tmp_path: Path) -> None:
    lab = unique()
    f = tmp_path / "s.yaml"
    f.write_text(f"""name: {lab}
nodes:
  a:
    interfaces: {{eth0: {{addresses: ["fd00:7::1/64"]}}}}
    routes: [{{to: "::/0", dev: eth0}}]
  b:
    interfaces: {{eth0: {{addresses: ["fd00:7::2/64"]}}}}
links: [[a:eth0, b:eth0]]
""")
    async with netvirt.Topology(netvirt.load(f)) as topo:
        v6 = await topo.node("a").exec("ip -6 route show default")
        v4 = await topo.node("a").exec("ip -4 route show default")
        assert "default dev eth0" in v6.stdout and v4.stdout.strip() == ""
    assert_lab_gone(lab)


@pytest.mark.root
def test_run_keep_ends_on_sigterm_with_the_steps_verdict() -> None:
    from netvirt.topology.journal import read_info

    lab = unique()
    proc = subprocess.Popen([sys.executable, "-m", "netvirt", "run", "scenarios/s1a-tun-sink.yaml",
                             "--name", lab, "--keep"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not read_info(lab).get("ready"):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "all checks passed" in out
    assert_lab_gone(lab)
    assert os.path.exists(ROOT / "scenarios" / "s1a-tun-sink.yaml")
