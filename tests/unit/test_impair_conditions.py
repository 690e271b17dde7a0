"""The ``impair:`` keys: units, models, per-endpoint maps and located problems (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netvirt.errors import UsageError
from netvirt.impair import Conditions, Loss, conditions_from_keys, parse_conditions, parse_impair
from netvirt.impair.units import format_rate, format_time, parse_percent, parse_rate, parse_time


@pytest.mark.parametrize(("text", "ns"), [("20ms", 20_000_000), ("0.5ms", 500_000), ("1s", 10**9),
                                          ("250us", 250_000), (20, 20_000_000), (1.5, 1_500_000),
                                          ("100 ms", 100_000_000), ("7ns", 7)])
def test_times(text: object, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize("bad", ["20 parsecs", "-1ms", "", True, None, [1], "2h"])
def test_bad_times(bad: object) -> None:
    with pytest.raises(ValueError, match="time"):
        parse_time(bad)


@pytest.mark.parametrize(("text", "bits"), [("10mbit", 10**7), ("500kbit", 500_000), ("1gbit", 10**9),
                                            ("1mibit", 2**20), ("1mbps", 8 * 10**6), ("64kbit", 64_000),
                                            ("100Mbit", 10**8)])
def test_rates(text: str, bits: int) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize("bad", ["fast", "10 furlongs", "0bit", "-5mbit", False])
def test_bad_rates(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_rate(bad)


def test_percentages() -> None:
    assert parse_percent("1%") == pytest.approx(0.01)
    assert parse_percent("0.5%") == pytest.approx(0.005)
    assert parse_percent(25) == pytest.approx(0.25)
    for bad in ("101%", "-1%", "lots", None):
        with pytest.raises(ValueError):
            parse_percent(bad)


def test_formatting_round_trips() -> None:
    assert format_time(20_000_000) == "20ms" and format_time(500_000) == "500us"
    assert format_rate(10**7) == "10mbit" and format_rate(10**9) == "1gbit"
    cond, probs = parse_conditions({"delay": "20ms", "jitter": "2ms", "loss": "1%", "rate": "10mbit"}, "x")
    assert not probs and cond is not None
    again, probs = parse_conditions(cond.to_dict(), "x")
    assert again == cond


def test_every_key() -> None:
    cond, probs = parse_conditions({
        "delay": "50ms", "jitter": "5ms", "distribution": "normal",
        "loss": {"model": "gilbert-elliott", "p": "1%", "r": "20%", "h": "10%", "k": "99%"},
        "duplicate": "2%", "corrupt": "0.1%", "reorder": {"probability": "25%", "gap": 5},
        "rate": "1mbit", "limit": 100, "seed": 42}, "links[0].impair")
    assert probs == []
    assert cond == Conditions(delay=50_000_000, jitter=5_000_000, distribution="normal",
                              loss=Loss("gilbert-elliott", 0.01, 0.2, 0.1, 0.99), duplicate=0.02,
                              corrupt=0.001, reorder=0.25, gap=5, rate=10**6, limit=100, seed=42)
    assert cond.per_packet


def test_gilbert_elliott_defaults_are_tc_s() -> None:
    cond, _ = parse_conditions({"loss": {"model": "gilbert-elliott", "p": "5%"}}, "x")
    assert cond is not None and cond.loss == Loss("gilbert-elliott", 0.05, 0.95, 0.0, 1.0)
    assert cond.loss.mean() == pytest.approx(0.05)  # r = 1 - p, h = 0: Bernoulli 5%
    ge = Loss("gilbert-elliott", 0.01, 0.2, 0.0, 1.0)
    assert ge.mean() == pytest.approx(0.01 / 0.21)


def test_all_problems_at_once_with_their_place() -> None:
    cond, probs = parse_conditions({"delay": "soon", "loss": "200%", "colour": "red",
                                    "reorder": "10%", "distribution": "normal", "limit": 0,
                                    "rate": {"trace": 3}}, "links[1].impair")
    assert cond is None
    where = {p.path for p in probs}
    assert where == {"links[1].impair.delay", "links[1].impair.loss", "links[1].impair.colour",
                     "links[1].impair.reorder", "links[1].impair.distribution", "links[1].impair.limit",
                     "links[1].impair.rate"}
    text = " ".join(p.message for p in probs)
    assert "needs a delay" in text and "needs a jitter" in text and "unknown key 'colour'" in text


def test_loss_models_checked() -> None:
    _, probs = parse_conditions({"loss": {"model": "markov", "p": "1%"}}, "i")
    assert [p.path for p in probs] == ["i.loss.model"]
    _, probs = parse_conditions({"loss": {"model": "gilbert-elliott", "r": "1%"}}, "i")
    assert [p.path for p in probs] == ["i.loss.p"]
    _, probs = parse_conditions({"loss": {"model": "random", "p": "1%", "h": "3%"}}, "i")
    assert [p.path for p in probs] == ["i.loss.h"]


def test_reorder_defaults_gap_one_like_tc() -> None:
    cond, _ = parse_conditions({"delay": "10ms", "reorder": "25%"}, "i")
    assert cond is not None and (cond.reorder, cond.gap) == (0.25, 1)


def test_per_endpoint_and_both(tmp_path: Path) -> None:
    eps = ("a:eth1", "c:eth0")
    both, probs = parse_impair({"delay": "20ms"}, eps, "links[0].impair")
    assert not probs and both["a:eth1"] == both["c:eth0"] == Conditions(delay=20_000_000)
    one, probs = parse_impair({"a:eth1": {"delay": "50ms"}, "c:eth0": {"loss": "1%"}}, eps, "l")
    assert not probs and one["a:eth1"].delay == 50_000_000 and one["c:eth0"].loss == Loss("random", 0.01)
    _, probs = parse_impair({"a:eth1": {"delay": "50ms"}, "b:eth9": {"loss": "1%"}}, eps, "l")
    assert [p.path for p in probs] == ["l.b:eth9"]
    _, probs = parse_impair({"c:eth0": {"delay": "x"}}, eps, "l")
    assert [p.path for p in probs] == ["l.c:eth0.delay"]


def test_trace_file_relative_to_scenario(tmp_path: Path) -> None:
    (tmp_path / "link.trace").write_text("1\n1\n2\n5\n")
    cond, probs = parse_conditions({"rate": {"trace": "link.trace"}}, "i", base_dir=tmp_path)
    assert not probs and cond is not None and cond.trace == (1, 1, 2, 5)
    assert cond.to_dict() == {"rate": {"trace": "link.trace"}}
    _, probs = parse_conditions({"rate": {"trace": "missing.trace"}}, "i", base_dir=tmp_path)
    assert "not found" in probs[0].message
    (tmp_path / "bad.trace").write_text("5\n3\n")
    _, probs = parse_conditions({"rate": {"trace": "bad.trace"}}, "i", base_dir=tmp_path)
    assert "never decrease" in probs[0].message


def test_keyword_form_for_the_api() -> None:
    assert conditions_from_keys({}) is None
    assert conditions_from_keys({"delay": "20ms", "loss": "1%"}) == Conditions(
        delay=20_000_000, loss=Loss("random", 0.01))
    with pytest.raises(UsageError, match="impair.delay"):
        conditions_from_keys({"delay": "whenever"})


def test_idle_conditions() -> None:
    assert Conditions().idle and Conditions(limit=5, seed=3).idle
    assert not Conditions(delay=1).idle


def test_bounds_of_the_measuring_steps() -> None:
    from netvirt.impair.expect import parse_bound

    b = parse_bound("40ms..44ms", "time")
    assert b.holds(40e6) and b.holds(44e6) and not b.holds(44.1e6) and not b.holds(39e6)
    assert parse_bound("60ms", "time").holds(59e6) and not parse_bound("60ms", "time").holds(61e6)
    loss = parse_bound("<= 15%", "percent")
    assert loss.holds(0.15) and not loss.holds(0.151)
    assert not parse_bound("< 15%", "percent").holds(0.15)
    rate = parse_bound("9mbit..11mbit", "rate")
    assert rate.holds(10e6) and not rate.holds(12e6)
    assert parse_bound("9mbit", "rate").holds(20e6) and not parse_bound("> 9mbit", "rate").holds(9e6)
    for bad in ("44ms..40ms", "soon", "<= lots"):
        with pytest.raises(ValueError):
            parse_bound(bad, "time")
