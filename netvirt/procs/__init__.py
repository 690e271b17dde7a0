"""Processes in nodes: start a command as ``exec`` runs it, watch it, stop all of it.

``NodeView`` says how to enter a node (its netns, its /etc files, its private
dirs); ``Process.start`` launches a command there in its own session and
cgroup; ``Process.stop`` stops it and everything it forked; ``wait_ready``
waits for a ``Ready`` check; ``run_command`` is the ``exec`` step and
``Node.exec``; ``stop_journaled`` is what ``down`` runs from the journal alone.
"""

from netvirt.procs.command import CommandResult, run_command, stop_jobs
from netvirt.procs.launch import Process, ProcessError
from netvirt.procs.ready import wait_ready
from netvirt.procs.spec import Ready, SpecError, Stop, duration, parse_ready, parse_stop
from netvirt.procs.stop import StopReport, close_lab_cgroup, lab_cgroup, open_lab_cgroup, stop_journaled
from netvirt.procs.view import NodeView, hosts_file

__all__ = [
    "CommandResult",
    "NodeView",
    "Process",
    "ProcessError",
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
