"""The agent on its own (no SSH): JSON lines on a pipe, as the driver speaks them."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from netvirt.multi.testing import ROOT

pytestmark = pytest.mark.root


def test_agent_answers_and_ends_with_its_input() -> None:
    lines = [{"id": 1, "op": "hello", "underlay": "127.0.0.1"},
             {"id": 2, "op": "frobnicate"},
             {"id": 3, "op": "step", "step": {
                 "$": "netvirt.scenario.model:StepSpec", "kind": "wait", "place": "", "line": None,
                 "params": {"$": "netvirt.scenario.model:WaitStep", "seconds": 0}}}]
    text = "".join(json.dumps(x) + "\n" for x in lines) + "not json\n"
    res = subprocess.run([sys.executable, "-m", "netvirt", "agent"], input=text, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0, res.stderr  # end of input: it tears down (nothing) and exits
    replies = [json.loads(x) for x in res.stdout.splitlines()]
    assert [r["id"] for r in replies] == [1, 2, 3, None]
    hello, unknown, early, bad = replies
    assert hello["ok"] and hello["mtu"] == 65536 and hello["version"]
    assert not unknown["ok"] and "unknown request 'frobnicate'" in unknown["error"] and unknown["exit"] == 3
    assert not early["ok"] and "no share is built here" in early["error"]
    assert not bad["ok"] and "bad request line" in bad["error"]


def test_agent_refuses_an_underlay_address_it_does_not_have() -> None:
    text = json.dumps({"id": 1, "op": "hello", "underlay": "198.51.100.77"}) + "\n"
    res = subprocess.run([sys.executable, "-m", "netvirt", "agent"], input=text, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    (reply,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert not reply["ok"]
    assert "underlay address 198.51.100.77 is not an address of this machine" in reply["error"]
