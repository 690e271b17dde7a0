"""Bad input never crashes, never hangs, and is always a located error (issue 9, items 10-11).

Every bad file gives ScenarioError (the CLI: exit 2 and one located line per
problem) in bounded time and memory. What validation accepts, the build can do.
"""

from __future__ import annotations

import contextlib
import copy
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import netvirt
from netvirt.errors import ScenarioError

ROOT = Path(__file__).resolve().parents[2]
GOOD = sorted([*ROOT.glob("scenarios/*.yaml"), *ROOT.glob("tests/data/good/*.yaml")])


def validate_cli(path: Path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netvirt", "validate", str(path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "NETVIRT_PY_SCENARIO_SECONDS": "2"})


def assert_located_error(res: subprocess.CompletedProcess[str], path: Path) -> None:
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"netvirt: error: {path}"), res.stderr


# -- YAML that broke the parser or the validator --------------------------------
BAD_YAML = [
    "name: x\nnodes:\n  a:\n    interfaces:\n      eth0: {mtu: 0x" + "f" * 5000 + "}\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      eth0: {mtu: 1" + "0" * 5000 + "}\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      tun0: {kind: tun, program: {name: 1" + "0" * 5000 + "}}\n",
    "name: x\nnodes: " + "[" * 500 + "]" * 500 + "\n",
    "name: x\nnodes: " + "{a: " * 500 + "1" + "}" * 500 + "\n",
    "name: " + "x" * 100000 + "\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      br0: {kind: bridge, ageing_time: .inf}\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      br0: {kind: bridge, forward_delay: .nan}\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      tap0: {kind: tap, persist: true, owner: 4294967296}\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      tap0: {kind: tap, owner: 1000}\n",
    "name: x\nnodes:\n  a: {}\nsteps:\n  - wait: .inf\n",
    "name: x\nnodes:\n  a: {}\nsteps:\n  - wait: 1e300\n",
    "name: x\nnodes:\n  a:\n    interfaces:\n      tun0: {kind: tun, mtu: 1000, addresses: [fd00::1/64]}\n",
    "name: x\nnodes:\n  a: {}\nsteps:\n  - exec: {node: a, cmd: 'true', expect: {stdout: '['}}\n",
]


@pytest.mark.parametrize("text", BAD_YAML, ids=[f"yaml{i}" for i in range(len(BAD_YAML))])
def test_known_bad_yaml_is_a_scenario_error(text: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ScenarioError) as info:
        netvirt.load_text(text)
    assert time.monotonic() - t0 < 2.0
    assert all(p.message for p in info.value.problems)


def test_a_bridge_with_more_ports_than_the_kernel_allows_is_rejected() -> None:
    from tests.data.good.star import scenario as star  # type: ignore[import-not-found]

    raw = star(n=1025)
    with pytest.raises(ScenarioError) as info:
        netvirt.scenario_from_dict(raw) if hasattr(netvirt, "scenario_from_dict") else _validate(raw)
    assert "1024" in str(info.value)


def _validate(raw: dict[str, Any]) -> Any:
    return netvirt.load_text(yaml.safe_dump(raw))


