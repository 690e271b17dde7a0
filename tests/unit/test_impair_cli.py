"""The ``link`` verb's options become the ``impair:`` keys (pure)."""

from __future__ import annotations

import argparse

import pytest

from netvirt.errors import UsageError
from netvirt.impair import conditions_from_keys
from netvirt.impair.cli import add_arguments, format_stats, keys_from_args


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(["lab1", "a:eth0", *argv])


def test_set_options_are_the_scenario_keys() -> None:
    keys = keys_from_args(parse("set", "--delay", "20ms", "--loss", "1%", "--rate", "10mbit", "--limit", "50"))
    assert keys == {"delay": "20ms", "loss": "1%", "rate": "10mbit", "limit": 50}
    assert conditions_from_keys(keys) is not None
    ge = keys_from_args(parse("set", "--loss-ge", "1%,20%", "--delay", "5ms", "--reorder", "10%", "--gap", "3"))
    assert ge["loss"] == {"model": "gilbert-elliott", "p": "1%", "r": "20%"}
    assert ge["reorder"] == {"probability": "10%", "gap": 3}
    assert conditions_from_keys(ge) is not None
    with pytest.raises(UsageError):
        keys_from_args(parse("set", "--loss", "1%", "--loss-ge", "1%"))
    with pytest.raises(UsageError):
        keys_from_args(parse("set", "--gap", "3"))


def test_show_output() -> None:
    d = {"conditions": {"delay": "20ms"}, "passed": 5, "dropped": 1, "dropped_loss": 1, "dropped_limit": 0,
         "dropped_down": 0, "duplicated": 0, "corrupted": 0, "reordered": 0, "queue": 0,
         "delay_p50_ms": 20.01, "delay_p99_ms": 20.2}
    text = format_stats({"backend": "userspace (tap pair)", "carrier": True,
                         "directions": {"a:eth0": d, "b:eth0": {**d, "conditions": {}}}})
    assert "leaving a:eth0: delay 20ms" in text and "leaving b:eth0: no conditions" in text
    assert "p50 20.010 ms" in text
