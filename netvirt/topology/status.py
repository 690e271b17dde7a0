"""Collect what ``netvirt status`` shows: live kernel state plus published counters."""

from __future__ import annotations

import json
from typing import Any

from netvirt.errors import NetvirtError
from netvirt.netns import Namespace, netns_exists
from netvirt.scenario.model import check_lab_name, lab_alias, netns_name
from netvirt.topology.journal import STATE_ROOT, list_labs, owner_alive, read_info


async def collect(only: str | None = None) -> list[dict[str, Any]]:
    out = []
    if only:
        check_lab_name(only)
    for lab in list_labs():
        if only and lab != only:
            continue
        try:
            check_lab_name(lab)
        except NetvirtError:
            continue  # not a lab's directory
        info = read_info(lab)
        try:
            counters = json.loads((STATE_ROOT / lab / "counters.json").read_text())
        except (OSError, ValueError):
            counters = {}
        nodes = []
        for node in info.get("nodes", []):
            host = node in info.get("host_nodes", [])
            ns_name = None if host else netns_name(lab, node)
            nodes.append({"name": node, "netns": ns_name,
                          "interfaces": await _interfaces(lab, node, ns_name, counters)})
        from netvirt.topology.links import read_links

        if "multi" in info:  # the driver of a lab across machines: its shares are on the machines
            nodes.extend({"name": n, "netns": None, "machine": m, "share": e["share"], "interfaces": []}
                         for m, e in info["multi"].get("machines", {}).items() for n in e.get("nodes", []))
        from netvirt.procs.lab import read_status

        procs = read_status(STATE_ROOT / lab)
        for node in nodes:
            node["processes"] = [{k: p.get(k) for k in ("name", "state", "pid", "returncode", "cmd",
                                                        "members", "log")}
                                 for p in procs["processes"] if p.get("node") == node["name"]]
        out.append({"lab": lab, "pid": info.get("pid"), "alive": owner_alive(info),
                    "ready": bool(info.get("ready")), "scenario": info.get("scenario"),
                    "nodes": nodes, "process_failures": procs.get("failures", []),
                    "links": read_links(STATE_ROOT / lab)})
    return out


async def _interfaces(lab: str, node: str, ns_name: str | None,
                      counters: dict[str, Any]) -> list[dict[str, Any]]:
    if ns_name is not None and not netns_exists(ns_name):
        return []
    try:
        ns = await (Namespace.borrow(ns_name) if ns_name else Namespace.host())
    except NetvirtError:
        return []
    try:
        def read() -> tuple[Any, Any]:
            return ns.netlink.links(), ns.netlink.addrs()

        links, addrs = await ns.call(read)
    finally:
        await ns.close()
    tag = lab_alias(lab)
    rows = []
    for li in links:
        if ns_name is None and li.alias != tag:
            continue  # in the host namespace show only this lab's links
        row: dict[str, Any] = {"name": li.name, "kind": li.kind or ("loopback" if li.name == "lo" else None),
                               "up": li.up, "mac": li.mac, "mtu": li.mtu,
                               "addresses": [a for i, a in addrs if i == li.index]}
        prog = counters.get(f"{node}:{li.name}")
        if prog:
            row["program"] = prog["program"]
            row["counters"] = prog["counters"]
            row["program_state"] = prog.get("state", "running")
            row["program_error"] = prog.get("error")
        rows.append(row)
    return rows
