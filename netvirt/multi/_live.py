"""The one place this package imports the live side from (builder, steps, journal).

Kept apart from ``_model`` so that the pure modules (machines, split, wire) never
import it; the restructure moves these names, and only this file changes then.
"""

from __future__ import annotations

from typing import Any

from netvirt.topology.builder import Topology
from netvirt.topology.down import stop_owner
from netvirt.topology.journal import STATE_ROOT, LabState, lab_dir, read_info
from netvirt.topology.steps import StepResult, run_step
from netvirt.topology.steps import _title as step_title


def echo_probes() -> tuple[Any, Any, Any, Any]:
    """(tcp_echo_once, tcp_roundtrip, udp_echo, udp_roundtrip): netvirt's own echo and its client."""
    from netvirt.topology import probes

    return probes.tcp_echo_once, probes.tcp_roundtrip, probes.udp_echo, probes.udp_roundtrip


__all__ = ["STATE_ROOT", "LabState", "StepResult", "echo_probes", "lab_dir", "read_info", "run_step",
           "Topology", "step_title", "stop_owner"]
