"""Pictures of a scenario: Graphviz DOT, Mermaid, and SVG/PNG through ``dot``.

Pure functions of a :class:`Scenario` except :func:`render`, which writes a
file (and runs graphviz's ``dot`` for ``.svg`` / ``.png``). Drawing rules:

* each node is a cluster (Mermaid: a subgraph) holding its interfaces, each
  labelled with name, kind, addresses and its program, if any;
* a link (veth pair) is a solid edge, labelled with its MTU if it sets one; a link
  served by netvirt's datapath (``impair:``) is a bold blue edge labelled with its
  conditions (per direction when they differ: ``a:eth0 -> delay 50ms``);
* a bridge port is a bold edge to its bridge;
* a macvlan / macvtap is joined to its parent by a dashed edge labelled with its mode;
* a lab across machines: each node is filled with its machine's colour and titled with
  the machine (``machine:`` or where placement puts it); a link between two machines is
  a dashed blue edge labelled "vxlan".
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from netvirt.errors import NetvirtError, UnsupportedError, UsageError
from netvirt.kinds import KINDS
from netvirt.scenario.model import InterfaceSpec, LinkSpec, Scenario

__all__ = ["render", "to_dot", "to_mermaid"]

def _label_lines(i: InterfaceSpec) -> list[str]:
    lines = [i.name if i.kind == "veth" else f"{i.name} ({i.kind})"]
    lines += [str(a) for a in i.addresses]
    if i.mac:
        lines.append(i.mac)
    if i.program is not None:
        what = i.program.name
        if what == "python":
            what = f"python {i.program.params.get('python', '')}"
        lines.append(f"program: {what}")
    if not i.up:
        lines.append("down")
    return lines


#: fill colours of the machines of a lab across machines, in machines: order
MACHINE_COLOURS = ("#dbeafe", "#dcfce7", "#fef3c7", "#fce7f3", "#ede9fe", "#ccfbf1", "#ffedd5", "#e5e7eb")


def _placement(s: Scenario) -> dict[str, str]:
    if not s.machines:
        return {}
    from netvirt.scenario.placement import place

    return place(s)


def _colour(s: Scenario, machine: str) -> str:
    return MACHINE_COLOURS[list(s.machines).index(machine) % len(MACHINE_COLOURS)]


def _edges(s: Scenario) -> list[tuple[str, str, str, str]]:
    """(from, to, style, label) for links, bridge ports and macvlan parents; a link between
    two machines is a "vxlan" edge, a link served by netvirt's datapath an "impaired" one."""
    where = _placement(s)
    edges = []
    for link in s.links:
        label = _link_label(link)
        if where and where[link.a.node] != where[link.b.node]:
            edges.append((str(link.a), str(link.b), "vxlan", " ".join(x for x in ("vxlan", label) if x)))
        else:
            edges.append((str(link.a), str(link.b), "impaired" if link.served else "link", label))
    for i in s.interfaces():
        if i.master:
            edges.append((str(i.endpoint), f"{i.node}:{i.master}", "port", ""))
        if i.parent is not None:
            edges.append((str(i.endpoint), str(i.parent), "parent", f"{i.kind} {i.mode}"))
    return edges


def _link_label(link: LinkSpec) -> str:
    parts = [f"mtu {link.mtu}"] if link.mtu else []
    if link.served:
        conds = link.impair or {}
        ca, cb = conds.get(str(link.a)), conds.get(str(link.b))
        if ca == cb:
            parts.append(ca.describe() if ca is not None else "no conditions yet")
        else:
            for ep, c in ((link.a, ca), (link.b, cb)):
                parts.append(f"{ep} -> {c.describe() if c is not None else 'none'}")
    return "; ".join(parts)


def _node_title(s: Scenario, name: str, where: dict[str, str] | None = None) -> str:
    title = f"{name} (host namespace)" if s.nodes[name].host else name
    if where:
        title += f" (machine {where[name]})"
    return title


# --- DOT -----------------------------------------------------------------------------


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _qlines(lines: list[str]) -> str:
    return '"' + "\\n".join(x.replace("\\", "\\\\").replace('"', '\\"') for x in lines) + '"'


