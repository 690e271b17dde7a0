"""``down LAB`` for a lab across machines: from the driver's own state record.

The driver's record (``/run/netvirt/<lab>/lab.json``, key ``multi``) names each
machine, how to reach it and its share. ``down``:

1. stops the driver if it still runs (SIGTERM: it unwinds every machine itself);
2. on every machine in parallel, runs ``<command> down <share>`` over SSH, which
   stops that share's agent if it still runs and replays its journal (a share
   already gone counts as clean);
3. removes the driver's record only if every machine is clean; else it stays and
   the error names the machines that could not be cleaned.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netvirt.errors import MachineError
from netvirt.multi._live import STATE_ROOT, LabState, lab_dir, read_info, stop_owner
from netvirt.multi.machines import MachineSpec
from netvirt.multi.remote import Remote


def is_multi(lab: str, root: Path = STATE_ROOT) -> bool:
    return "multi" in read_info(lab, root)


async def down_multi(lab: str, *, root: Path = STATE_ROOT, ssh_config: Sequence[str] | None = None,
                     netns: str | None = None) -> dict[str, str]:
    """Clean every machine of ``lab``; machine -> what was done. MachineError if one failed."""
    import asyncio

    info = read_info(lab, root)
    machines: dict[str, Any] = info.get("multi", {}).get("machines", {})
    stop_owner(lab, root)
    if not lab_dir(lab, root).is_dir():  # the driver cleaned everything as it stopped
        return {m: "torn down by the driver" for m in machines}

    async def one(name: str, entry: dict[str, Any]) -> str:
        import ipaddress

        spec = MachineSpec(name, entry["ssh"], ipaddress.ip_address(entry["underlay"]), entry["command"])
        remote = Remote(spec, ssh_config=ssh_config, netns=netns)
        try:
            await remote.connect()
            status, out, err = await remote.run("down", entry["share"])
        finally:
            await remote.close()
        if status == 0:
            return (out.strip().splitlines() or [f"share {entry['share']} torn down"])[-1]
        if status == 3 and "no lab named" in err:
            return f"share {entry['share']} was gone already"
        raise MachineError(name, f"'down {entry['share']}' there gave exit {status}: {err.strip()[-300:]}")

    results = await asyncio.gather(*(one(m, e) for m, e in machines.items()), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        keep = (f"; the driver's record {lab_dir(lab, root)} is kept: run 'netvirt down {lab}' again "
                "once the machines can be reached (if they are gone for good, remove that directory)")
        if len(failed) == 1:
            raise MachineError(getattr(failed[0], "machine", "?"), _bare(failed[0]) + keep)
        raise MachineError(", ".join(getattr(f, "machine", "?") for f in failed),
                           "; ".join(str(f) for f in failed) + keep)
    LabState(lab, root=root).release()
    return {m: str(r) for m, r in zip(machines, results, strict=True)}


def _bare(exc: BaseException) -> str:
    """A MachineError's text without its own "machine NAME: " prefix."""
    text = str(exc)
    machine = getattr(exc, "machine", None)
    prefix = f"machine {machine}: "
    return text[len(prefix):] if machine and text.startswith(prefix) else text


__all__ = ["down_multi", "is_multi"]
