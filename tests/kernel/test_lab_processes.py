"""Processes of a scenario through the real CLI and the Python API (SPEC.md section 9)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netvirt
from netvirt.procs import ProcessError, pids
from netvirt.scenario import load_text
from tests.conftest import unique
from tests.kernel.helpers import ROOT, SCENARIOS, assert_lab_gone
from tests.kernel.helpers import netvirt as cli

pytestmark = pytest.mark.root


def _write(tmp_path: Path, lab: str, processes: dict[str, list[dict[str, object]]],
           steps: list[dict[str, object]] | None = None) -> Path:
    nodes = {"a": {"interfaces": {"eth0": {"addresses": ["10.8.0.1/24"]}}},
             "b": {"interfaces": {"eth0": {"addresses": ["10.8.0.2/24"]}}}}
    for node, procs in processes.items():
        nodes[node]["processes"] = procs
    data = {"name": lab, "nodes": nodes, "links": [["a:eth0", "b:eth0"]], "steps": steps or []}
    path = tmp_path / f"{lab}.yaml"
    path.write_text(json.dumps(data))
    return path


def _lab_pids(lab: str) -> list[int]:
    """Every process in the lab's namespaces (the lab made them: exact ownership)."""
    out = []
    for node in ("a", "b"):
        try:
            ino = os.stat(f"/run/netns/nv-{lab}-{node}").st_ino
        except FileNotFoundError:
            continue
        out += pids.in_netns(ino)
    return out


def test_a_process_that_never_gets_ready_fails_the_run_with_its_log(tmp_path: Path) -> None:
    lab = unique()
    path = _write(tmp_path, lab, {"a": [{"name": "slow", "cmd": "echo starting up; exec sleep 30",
                                         "ready": {"tcp": 8080, "timeout": "500ms"}}]})
    t0 = time.monotonic()
    res = cli("run", str(path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert time.monotonic() - t0 < 15
    assert "a.slow: not ready within 0.5 s (TCP port 8080 listens never held)" in res.stderr
    assert "starting up" in res.stderr  # its last log lines
    assert_lab_gone(lab)


def test_a_process_that_dies_during_the_steps_fails_the_run(tmp_path: Path) -> None:
    lab = unique()
    flaky = "echo up; sleep 0.5; echo 'out of memory' >&2; exit 3"
    path = _write(tmp_path, lab, {"b": [{"name": "flaky", "cmd": flaky, "ready": {"log": "^up"}}]},
                  steps=[{"wait": 1.0}, {"ping": {"from": "a", "to": "10.8.0.2", "count": 1}}])
    res = cli("run", str(path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "PASS   2" in res.stdout
    assert "process b.flaky exited with code 3; last log lines:" in res.stdout and "out of memory" in res.stdout
    assert "1 process FAILED" in res.stdout
    assert_lab_gone(lab)


def test_status_logs_exec_then_sigkill_of_the_owner_and_down_stop_every_process(tmp_path: Path) -> None:
    lab = unique()
    path = _write(tmp_path, lab, {
        "a": [{"name": "daemon", "cmd": "setsid sleep 300 & setsid sh -c 'sleep 301 & sleep 302' & "
                                        "echo forked; exit 0", "ready": {"log": "forked"}}],
        "b": [{"name": "server", "cmd": "echo listening; exec sleep 303", "ready": {"log": "listening"}}]})
    res = cli("up", "--detach", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        status = cli("status", lab)
        assert "process daemon" in status.stdout and "running" in status.stdout, status.stdout
        rows = {p["name"]: p for n in json.loads(cli("status", lab, "--json").stdout)[0]["nodes"]
                for p in n["processes"]}
        assert rows["daemon"]["returncode"] == 0 and rows["daemon"]["members"] >= 3
        assert rows["server"]["state"] == "running" and rows["server"]["returncode"] is None
        assert cli("logs", lab, "a").stdout == "forked\n"
        assert cli("logs", lab, "b.server").stdout == "listening\n"
        assert cli("logs", lab, "b.nope").returncode == 2
        res = cli("exec", lab, "a", "--", "sh", "-c",
                  "grep -w b /etc/hosts; ping -c 1 -W 2 b > /dev/null && echo ok")
        assert res.stdout.split() == ["10.8.0.2", "b", "ok"], res.stdout + res.stderr
        running = [(p, pids.start_time(p)) for p in _lab_pids(lab)]
        assert len(running) >= 6  # 3 of daemon, 1 server, the two nodes' mount anchors
        info = json.loads(Path(f"/run/netvirt/{lab}/lab.json").read_text())
        os.kill(info["pid"], signal.SIGKILL)
        time.sleep(0.2)
        assert all(pids.is_same(p, st) for p, st in running)  # orphans: the owner is gone
    finally:
        res = cli("down", lab)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [p for p, st in running if pids.is_same(p, st)] == []
    assert_lab_gone(lab)


def test_two_frr_rings_side_by_side_do_not_collide() -> None:
    labs = [unique(), unique()]
    procs = [subprocess.Popen([sys.executable, "-m", "netvirt", "run", "--json", "--name", lab,
                               str(SCENARIOS / "frr-ospf-ring.yaml")], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) for lab in labs]
    for lab, proc in zip(labs, procs, strict=True):
        out, err = proc.communicate(timeout=180)
        report = json.loads(out) if out.strip() else {}
        failed = [s for s in report.get("steps", []) if not s["ok"]]
        assert proc.returncode == 0 and report["ok"] is True, (failed, report.get("process_failures"), err)
        assert_lab_gone(lab)


async def test_the_python_api_starts_and_stops_a_server_of_the_test(tmp_path: Path) -> None:
    scenario = load_text(json.dumps({
        "name": "x", "nodes": {"a": {"interfaces": {"eth0": {"addresses": ["10.8.1.1/24"]}}},
                               "b": {"interfaces": {"eth0": {"addresses": ["10.8.1.2/24"]}}}},
        "links": [["a:eth0", "b:eth0"]]}))
    async with netvirt.Topology(scenario.with_name(unique())) as topo:
        b = topo.node("b")
        server = await b.start(f"exec {sys.executable} -m http.server 8000 --bind 10.8.1.2", name="web",
                               ready={"tcp": 8000, "timeout": "20s"})
        assert topo.node("b").processes == {"web": server} and server.state == "running"
        res = await topo.node("a").exec("wget -q -O - http://b:8000/ | head -c 15")
        assert res.stdout.startswith("<!DOCTYPE HTML"), res.stdout + res.stderr
        code = await server.stop()
        assert code == -signal.SIGTERM and server.state == "stopped" and not server.alive
        with pytest.raises(ProcessError, match=r"b.p2: exited with code 7 right after it started"):
            await b.start("exit 7")
