"""Labs across machines (SPEC.md section 10): one scenario, several hosts, VXLAN between them.

* ``machines``: ``machines:`` / ``machine:`` in a scenario file (pure);
* ``split``: placement, each machine's share, crossing links with a VNI each, MTU (pure);
* ``wire``: the JSON-lines protocol and the model codec between driver and agent;
* ``agent`` / ``share``: the machine side, a share built by the ordinary builder plus VXLAN ends;
* ``remote``: one machine as the driver sees it, over SSH (asyncssh);
* ``driver``: the whole lab: build every share in parallel, steps where their node lives,
  teardown everywhere, and ``down`` from the driver's own state record.
"""

from netvirt.multi.machines import Layout, MachineSpec, MultiScenario, load, load_text
from netvirt.multi.split import CrossLink, Plan, Share, VxlanEnd, plan

__all__ = ["CrossLink", "Layout", "MachineSpec", "MultiScenario", "Plan", "Share", "VxlanEnd", "load",
           "load_text", "plan"]
