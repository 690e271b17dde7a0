"""benchmarks.multi in smoke mode: it runs, reports its figures, leaves nothing."""

from __future__ import annotations

import pytest

from tests.kernel.test_benchmarks_smoke import results, run_benchmark

pytestmark = pytest.mark.root


def test_multi_benchmark_smoke() -> None:
    doc, text = run_benchmark("multi", timeout=180)
    got = results(doc)
    assert set(got) == {"build-split", "build-split-shares", "build-local", "tcp-crossing", "tcp-veth"}
    assert got["tcp-crossing"]["median"] > 0
    assert got["build-split"]["median"] > got["build-split-shares"]["median"]
    assert "RATIO crossing/veth throughput" in text
