"""The benchmarks' smoke mode: each runs in a second or two, prints its figures, leaves nothing.

Each benchmark runs as a user runs it (``python -m benchmarks.X --smoke --json``
from the repository root) with a ``--prefix`` from ``unique()``, so the
autouse ``no_leaks`` check of conftest sees any namespace left behind. No
Mininet and no OpenVPN are needed; the wire needs iperf3 (installed by .ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import unique
from tests.kernel.helpers import ROOT


def run_benchmark(module: str, *args: str, timeout: float = 90) -> tuple[dict[str, Any], str]:
    res = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", "--smoke", "--json",
                          "--prefix", unique(), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, (f"benchmarks.{module} -> {res.returncode}\n"
                                 f"{res.stdout}\n{res.stderr}")
    doc = json.loads(res.stdout)
    assert doc["benchmark"] == module
    assert doc["failures"] == []
    assert doc["machine"]["nproc"] == str(os.cpu_count())
    return doc, res.stderr  # stderr: the text lines (RESULT/RATIO) of --json mode


def results(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in doc["results"]}


@pytest.mark.root
def test_build_smoke() -> None:
    doc, text = run_benchmark("build")
    res = results(doc)
    for side in ("netvirt", "ipbatch"):
        for what in ("build", "teardown", "settled"):
            r = res[f"{side}-N4-{what}"]
            assert r["n"] == 1 and 0 < r["median"] < 30, r
        # settled counts the kernel's deferred cleanup: never shorter than the teardown call
        assert res[f"{side}-N4-settled"]["median"] >= res[f"{side}-N4-teardown"]["median"]
    assert all(d["ping_ok"] for d in doc["runs"]["netvirt-N4"] + doc["runs"]["ipbatch-N4"])
    ratios = {r["name"]: r for r in doc["ratios"]}
    assert ratios["build-N4 netvirt/ip-batch"]["value"] > 0
    assert "mininet-N4-build" not in res  # smoke mode never needs Mininet
    assert "RESULT netvirt-N4-build: median=" in text
    assert "RATIO build-N4 netvirt/ip-batch: " in text


@pytest.mark.root
@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed (see .ci/run)")
def test_wire_smoke() -> None:
    doc, text = run_benchmark("wire")
    res = results(doc)
    for name in ("wire-offload-tcp", "wire-nooffload-tcp", "veth-tcp"):
        assert res[name]["n"] == 1 and res[name]["median"] > 1, res[name]  # Mbit/s
    ratios = {r["name"]: r for r in doc["ratios"]}
    assert ratios["wire-offload/veth"]["target"] == ">= 0.5"
    assert "RESULT wire-offload-tcp: median=" in text
    assert "forwarder moved" in text


def test_startup_smoke() -> None:
    doc, text = run_benchmark("startup")
    res = results(doc)
    for name in ("python-pass", "netvirt-help", "netvirt-validate", "netvirt-validate-star200"):
        assert res[f"startup-{name}"]["n"] == 1
    assert {t["name"] for t in doc["targets"]} == {"netvirt-help absolute",
                                                     "netvirt-validate absolute",
                                                     "netvirt-validate-star200 absolute"}
    assert "RESULT startup-netvirt-help: median=" in text


@pytest.mark.root
def test_frr_ring_smoke() -> None:
    doc, text = run_benchmark("frr_ring")
    r = results(doc)
    assert 0 < r["ring-build"]["median"] < r["ring-first-full-ping"]["median"] < 60
    assert "RESULT ring-first-full-ping" in text


@pytest.mark.root
def test_exec_smoke() -> None:
    doc, _ = run_benchmark("exec")
    r = results(doc)
    assert 0 < r["exec-launcher-uvloop"]["median"] < 5 and 0 < r["exec-ipnetns-asyncio"]["median"] < 5


@pytest.mark.root
def test_job_smoke() -> None:
    doc, text = run_benchmark("job")
    res = results(doc)
    for side in ("netvirt", "ipbatch"):
        job, build = res[f"{side}-N4-job"], res[f"{side}-N4-build"]
        assert job["n"] == 1 and 0 < job["median"] < 30, job
        # the whole job (process start to exit) holds the build, never less
        assert 0 < build["median"] < job["median"], (build, job)
        assert res[f"{side}-N4-cpu"]["median"] > 0
        assert all(d["ping_ok"] for d in doc["runs"][f"{side}-N4"])
    assert 0 < res["ipbatch-N4-root"]["median"] < res["ipbatch-N4-build"]["median"]
    ratios = {r["name"]: r for r in doc["ratios"]}
    assert ratios["job-N4 netvirt/ip-batch"]["value"] > 0
    assert "mininet-N4-job" not in res  # smoke mode never needs Mininet
    assert "RATIO job-N4 netvirt/ip-batch: " in text
