"""Issue 9 item 5: what ``exec`` steps and the ``exec`` verb start never outlives the lab.

Each process gets a unique ``sleep`` duration (``300.NNNNNN``) so the test can
find it among the machine's processes by its command line.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import unique
from tests.kernel.helpers import ROOT, assert_lab_gone, netvirt

pytestmark = pytest.mark.root


def _tag() -> str:
    return f"300.{secrets.randbelow(10**6):06d}"


def _running(tag: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag.encode() in argv and b"sleep" in argv[0] and state != "Z":
            found.append(int(entry))
    return found


def _wait_for(tag: str, timeout: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout
    while not (found := _running(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _scenario(tmp_path: Path, lab: str, steps: list[dict[str, object]]) -> Path:
    data = {"name": lab, "nodes": {"a": {"interfaces": {"eth0": {"addresses": ["10.7.0.1/24"]}}},
                                   "b": {"interfaces": {"eth0": {"addresses": ["10.7.0.2/24"]}}}},
            "links": [["a:eth0", "b:eth0"]], "steps": steps}
    path = tmp_path / f"{lab}.json.yaml"
    path.write_text(json.dumps(data))
    return path


def _start(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "netvirt", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_backgrounded_job_neither_hangs_the_step_nor_outlives_the_run(tmp_path: Path, loop: str) -> None:
    lab, tag = unique(), _tag()
    path = _scenario(tmp_path, lab, [
        {"exec": {"node": "a", "cmd": f"sleep {tag} & echo started", "expect": {"stdout": "^started"},
                  "timeout": 20}},
        {"exec": {"node": "a", "cmd": f"pgrep -f '[s]leep {tag}'", "expect": {"exit": 0}}},
    ])
    t0 = time.monotonic()
    res = netvirt("--loop", loop, "run", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert time.monotonic() - t0 < 15  # the job held the step until its timeout before
    assert _running(tag) == []
    assert_lab_gone(lab)


def test_a_step_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    lab, tag = unique(), _tag()
    path = _scenario(tmp_path, lab, [
        {"exec": {"node": "a", "cmd": f"sleep {tag} & setsid sleep {tag} & sleep {tag}", "timeout": 1}},
        {"exec": {"node": "a", "cmd": f"! pgrep -f '[s]leep {tag}'"}},  # gone already before teardown
    ])
    res = netvirt("run", str(path))
    assert res.returncode == 1
    assert "did not exit within 1 s: killed it and the 4 process(es)" in res.stdout, res.stdout
    assert "PASS   2" in res.stdout, res.stdout
    assert _running(tag) == []
    assert_lab_gone(lab)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_during_an_exec_step_stops_its_processes(tmp_path: Path, sig: int) -> None:
    lab, tag = unique(), _tag()
    path = _scenario(tmp_path, lab, [
        {"exec": {"node": "b", "cmd": f"setsid sleep {tag} & sleep {tag}", "timeout": 60}}])
    proc = _start(["run", str(path)])
    try:
        assert len(_wait_for(tag)) == 2
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _running(tag) == []
    assert_lab_gone(lab)


def test_sigkill_of_run_then_down_kills_what_exec_started(tmp_path: Path) -> None:
    lab, tag, tag2 = unique(), _tag(), _tag()
    path = _scenario(tmp_path, lab, [
        {"exec": {"node": "a", "cmd": f"setsid sleep {tag} & echo ok"}},
        {"exec": {"node": "b", "cmd": f"sleep {tag2}", "timeout": 60}}])
    proc = _start(["run", str(path)])
    try:
        assert len(_wait_for(tag)) == 1 and len(_wait_for(tag2)) == 1
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(_running(tag) + _running(tag2)) == 2  # orphans until down
        res = netvirt("down", lab)
        assert res.returncode == 0, res.stdout + res.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert _running(tag) == [] and _running(tag2) == []
    assert_lab_gone(lab)


def test_what_the_exec_verb_leaves_running_is_stopped_by_teardown(tmp_path: Path) -> None:
    lab, tag = unique(), _tag()
    path = _scenario(tmp_path, lab, [])
    res = netvirt("up", "--detach", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    try:
        res = netvirt("exec", lab, "a", "--", "sh", "-c", f"setsid sleep {tag} > /dev/null 2>&1 &")
        assert res.returncode == 0, res.stderr
        assert len(_wait_for(tag)) == 1
        # it runs as exec runs everything: in the node's netns, with the node's /sys
        res = netvirt("exec", lab, "a", "--", "ls", "/sys/class/net")
        assert res.stdout.split() == ["eth0", "lo"], res.stdout
    finally:
        res = netvirt("down", lab)
    assert res.returncode == 0, res.stdout + res.stderr
    assert _running(tag) == []
    assert_lab_gone(lab)
