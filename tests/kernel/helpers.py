"""Small helpers shared by the real-kernel tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"


def netvirt(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``python -m netvirt ARGS`` as a user would."""
    res = subprocess.run([sys.executable, "-m", "netvirt", *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if check and res.returncode != 0:
        raise AssertionError(f"netvirt {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}")
    return res


def netns_of_lab(lab: str) -> list[str]:
    try:
        return sorted(n for n in os.listdir("/run/netns") if n.startswith(f"nv-{lab}-"))
    except FileNotFoundError:
        return []


def assert_lab_gone(lab: str) -> None:
    assert netns_of_lab(lab) == [], f"namespaces of {lab} left: {netns_of_lab(lab)}"
    assert not Path(f"/run/netvirt/{lab}").exists(), f"state record of {lab} left"
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    assert f"netvirt:{lab}" not in links, f"host links tagged for {lab} left"
