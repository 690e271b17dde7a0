"""The impaired-link benchmark's smoke mode runs, reports its figures and leaves nothing."""

from __future__ import annotations

import pytest

from tests.kernel.test_benchmarks_smoke import results, run_benchmark

pytestmark = pytest.mark.root


def test_impair_benchmark_smoke() -> None:
    doc, text = run_benchmark("impair", timeout=240)
    res = results(doc)
    for ms in (1, 10, 100):
        assert f"delay-{ms}ms-p50-error" in res
    assert set(doc["jitter_fit"]) == {"uniform", "normal", "pareto", "paretonormal"}
    assert set(doc["loss"]) == {"1%", "10%", "gilbert-elliott"}
    for loss in doc["loss"].values():  # what the receiver missed is exactly what the engine dropped
        assert loss["lost"] == loss["engine_dropped"]
    assert doc["cpu_at_rest_percent"] < 5
    assert res["tcp-impaired-10ms"]["n"] == 1 and res["tcp-veth"]["n"] == 1
    assert "RATIO impaired-10ms/veth" in text