# -- files that are not files -----------------------------------------------------
def test_a_fifo_a_device_and_a_huge_file_are_rejected_in_bounded_time(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.yaml"
    zero.symlink_to("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n# " + "y" * (20 << 20) + "\n")
    for path in (fifo, zero, big):
        t0 = time.monotonic()
        assert_located_error(validate_cli(path, timeout=20), path)
        assert time.monotonic() - t0 < 10


# -- Python scenarios that misbehave ----------------------------------------------
PY_BAD = {
    "exit0": "import sys\ndef scenario():\n    sys.exit(0)\n",
    "exit7": "import sys\ndef scenario():\n    sys.exit(7)\n",
    "exit_at_import": "import sys\nsys.exit(0)\n",
    "base": "class E(BaseException): pass\ndef scenario():\n    raise E('boom')\n",
    "genexit": "def scenario():\n    raise GeneratorExit\n",
    "dictclass": "class scenario(dict):\n    pass\n",
    "badrepr": ("class X:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n"
                "    __str__ = __repr__\n"
                "def scenario():\n    return {'name': 'x', 'nodes': {'a': {'interfaces': X()}}}\n"),
    "badkey": ("class X:\n    def __repr__(self):\n        raise RuntimeError('no repr')\n"
               "    def __hash__(self):\n        return 1\n"
               "def scenario():\n    return {'name': 'x', 'nodes': {X(): {}}}\n"),
    "loops": "def scenario():\n    while True:\n        pass\n",
    "sleeps": "import time\ndef scenario():\n    time.sleep(3600)\n",
    "loops_at_import": "while True:\n    pass\n",
}


@pytest.mark.parametrize("name", sorted(PY_BAD))
def test_misbehaving_python_scenarios_are_located_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.py"
    path.write_text(PY_BAD[name])
    t0 = time.monotonic()
    res = validate_cli(path, timeout=60)
    assert_located_error(res, path)
    assert time.monotonic() - t0 < 20


# -- generated junk: 2000 mutations of the shipped scenarios ------------------------
JUNK: list[Any] = [None, True, -1, 0, 2**64, 10**30, -(2**63), 1e308, float("inf"), float("nan"),
                   "", " ", "\x00", "a" * 300, "x:y:z", "../..", "10.0.0.1/99", "::::", "ff:ff",
                   [], [None], {}, {"x": 1}, [[[]]], {"": None}, "0x" + "f" * 40, "1e999", "-0",
                   "eth0", "lo", "br0", "a:eth0", "tun", "tap", "bridge", "sink"]


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _leaves(v, (*path, i))
    return out


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


def _mutations(count: int, seed: int = 9) -> list[str]:
    rng = random.Random(seed)
    bases = [yaml.safe_load(p.read_text()) for p in GOOD]
    out = []
    for _ in range(count):
        raw = copy.deepcopy(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            spot = rng.choice(_leaves(raw))
            choice = rng.random()
            if choice < 0.7:
                raw = _set(raw, spot, copy.deepcopy(rng.choice(JUNK)))
            elif choice < 0.85 and spot and isinstance(raw, dict):
                parent = raw
                for key in spot[:-1]:
                    parent = parent[key]
                if isinstance(parent, dict):
                    parent[rng.choice(["kind", "mtu", "master", "program", "to", "via", "x"])] = \
                        copy.deepcopy(rng.choice(JUNK))
            else:
                raw = _set(raw, spot, {"k": copy.deepcopy(rng.choice(JUNK))})
        try:
            out.append(yaml.safe_dump(raw, allow_unicode=False))
        except (yaml.YAMLError, TypeError, ValueError):
            continue
    return out


def test_two_thousand_generated_bad_files_never_crash_or_hang() -> None:
    texts = _mutations(2000)
    assert len(texts) > 1900
    crashes: list[str] = []
    slow = 0
    t_all = time.monotonic()
    for text in texts:
        t0 = time.monotonic()
        try:
            netvirt.load_text(text)
        except ScenarioError as e:
            str(e)  # the message renders
        except Exception as e:  # noqa: BLE001 - that is what this test looks for
            crashes.append(f"{type(e).__name__}: {e}\n{text[:300]}")
        if time.monotonic() - t0 > 1.0:
            slow += 1
    assert not crashes, crashes[:3]
    assert slow == 0
    assert time.monotonic() - t_all < 60


def test_validation_is_near_linear_in_the_number_of_nodes() -> None:
    from tests.data.good.star import scenario as star  # type: ignore[import-not-found]

    def cost(n: int) -> float:
        text = yaml.safe_dump(star(n=n))
        t0 = time.perf_counter()
        with contextlib.suppress(ScenarioError):  # past 1024 ports per bridge: quick to say so
            netvirt.load_text(text)
        return time.perf_counter() - t0

    # the best of three each: a loaded machine slows single runs, not the best one
    small = min(cost(500) for _ in range(3))
    large = min(cost(5000) for _ in range(3))
    # 10x the nodes: about 10x the time here (YAML parsing dominates); quadratic would be 100x.
    # The bound is loose because a loaded machine slows the large case more than the small one.
    assert large < small * 50, (small, large)


# -- located, one line, and what the build can do ---------------------------------
LOCATED = {
    # text: (path, line) of the one problem expected
    "name: x\nnodes:\n  a:\n    interfaces:\n      eth0: {mtu: 1" + "0" * 5000 + "}\n":
        ("nodes.a.interfaces.eth0.mtu", 5),
    "name: x\nnodes:\n  a: {}\nsteps:\n  - connect: {from: a, to: null}\n": ("steps[0].connect.to", 5),
    "name: x\nnodes:\n  a: {}\nsteps:\n  - ping: {from: null, to: 10.0.0.1}\n": ("steps[0].ping.from", 5),
    "name: x\nnodes:\n  a: {}\nsteps:\n  - exec: {node: a, cmd: 'true', timeout: 1e9}\n":
        ("steps[0].exec.timeout", 5),
    "name: x\nnodes:\n  a:\n    interfaces:\n      br0: {kind: bridge, ageing_time: 42949673}\n":
        ("nodes.a.interfaces.br0.ageing_time", 5),
    "name: x\nnodes:\n  a:\n    interfaces:\n      tap0: {kind: tap, persist: true, group: -1}\n":
        ("nodes.a.interfaces.tap0.group", 5),
    ("name: x\nnodes:\n  a:\n    interfaces:\n      br0: {kind: bridge, addresses: [fd00::1/64]}\n"
     "      p0: {master: br0, mtu: 1000}\n  b: {}\nlinks:\n  - [a:p0, b:eth0]\n"):
        ("nodes.a.interfaces.p0.mtu", 6),
    ("name: x\nnodes:\n  a:\n    interfaces:\n      eth0: {}\n      mv0: {kind: macvlan, parent: eth0, "
     "mtu: 9000}\n  b: {}\nlinks:\n  - [a:eth0, b:eth0]\n"): ("nodes.a.interfaces.mv0.mtu", 6),
    ("name: x\nnodes:\n  a:\n    interfaces:\n      eth0: {addresses: [fd00::1/64]}\n  b: {}\n"
     "links:\n  - {endpoints: [a:eth0, b:eth0], mtu: 1200}\n"): ("nodes.a.interfaces.eth0", 5),
}


@pytest.mark.parametrize("text", list(LOCATED), ids=[f"located{i}" for i in range(len(LOCATED))])
def test_limits_of_the_build_are_located_one_line_problems(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        netvirt.load_text(text, source="t.yaml")
    (p,) = info.value.problems
    assert (p.path, p.line) == LOCATED[text], p
    assert "\n" not in str(p) and len(str(p)) < 300


def test_what_the_build_can_do_is_accepted() -> None:
    netvirt.load_text("name: x\nnodes:\n  a:\n    interfaces:\n"
                      "      br0: {kind: bridge, ageing_time: 42949672, forward_delay: 0}\n"
                      "      tap0: {kind: tap, persist: true, owner: 4294967294, group: 0}\n"
                      "      tun0: {kind: tun, mtu: 1000, addresses: [10.0.0.1/24]}\n"
                      "steps:\n  - wait: 86400\n")


def test_yaml_nested_beyond_the_c_composer_stack_is_a_located_error() -> None:
    depth = 200_000  # crashed the process (SIGSEGV in libyaml's composer) before the depth pass
    with pytest.raises(ScenarioError) as info:
        netvirt.load_text("name: x\nnodes: " + "[" * depth + "]" * depth + "\n")
    (p,) = info.value.problems
    # netvirt's own depth pass says "64 levels"; a newer libyaml stops first with its own limit
    assert p.line == 2 and ("64 levels" in p.message or "nesting depth" in p.message), p


def test_describe_never_raises() -> None:
    from netvirt.scenario.checker import describe

    class Bad:
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    for value in (int("f" * 5000, 16), -(10**4000), "x" * 10**6, Bad(), float("nan")):
        assert len(describe(value)) <= 45
