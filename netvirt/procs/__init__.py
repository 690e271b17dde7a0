"""Processes in nodes: start a command as ``exec`` runs it, watch it, stop all of it.

``NodeView`` says how to enter a node (its netns, its /etc files, its private
dirs); ``Process.start`` launches a command there in its own session and
cgroup; ``Process.stop`` stops it and everything it forked; ``wait_ready``
waits for a ``Ready`` check; ``run_command`` is the ``exec`` step and
``Node.exec``; ``LabProcesses`` is a lab's processes; ``stop_journaled`` is
what ``down`` runs from the journal alone. ``spec`` is pure (scenario
validation imports it); names are imported lazily.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    "CommandResult": "command", "run_command": "command", "stop_jobs": "command",
    "Process": "launch", "ProcessError": "launch",
    "wait_ready": "ready",
    "ProcessSpec": "spec", "Ready": "spec", "SpecError": "spec", "Stop": "spec", "duration": "spec",
    "parse_ready": "spec", "parse_stop": "spec",
    "StopReport": "stop", "close_lab_cgroup": "stop", "lab_cgroup": "stop", "open_lab_cgroup": "stop",
    "stop_journaled": "stop",
    "NodeView": "view", "hosts_file": "view",
    "LabProcesses": "lab",
}

__all__ = [
    "CommandResult",
    "LabProcesses",
    "NodeView",
    "Process",
    "ProcessError",
    "ProcessSpec",
    "Ready",
    "SpecError",
    "Stop",
    "StopReport",
    "close_lab_cgroup",
    "duration",
    "hosts_file",
    "lab_cgroup",
    "open_lab_cgroup",
    "parse_ready",
    "parse_stop",
    "run_command",
    "stop_jobs",
    "stop_journaled",
    "wait_ready",
]

if TYPE_CHECKING:
    from netvirt.procs.command import CommandResult, run_command, stop_jobs
    from netvirt.procs.lab import LabProcesses
    from netvirt.procs.launch import Process, ProcessError
    from netvirt.procs.ready import wait_ready
    from netvirt.procs.spec import ProcessSpec, Ready, SpecError, Stop, duration, parse_ready, parse_stop
    from netvirt.procs.stop import StopReport, close_lab_cgroup, lab_cgroup, open_lab_cgroup, stop_journaled
    from netvirt.procs.view import NodeView, hosts_file


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'netvirt.procs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"netvirt.procs.{module}"), name)
    globals()[name] = value
    return value
