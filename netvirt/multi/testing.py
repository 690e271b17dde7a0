"""Machines simulated on one kernel, for tests and benchmarks of labs across machines.

Each "machine" is a network namespace of this kernel (sharing its one
filesystem) with its own sshd (Debian's openssh-server) listening on its
underlay address; a "driver" namespace holds the underlay bridge and is where
the driver (``netvirt run``) runs, as a laptop on the machines' LAN would:

    driver ns:  bridge ul 198.18.0.254/24 -- veth m1 .. veth mN
    machine k:  eth0 198.18.0.k/24 (the underlay), sshd on port 22

Nothing is configured in the host's own namespace. Per session: a throwaway
client key, a host key per machine, a known_hosts naming them, an ssh config
(``HOME/.ssh/config`` of a throwaway HOME) that the driver honours because it
is the user's, and sshd configs accepting that key for root. sshd runs in the
foreground (``-D``) and is stopped by its pid (with the session processes it
forked, found by parent pid); the namespaces and files go afterwards.

198.18.0.0/15 is the benchmarking range (RFC 2544): it exists only inside these
namespaces; the shipped multi-machine scenarios use the same addresses.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the directory holding this netvirt package: the machines run this very copy
ROOT = Path(__file__).resolve().parents[2]
SUBNET = "198.18.0"
DRIVER_ADDR = f"{SUBNET}.254"
#: how the machines start netvirt (PATH and PYTHONPATH come from the ssh config's SetEnv)
COMMAND = "python3 -m netvirt"


def _run(*argv: str) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {res.stderr.strip()}")


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            out.append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children first found, then theirs)."""
    out, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            out.append(child)
            todo.append(child)
    return out


@dataclass
class Machine:
    name: str  # m1, m2...
    netns: str
    address: str
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def ssh(self) -> str:
        return f"root@{self.address}"


