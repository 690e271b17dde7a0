"""The pure model of SPEC.md section 9: files, private, processes, hosts, lo, retry (no root)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from netvirt.procs.spec import Ready, Stop
from netvirt.scenario import load, load_text
from netvirt.scenario.model import Retry

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_frr_ring_reads_as_the_model_says() -> None:
    s = load(ROOT / "scenarios" / "frr-ospf-ring.yaml")
    r1 = s.nodes["r1"]
    assert [str(a) for a in r1.interfaces["lo"].addresses] == ["10.255.0.1/32"]
    assert r1.interfaces["lo"].kind == "loopback"
    assert r1.private == ("/var/run/frr",)
    assert set(r1.files) == {"frr/daemons", "frr/frr.conf"}
    assert r1.files["frr/frr.conf"].read().startswith(b"! r1 of the OSPF ring")
    (frr,) = r1.processes
    assert frr.name == "frr" and frr.argv == ["sh", "-c", "/usr/lib/frr/frrinit.sh start"]
    assert frr.ready == Ready("exec", "vtysh -c 'show ip ospf'", 30.0, 0.1)
    assert frr.stop == Stop(15, 5.0)
    assert s.hosts is True and str(r1.first_address()) == "10.255.0.1"
    assert s.steps[0].retry == Retry(60.0, 0.2) and s.steps[8].retry is None


def test_inline_files_argv_commands_env_and_no_hosts() -> None:
    s = load_text(textwrap.dedent("""
        name: inline
        hosts: false
        nodes:
          a:
            files:
              hosts: "10.0.0.9 elsewhere\\n"
              app/app.conf: {content: "port 80\\n"}
            processes:
              - {name: web, cmd: [python3, -m, http.server, "80"], env: {DEBUG: 1}, cwd: /tmp,
                 ready: {tcp: 80, timeout: 2s}, stop: {signal: INT, timeout: 500ms}}
              - {name: side, cmd: "sleep 1"}
    """))
    a = s.nodes["a"]
    assert s.hosts is False
    assert a.files["hosts"].read() == b"10.0.0.9 elsewhere\n"
    web, side = a.processes
    assert web.argv == ["python3", "-m", "http.server", "80"] and web.env == {"DEBUG": "1"}
    assert web.cwd == "/tmp" and web.ready == Ready("tcp", 80, 2.0, 0.1) and web.stop == Stop(2, 0.5)
    assert side.ready is None and side.stop == Stop()
    assert a.first_address() is None


def test_a_scenario_with_processes_crosses_to_another_machine_whole() -> None:
    from netvirt.multi.wire import decode, dumps, encode, loads

    for name in ("frr-ospf-ring.yaml", "dhcp-dnsmasq.yaml", "frr-bgp-two-as.yaml"):
        s = load(ROOT / "scenarios" / name)
        assert decode(loads(dumps({"s": encode(s)}))["s"]) == s  # file contents included
