"""The process launcher on the real kernel: start in a node, ready checks, stop everything.

Every test asserts that nothing is left: no process (by pid + start time), no
cgroup, no mount in the machine's mount table.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netvirt.netns import Namespace
from netvirt.procs import NodeView, Process, ProcessError, cgroup, parse_ready, pids, run_command, wait_ready
from tests.conftest import unique

pytestmark = pytest.mark.root


def _mounts() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return sorted(" ".join(line.split()[3:5]) for line in f)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeView]:
    before = _mounts()
    ns = await Namespace.create(unique())
    try:
        view = NodeView(ns.name, tmp_path / "node", private=("/var/run/nvtest",))
        view.prepare({"hosts": b"10.9.0.1\tr1\n", "nvtest/app.conf": b"answer=42\n"})
        yield view
    finally:
        await view.close()
        mine = cgroup.root() / f"p{os.getpid()}" if cgroup.root() else None
        leftover = mine is not None and mine.exists()
        if leftover:  # a failed test: stop what it left, then fail
            from netvirt.procs import stop_journaled

            stop_journaled([{"op": "cgroup", "path": str(mine)}], timeout=0.5)
        await ns.close()
    assert not leftover, "processes or cgroups left"
    new = [m for m in set(_mounts()) - set(before)  # other processes make namespaces meanwhile
           if not m.split()[1].startswith("/run/netns/") or ns.name in m]
    assert new == [], f"mounts left in the machine's namespace: {new}"


def _gone(recorded: list[tuple[int, int | None]]) -> list[int]:
    return [pid for pid, start in recorded if pids.is_same(pid, start)]


def _identities(proc: Process) -> list[tuple[int, int | None]]:
    return [(p, pids.start_time(p)) for p in proc.members()]


async def test_runs_in_the_node_with_its_files_and_private_dirs(node: NodeView, tmp_path: Path) -> None:
    log = tmp_path / "t.log"
    script = ("readlink /proc/self/ns/net; ls /sys/class/net; cat /etc/hosts /etc/nvtest/app.conf; "
              "test -e /etc/passwd && echo host-etc-visible; echo x > /etc/nv-written && echo etc-writable; "
              "touch /var/run/nvtest/sock; ls /proc/self/fd")
    proc = await Process.start(node, ["sh", "-c", script], name="r1.t", log=log)
    assert await proc.wait() == 0
    await proc.stop()
    out = log.read_text()
    assert out.split()[0] == f"net:[{os.stat(f'/run/netns/{node.netns}').st_ino}]"
    assert "lo" in out.split() and "eth0" not in out.split()  # its own /sys/class/net
    assert "10.9.0.1\tr1" in out and "answer=42" in out and "host-etc-visible" in out
    assert "etc-writable" in out and not os.path.exists("/etc/nv-written")  # never the machine's /etc
    assert (node.private_source(0, "/var/run/nvtest") / "sock").exists()
    fds = sorted(int(x) for x in out.split()[-4:])
    assert fds == [0, 1, 2, 3], out  # 3: the directory ls reads; nothing inherited


async def test_writes_to_etc_are_the_nodes_own_and_seen_by_its_next_processes(node: NodeView) -> None:
    res = await run_command(node, ["sh", "-c", "echo 'nameserver 10.9.0.53' > /etc/resolv.conf"], timeout=10)
    assert res.returncode == 0, res.stderr
    res = await run_command(node, ["cat", "/etc/resolv.conf"], timeout=10)
    assert res.stdout == "nameserver 10.9.0.53\n"
    with open("/etc/resolv.conf") as f:
        assert "10.9.0.53" not in f.read()
    anchor = node.anchor
    assert anchor is not None and anchor.alive
    await node.close()
    assert not anchor.alive


async def test_no_inherited_sockets_and_a_background_job_does_not_hold_the_command(node: NodeView) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    jobs: list[Process] = []
    try:
        t0 = time.monotonic()
        res = await run_command(node, ["sh", "-c", "sleep 300 & echo started; ls /proc/self/fd"],
                                timeout=10, jobs=jobs)
        assert time.monotonic() - t0 < 5
        assert res.returncode == 0 and res.stdout.startswith("started")
        assert sorted(int(x) for x in res.stdout.split()[1:]) == [0, 1, 2, 3]
        assert len(jobs) == 1 and jobs[0].alive
        left = _identities(jobs[0])
        assert left
    finally:
        listener.close()
        from netvirt.procs import stop_jobs

        await stop_jobs(jobs)
    assert _gone(left) == []


async def test_timeout_kills_the_command_and_what_it_backgrounded(node: NodeView) -> None:
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="did not exit within 0.5 s: killed it"):
        await run_command(node, ["sh", "-c", "setsid sleep 301 & sleep 302 & sleep 303"], timeout=0.5)
    assert time.monotonic() - t0 < 5
    assert pids.in_netns(os.stat(f"/run/netns/{node.netns}").st_ino) == [node.anchor.pid]  # only the mounts


async def test_cancellation_kills_everything(node: NodeView) -> None:
    task = asyncio.ensure_future(run_command(node, ["sh", "-c", "sleep 310 & setsid sleep 311 & wait"],
                                             timeout=30))
    await asyncio.sleep(0.3)
    ino = os.stat(f"/run/netns/{node.netns}").st_ino
    assert len(pids.in_netns(ino)) == 4  # sh, two sleeps, the node's mount anchor
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pids.in_netns(ino) == [node.anchor.pid]


async def test_a_process_that_dies_fails_ready_with_its_log(node: NodeView, tmp_path: Path) -> None:
    proc = await Process.start(node, ["sh", "-c", "echo bad config line 3 >&2; exit 3"], name="r1.dies",
                               log=tmp_path / "d.log")
    with pytest.raises(ProcessError, match=r"(?s)r1.dies: exited with code 3 before it was ready.*bad config"):
        await wait_ready(proc, parse_ready({"tcp": 8080, "timeout": "5s"}))
    await proc.stop()
    assert proc.returncode == 3 and proc.state == "failed" and not proc.alive


async def test_a_process_that_never_gets_ready_is_stopped(node: NodeView, tmp_path: Path) -> None:
    proc = await Process.start(node, ["sh", "-c", "echo waiting; exec sleep 320"], name="r1.slow",
                               log=tmp_path / "s.log")
    ident = _identities(proc)
    t0 = time.monotonic()
    with pytest.raises(ProcessError, match=r"(?s)not ready within 0.4 s.*waiting"):
        await wait_ready(proc, parse_ready({"file": "/var/run/nvtest/never.pid", "timeout": 0.4}))
    assert 0.4 <= time.monotonic() - t0 < 3
    await proc.stop()
    assert _gone(ident) == [] and proc.returncode == -signal.SIGTERM


async def test_one_that_ignores_sigterm_gets_sigkill(node: NodeView, tmp_path: Path) -> None:
    proc = await Process.start(node, ["sh", "-c", "trap '' TERM; sleep 330 & echo up; wait"],
                               name="r1.stubborn", log=tmp_path / "i.log")
    await wait_ready(proc, parse_ready({"log": "^up$", "timeout": 5}))
    ident = _identities(proc)
    assert len(ident) == 2
    t0 = time.monotonic()
    code = await proc.stop(timeout=0.3)
    assert 0.3 <= time.monotonic() - t0 < 3
    assert code == -signal.SIGKILL and _gone(ident) == []


async def test_daemons_that_setsid_away_are_found_and_stopped(node: NodeView, tmp_path: Path) -> None:
    # like FRR's watchfrr: the started process forks daemons into new sessions and exits 0
    forker = "setsid sleep 340 & setsid sh -c 'sleep 341 & sleep 342' & sleep 0.2; exit 0"
    proc = await Process.start(node, ["sh", "-c", forker], name="r1.forker", log=tmp_path / "f.log")
    assert await proc.wait() == 0
    assert proc.alive and proc.state == "running"
    ident = _identities(proc)
    assert len(ident) >= 3
    assert len({pids.stat(p).sid for p, _ in ident if pids.stat(p)}) >= 2  # left the group, not the cgroup
    await proc.stop()
    assert _gone(ident) == [] and proc.state == "stopped"


async def test_ready_checks_tcp_udp_log_file(node: NodeView, tmp_path: Path) -> None:
    py = shutil.which("python3") or "python3"
    server = (f"{py} -c \"import socket,time;t=socket.socket();t.bind(('127.0.0.1',7001));t.listen();"
              "u=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM);u.bind(('::',7002));"
              "open('/var/run/nvtest/ok','w').close();print('serving',flush=True);time.sleep(300)\"")
    proc = await Process.start(node, ["sh", "-c", server], name="r1.srv", log=tmp_path / "srv.log")
    try:
        for ready in ({"tcp": 7001}, {"udp": 7002}, {"log": r"serv\w+"}, {"file": "/var/run/nvtest/ok"},
                      {"exec": "cat /proc/net/tcp | grep -q ':1B59 '"}):
            await wait_ready(proc, parse_ready({**ready, "timeout": 10}))
        # the port is the node's, not the machine's
        with pytest.raises(ProcessError, match="TCP port 7003"):
            await wait_ready(proc, parse_ready({"tcp": 7003, "timeout": 0.2}))
    finally:
        await proc.stop()


async def test_cannot_start_is_one_clear_error(node: NodeView, tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="r1.x: cannot start '/no/such/daemon': No such file or directory"):
        await Process.start(node, ["/no/such/daemon"], name="r1.x", log=tmp_path / "x.log")
    with pytest.raises(ProcessError, match="cannot start 'true'.*No such file"):
        await Process.start(node, ["true"], name="r1.y", cwd="/no/such/dir")


async def test_without_cgroup_v2_the_process_group_stands_in(node: NodeView, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cgroup, "_root", None)  # as on a machine without a writable cgroup2
    proc = await Process.start(node, ["sh", "-c", "sleep 370 & sleep 371 & echo up; wait"], name="r1.grp",
                               log=tmp_path / "g.log")
    await wait_ready(proc, parse_ready({"log": "up", "timeout": 5}))
    assert proc.cgroup is None and len(proc.members()) == 3
    ident = _identities(proc)
    await proc.stop()
    assert _gone(ident) == []
    # and from the journal alone, as down does after a SIGKILL of the owner
    entries: list[dict[str, object]] = []
    proc = await Process.start(node, ["sh", "-c", "sleep 372 & echo up; wait"], name="r1.grp2",
                               log=tmp_path / "g2.log", journal=lambda **e: entries.append(e))
    await wait_ready(proc, parse_ready({"log": "up", "timeout": 5}))
    ident = _identities(proc)
    from netvirt.procs import stop_journaled

    stop_journaled(entries, timeout=2)  # type: ignore[arg-type]
    assert _gone(ident) == []
    await proc.stop()


async def test_many_commands_at_once_share_one_anchor_and_big_output_is_whole(node: NodeView) -> None:
    results = await asyncio.gather(*(run_command(node, ["sh", "-c", f"head -c 300000 /dev/zero | tr '\\0' x; "
                                                                   f"echo {i} >&2"], timeout=30)
                                     for i in range(12)))
    assert all(len(r.stdout) == 300000 and r.stdout.strip("x") == "" for r in results)
    assert sorted(int(r.stderr) for r in results) == list(range(12))
    ino = os.stat(f"/run/netns/{node.netns}").st_ino
    assert pids.in_netns(ino) == [node.anchor.pid]  # one anchor for all
    res = await run_command(node, ["cat"], input=b"hello\n" * 1000, timeout=10)
    assert res.stdout == "hello\n" * 1000