@dataclass
class NsMachines:
    """``n`` machines with sshd, plus ``dead`` machines (a namespace and an address, no sshd)."""

    n: int = 2
    dead: int = 1
    tag: str = field(default_factory=lambda: f"nvm{os.getpid() % 4096:03x}{secrets.token_hex(2)}")
    machines: list[Machine] = field(default_factory=list)
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="nvm-")))

    @property
    def driver_netns(self) -> str:
        return f"{self.tag}-drv"

    @property
    def home(self) -> Path:
        return self.dir / "home"

    @property
    def ssh_config(self) -> Path:
        return self.home / ".ssh" / "config"

    def machine(self, name: str) -> Machine:
        return next(m for m in self.machines if m.name == name)

    # -- setup -------------------------------------------------------------------
    def start(self) -> NsMachines:
        try:
            self._underlay()
            self._keys()
            for m in self.machines[: self.n]:
                self._start_sshd(m)
        except BaseException:
            self.stop()
            raise
        return self

    def _underlay(self) -> None:
        drv = self.driver_netns
        _run("ip", "netns", "add", drv)
        _run("ip", "-n", drv, "link", "set", "lo", "up")
        _run("ip", "-n", drv, "link", "add", "ul", "type", "bridge")
        _run("ip", "-n", drv, "addr", "add", f"{DRIVER_ADDR}/24", "dev", "ul")
        _run("ip", "-n", drv, "link", "set", "ul", "up")
        for k in range(1, self.n + self.dead + 1):
            m = Machine(f"m{k}", f"{self.tag}-m{k}", f"{SUBNET}.{k}")
            self.machines.append(m)
            _run("ip", "netns", "add", m.netns)
            _run("ip", "-n", m.netns, "link", "set", "lo", "up")
            _run("ip", "-n", drv, "link", "add", m.name, "type", "veth", "peer", "name", "eth0",
                 "netns", m.netns)
            _run("ip", "-n", drv, "link", "set", m.name, "master", "ul", "up")
            _run("ip", "-n", m.netns, "addr", "add", f"{m.address}/24", "dev", "eth0")
            _run("ip", "-n", m.netns, "link", "set", "eth0", "up")

    def _keys(self) -> None:
        ssh_dir = self.home / ".ssh"
        ssh_dir.mkdir(parents=True, mode=0o700)
        key = str(ssh_dir / "id_ed25519")
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "netvirt-test", "-f", key)
        (self.dir / "authorized_keys").write_text((ssh_dir / "id_ed25519.pub").read_text())
        known = []
        for m in self.machines:
            host_key = self.dir / f"host_{m.name}"
            _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key))
            pub = " ".join(Path(f"{host_key}.pub").read_text().split()[:2])
            known.append(f"{m.address} {pub}\n{self.tag}-{m.name} {pub}")
        (ssh_dir / "known_hosts").write_text("\n".join(known) + "\n")
        # what a user's ~/.ssh/config would say; PYTHONPATH and PATH make the machines run
        # this checkout's netvirt with this interpreter (sshd accepts exactly these)
        env = f"PYTHONPATH={ROOT} PATH={Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin"
        aliases = "".join(f"Host {self.tag}-{m.name}\n  HostName {m.address}\n" for m in self.machines)
        self.ssh_config.write_text(
            f"{aliases}"
            f"Host {SUBNET}.* {self.tag}-*\n"
            f"  User root\n"
            f"  IdentityFile {ssh_dir / 'id_ed25519'}\n"
            f"  UserKnownHostsFile {ssh_dir / 'known_hosts'}\n"
            f"  ConnectTimeout 5\n"
            f"  SetEnv {env}\n")

    def _start_sshd(self, m: Machine) -> None:
        cfg = self.dir / f"sshd_{m.name}.conf"
        cfg.write_text(
            f"ListenAddress {m.address}:22\n"
            f"HostKey {self.dir / f'host_{m.name}'}\n"
            "PidFile none\n"
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "UsePAM no\nStrictModes no\nPrintMotd no\nLogLevel ERROR\n"
            "MaxStartups 64\nMaxSessions 64\n"
            "AcceptEnv PYTHONPATH PATH\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        log = open(self.dir / f"sshd_{m.name}.log", "wb")  # noqa: SIM115 - the child holds it
        with log:
            m.sshd = subprocess.Popen(
                ["nsenter", f"--net=/run/netns/{m.netns}", "/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if m.sshd.poll() is not None:
                raise RuntimeError(f"sshd of {m.name} exited: {(self.dir / f'sshd_{m.name}.log').read_text()}")
            out = subprocess.run(["nsenter", f"--net=/run/netns/{m.netns}", "ss", "-Hltn", "sport", "=", ":22"],
                                 capture_output=True, text=True).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd of {m.name} did not listen within 10 s")

    # -- use -----------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """Environment of a driver run: this checkout, the throwaway HOME (its ssh config)."""
        return {**os.environ, "HOME": str(self.home), "PYTHONPATH": str(ROOT)}

    def driver_argv(self, *args: str) -> list[str]:
        """``python -m netvirt ARGS`` inside the driver namespace."""
        return ["nsenter", f"--net=/run/netns/{self.driver_netns}", sys.executable, "-m", "netvirt", *args]

    def netvirt(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.driver_argv(*args), capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT, env=self.env())

    def machines_yaml(self, names: tuple[str, ...] = ("m1", "m2")) -> str:
        lines = ["machines:"]
        for name in names:
            m = self.machine(name)
            lines.append(f"  {m.name}: {{ssh: \"{m.ssh}\", underlay: {m.address}, command: \"{COMMAND}\"}}")
        return "\n".join(lines) + "\n"

    def adapt(self, ms: Any, command: str = COMMAND) -> Any:
        """``ms`` (a MultiScenario) with every machine started by ``command`` (this checkout)."""
        from dataclasses import replace

        machines = {k: replace(m, command=command) for k, m in ms.layout.machines.items()}
        return replace(ms, layout=replace(ms.layout, machines=machines))

    def driver(self, ms: Any, **kw: Any) -> Any:
        """An in-process driver (MultiLab) reaching the machines from the driver's namespace."""
        from netvirt.multi.driver import MultiLab

        return MultiLab(ms, ssh_config=[str(self.ssh_config)], netns=self.driver_netns, **kw)

    def lab_traces(self, lab: str) -> list[str]:
        """What a lab left anywhere: namespaces of its shares, state records of it and them."""
        out = sorted(n for n in os.listdir("/run/netns") if n.startswith(f"nv-{lab}-"))
        with contextlib.suppress(FileNotFoundError):
            out += sorted(f"/run/netvirt/{d}" for d in os.listdir("/run/netvirt")
                          if d == lab or d.startswith(f"{lab}-"))
        return out

    # -- teardown --------------------------------------------------------------------
    def stop(self) -> None:
        for m in self.machines:
            if m.sshd is None:
                continue
            below = descendants(m.sshd.pid)  # its per-connection processes (and what they run)
            m.sshd.terminate()
            try:
                m.sshd.wait(5)
            except subprocess.TimeoutExpired:
                m.sshd.kill()
                m.sshd.wait(5)
            for pid in below:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            m.sshd = None
        for m in self.machines:
            subprocess.run(["ip", "netns", "del", m.netns], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.driver_netns], capture_output=True)
        self.machines.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
