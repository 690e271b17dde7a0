"""The pure parts of netvirt.procs: specs, /proc parsing, node views (no root, no kernel)."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from netvirt.procs import NodeView, Ready, SpecError, duration, hosts_file, parse_ready, parse_stop
from netvirt.procs.pids import parse_stat
from netvirt.procs.ready import bound_ports
from netvirt.procs.view import ENTER, etc_problem, helper_argv, private_problem


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30.0), ("500ms", 0.5), ("2m", 120.0), (5, 5.0),
                                               (0.25, 0.25), (".5", 0.5), ("1.5 s", 1.5)])
def test_durations(text: object, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "-1s", 0, -3, True, None, float("inf"), float("nan"), "1e9s",
                                 [1], "9" * 5000])
def test_bad_durations_are_one_located_error(bad: object) -> None:
    with pytest.raises(SpecError, match="duration") as info:
        duration(bad, "ready.timeout")
    assert info.value.key == "ready.timeout"


def test_ready_specs() -> None:
    assert parse_ready({"tcp": 2601, "timeout": "10s"}) == Ready("tcp", 2601, 10.0, 0.1)
    assert parse_ready({"exec": "vtysh -c 'show version'"}).timeout == 30.0
    assert parse_ready({"log": r"^ready \d+", "every": "50ms"}).every == 0.05
    assert parse_ready({"file": "/var/run/frr/zebra.pid"}).describe() == "/var/run/frr/zebra.pid exists"


@pytest.mark.parametrize(("bad", "key", "message"), [
    ({}, "", "exactly one of"),
    ({"tcp": 1, "udp": 2}, "", "exactly one of"),
    ({"tcp": 70000}, "tcp", "port number"),
    ({"tcp": "2601"}, "tcp", "port number"),
    ({"udp": True}, "udp", "port number"),
    ({"log": "(unclosed"}, "log", "not a regular expression"),
    ({"file": "relative/path"}, "file", "absolute"),
    ({"exec": ""}, "exec", "non-empty"),
    ({"tcp": 1, "timout": 3}, "timout", "unknown key"),
    ({"tcp": 1, "timeout": "forever"}, "timeout", "duration"),
    ("tcp 80", "", "must be a map"),
])
def test_bad_ready_specs(bad: object, key: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        parse_ready(bad)
    assert info.value.key == key


def test_stop_specs() -> None:
    assert parse_stop(None).signal == signal.SIGTERM
    assert parse_stop({"signal": "INT", "timeout": "2s"}) == parse_stop({"signal": "SIGINT", "timeout": 2})
    assert parse_stop({"signal": 9}).signal == signal.SIGKILL
    for bad in ({"signal": "TERMINATE"}, {"signal": 999}, {"signal": True}, {"sig": "TERM"}, {"timeout": 0}):
        with pytest.raises(SpecError):
            parse_stop(bad)


def test_stat_lines_with_hostile_command_names() -> None:
    st = parse_stat("4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 98765 2 3 4 5")
    assert (st.pid, st.state, st.ppid, st.pgid, st.sid, st.start) == (4242, "S", 1, 4242, 4242, 98765)


def test_listening_ports_from_proc_net_tables() -> None:
    tcp = ("  sl  local_address rem_address   st tx_queue rx_queue\n"
           "   0: 0100007F:0A51 00000000:0000 0A 00000000:00000000 00:00000000 00000000\n"
           "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000\n")
    assert bound_ports(tcp, "0A") == {2641}  # the established one (0x1F90) does not listen
    assert bound_ports(tcp, None) == {2641, 8080}
    assert bound_ports("header only\n", "0A") == set()
    assert bound_ports("h\n garbage line\n 0: zz:zz 0 0A\n", "0A") == set()


def test_file_and_private_paths_are_checked() -> None:
    assert etc_problem("frr/frr.conf") is None and etc_problem("hosts") is None
    for bad in ("/etc/hosts", "../passwd", "frr/../../x", "", "frr/", "a,b", "a:b", "./x"):
        assert etc_problem(bad), bad
    assert private_problem("/var/run/frr") is None
    for bad in ("var/run", "/", "/proc", "/sys/fs", "/etc", "/a/../b", "/a,b", "/run/netns"):
        assert private_problem(bad), bad


def test_a_node_view_maps_paths_and_builds_the_helper_spec(tmp_path: Path) -> None:
    view = NodeView("nv-lab-r1", tmp_path / "r1", private=("/var/run/frr", "/var/lib/frr"),
                    cgroup_parent=Path("/sys/fs/cgroup/netvirt/lab"))
    assert view.host_path("/var/run/frr/zebra.pid") == str(tmp_path / "r1/private/0_var_run_frr/zebra.pid")
    assert view.host_path("/var/run/frrx") == "/var/run/frrx"  # not under it
    assert view.host_path("/tmp/x") == "/tmp/x"
    spec = view.spec(cwd="/tmp", env={"A": "1"}, status_fd=5)
    assert spec["netns"] == "/run/netns/nv-lab-r1" and spec["scratch"] == str(tmp_path / "r1/mnt")
    assert "etc" not in spec  # no files prepared yet
    assert spec["private"][1] == ["/var/lib/frr", str(tmp_path / "r1/private/1_var_lib_frr")]
    argv = helper_argv(spec, ["zebra", "-d"])
    assert argv[3] == ENTER and json.loads(argv[4]) == spec and argv[5:] == ["zebra", "-d"]


def test_hosts_file_names_every_node_with_an_address() -> None:
    text = hosts_file([("r1", "10.0.0.1"), ("r2", "fd00::2"), ("sw", None)]).decode()
    assert "10.0.0.1\tr1\n" in text and "fd00::2\tr2\n" in text and "sw" not in text
    assert text.startswith("127.0.0.1\tlocalhost\n")