def to_dot(s: Scenario) -> str:
    """The topology as a Graphviz ``graph`` (undirected)."""
    title = f"{s.name}: {s.description}" if s.description else s.name
    out = [
        f"graph {_q(s.name)} {{",
        f"  graph [rankdir=LR, compound=true, fontname=Helvetica, labelloc=t, label={_q(title)}];",
        "  node [fontname=Helvetica, fontsize=10];",
        "  edge [fontname=Helvetica, fontsize=9];",
    ]
    where = _placement(s)
    for name, node in s.nodes.items():
        out.append(f"  subgraph {_q('cluster_' + name)} {{")
        fill = (f' style="rounded,filled"; fillcolor="{_colour(s, where[name])}";' if where
                else " style=rounded;")
        out.append(f"    label={_q(_node_title(s, name, where))};{fill}")
        for i in node.interfaces.values():
            style = ', style=filled, fillcolor="#eeeeee"' if i.kind == "bridge" else ""
            out.append(f"    {_q(str(i.endpoint))} [label={_qlines(_label_lines(i))}, "
                       f"shape={KINDS[i.kind].dot_shape if i.kind in KINDS else 'box'}{style}];")
        out.append("  }")
    attrs = {"link": "", "impaired": "style=bold, color=blue, fontcolor=blue",
             "port": "style=bold, color=gray40", "parent": "style=dashed",
             "vxlan": "style=dashed, color=blue, penwidth=2"}
    for a, b, kind, label in _edges(s):
        parts = [p for p in (attrs[kind], f"label={_q(label)}" if label else "") if p]
        suffix = f" [{', '.join(parts)}]" if parts else ""
        out.append(f"  {_q(a)} -- {_q(b)}{suffix};")
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid -------------------------------------------------------------------------


def _mq(text: str) -> str:
    return (text.replace("&", "#amp;").replace('"', "#quot;")
            .replace("<", "#lt;").replace(">", "#gt;"))


def to_mermaid(s: Scenario) -> str:
    """The topology as a Mermaid ``flowchart``."""
    ids: dict[str, str] = {}
    out = ["flowchart LR"]
    if s.description:
        out.insert(0, f"%% {s.name}: {s.description}")
    where = _placement(s)
    for n, (name, node) in enumerate(s.nodes.items()):
        out.append(f'  subgraph node{n}["{_mq(_node_title(s, name, where))}"]')
        for i in node.interfaces.values():
            ident = ids[str(i.endpoint)] = f"if{len(ids)}"
            left, right = KINDS[i.kind].mermaid if i.kind in KINDS else ('["', '"]')
            label = "<br/>".join(_mq(x) for x in _label_lines(i))
            out.append(f"    {ident}{left}{label}{right}")
        out.append("  end")
        if where:
            out.append(f"  style node{n} fill:{_colour(s, where[name])}")
    arrows = {"link": "---", "port": "===", "parent": "-.-", "vxlan": "-.-", "impaired": "---"}
    for a, b, kind, label in _edges(s):
        if a not in ids or b not in ids:
            continue
        tag = f"|{_mq(label)}|" if label else ""
        out.append(f"  {ids[a]} {arrows[kind]}{tag} {ids[b]}")
    return "\n".join(out) + "\n"


# --- files ---------------------------------------------------------------------------


def render(s: Scenario, out_path: str | Path) -> Path:
    """Write a picture of ``s`` to ``out_path``; the suffix picks the format.

    ``.dot`` and ``.mmd`` are text; ``.svg`` and ``.png`` need graphviz's ``dot``.
    """
    out = Path(out_path)
    suffix = out.suffix.lower()
    if suffix == ".dot":
        out.write_text(to_dot(s), encoding="utf-8")
        return out
    if suffix == ".mmd":
        out.write_text(to_mermaid(s), encoding="utf-8")
        return out
    if suffix not in (".svg", ".png"):
        raise UsageError(f"cannot draw {out.name}: the output must end in .svg, .png, "
                         ".dot or .mmd")
    dot = shutil.which("dot")
    if dot is None:
        raise UnsupportedError(f"drawing {out.name} needs the dot program of graphviz, which "
                               "is not on PATH: install graphviz (apt-get install graphviz), "
                               "or write .dot or .mmd instead")
    proc = subprocess.run([dot, f"-T{suffix[1:]}", "-o", str(out)], input=to_dot(s).encode(),
                          capture_output=True, timeout=120, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()
        raise NetvirtError(f"graphviz dot failed drawing {out} (exit {proc.returncode}): {err}")
    return out
