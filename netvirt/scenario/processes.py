"""Validation of what runs in a node (SPEC.md section 9): ``files``, ``private``, ``processes``.

As written in a scenario::

    files:                       # seen under /etc by the node's processes and exec
      frr/frr.conf: {source: r1/frr.conf}     # relative to the scenario file
      frr/daemons: {content: "zebra=yes\\n"}
      hosts: "127.0.0.1 localhost\\n"          # a string is the content
    private: [/var/run/frr]      # per-node empty directories over these paths
    processes:                   # started after the build, in order, before the steps
      - name: frr                # [a-z0-9][a-z0-9_-]*, unique in the node
        cmd: /usr/lib/frr/frrinit.sh start     # a shell line, or a list (argv)
        env: {DEBUG: 1}
        cwd: /var/run/frr
        ready: {exec: "vtysh -c 'show version'", timeout: 30s}  # or tcp/udp/log/file
        stop: {signal: TERM, timeout: 5s}

Source files are checked and read here (they exist, are regular files, at most
1 MiB), so a Scenario holds their content; nothing here touches the kernel.
"""

from __future__ import annotations

import os
import re
from typing import Any

from netvirt.procs.spec import ProcessSpec, SpecError, parse_ready, parse_stop
from netvirt.procs.view import etc_problem, private_problem
from netvirt.scenario.checker import At, Checker, describe
from netvirt.scenario.model import FileSpec

NODE_KEYS = ("files", "private", "processes")
PROCESS_KEYS = ("name", "cmd", "env", "cwd", "ready", "stop")
MAX_FILE = 1 << 20
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

__all__ = ["MAX_FILE", "NODE_KEYS", "check_files", "check_private", "check_processes"]


def check_files(ck: Checker, at: At) -> dict[str, FileSpec]:
    if at.value is None:
        return {}
    keys = [k for k in at.value if isinstance(k, str)] if isinstance(at.value, dict) else []
    if not ck.mapping(at, keys, "files"):
        return {}
    out = {}
    for rel, f in at.items():
        problem = etc_problem(rel) if isinstance(rel, str) else "a file path relative to /etc"
        if problem:
            ck.add(f, f"files key {describe(rel)}: {problem}")
            continue
        spec = _file(ck, f, rel)
        if spec is not None:
            out[rel] = spec
    return out


def _file(ck: Checker, at: At, rel: str) -> FileSpec | None:
    v = at.value
    if isinstance(v, str):
        return FileSpec(rel, content=v.encode(), place=at.path)
    if not ck.mapping(at, ("content", "source"), f"file {rel}"):
        return None
    if ("content" in v) == ("source" in v):
        ck.add(at, f"file {rel} needs exactly one of content (the text) or source (a file "
                   "next to the scenario)")
        return None
    if "content" in v:
        text = ck.string(at.key("content"), "content")
        if text is None:
            return None
        if len(text) > MAX_FILE:
            ck.add(at.key("content"), f"content of {rel} is over {MAX_FILE} bytes")
            return None
        return FileSpec(rel, content=text.encode(), place=at.path)
    src = ck.string(at.key("source"), "source (a path relative to the scenario file)")
    if src is None:
        return None
    base = os.path.dirname(os.path.abspath(ck.source)) if ck.source else os.getcwd()
    path = os.path.normpath(os.path.join(base, src))
    try:
        st = os.stat(path)
    except OSError as exc:
        ck.add(at.key("source"), f"source {src!r} of {rel}: {exc.strerror} ({path})")
        return None
    import stat

    if not stat.S_ISREG(st.st_mode):
        ck.add(at.key("source"), f"source {src!r} of {rel} is not a regular file ({path})")
        return None
    if st.st_size > MAX_FILE:
        ck.add(at.key("source"), f"source {src!r} of {rel} is over {MAX_FILE} bytes")
        return None
    try:  # read now: the model stays self-contained (it crosses to other machines as data)
        with open(path, "rb") as f:
            content = f.read(MAX_FILE + 1)
    except OSError as exc:
        ck.add(at.key("source"), f"source {src!r} of {rel}: {exc.strerror} ({path})")
        return None
    return FileSpec(rel, content=content, source=path, place=at.path)


def check_private(ck: Checker, at: At) -> tuple[str, ...]:
    if at.value is None:
        return ()
    if not isinstance(at.value, list):
        ck.add(at, f"private must be a list of directories such as [/var/run/frr], not "
                   f"{describe(at.value)}")
        return ()
    out: list[str] = []
    for item in at.elements():
        problem = private_problem(item.value) if isinstance(item.value, str) else "a directory path"
        if problem:
            ck.add(item, f"private directory {describe(item.value)}: {problem}")
        elif os.path.normpath(item.value) in out:
            ck.add(item, f"private directory {item.value} is listed twice")
        else:
            out.append(os.path.normpath(item.value))
    return tuple(out)


def check_processes(ck: Checker, at: At, node: str) -> tuple[ProcessSpec, ...]:
    if at.value is None:
        return ()
    if not isinstance(at.value, list):
        ck.add(at, f"processes must be a list of {{name: NAME, cmd: COMMAND}} entries, not "
                   f"{describe(at.value)}")
        return ()
    out: list[ProcessSpec] = []
    for item in at.elements():
        spec = _process(ck, item, node)
        if spec is None:
            continue
        if any(p.name == spec.name for p in out):
            ck.add(item.key("name"), f"process {spec.name!r} is defined twice in node {node!r}")
            continue
        out.append(spec)
    return tuple(out)


def _process(ck: Checker, at: At, node: str) -> ProcessSpec | None:
    if not ck.mapping(at, PROCESS_KEYS, "a process", required=("name", "cmd")):
        return None
    v = at.value
    n = len(ck.problems)
    name = v.get("name")
    if "name" in v and (not isinstance(name, str) or not _NAME.match(name)):
        ck.add(at.key("name"), f"process name {describe(name)} must match [a-z0-9][a-z0-9_-]* "
                               "(at most 32 characters): it names its log file")
    cmd = _cmd(ck, at.key("cmd"))
    env = _env(ck, at.key("env"))
    cwd = v.get("cwd")
    if cwd is not None and (not isinstance(cwd, str) or not cwd.startswith("/")):
        ck.add(at.key("cwd"), f"cwd must be an absolute directory (as the node sees it), not "
                              f"{describe(cwd)}")
    ready = stop = None
    for key in ("ready", "stop"):
        if v.get(key) is None:
            continue
        try:
            if key == "ready":
                ready = parse_ready(v[key])
            else:
                stop = parse_stop(v[key])
        except SpecError as exc:
            where = at.key(key)
            ck.add(where.key(exc.key) if exc.key and where.has(exc.key) else where, f"{key}: {exc}")
    if len(ck.problems) > n or cmd is None:
        return None
    extra: dict[str, Any] = {"stop": stop} if stop is not None else {}
    return ProcessSpec(str(name), cmd, env, cwd if isinstance(cwd, str) else None, ready, **extra)


def _cmd(ck: Checker, at: At) -> str | tuple[str, ...] | None:
    v = at.value
    if isinstance(v, str) and v.strip():
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) and x for x in v):
        return tuple(v)
    ck.add(at, f"cmd must be a shell command line or a list of arguments, not {describe(v)}")
    return None


def _env(ck: Checker, at: At) -> dict[str, str]:
    if at.value is None:
        return {}
    keys = [k for k in at.value if isinstance(k, str)] if isinstance(at.value, dict) else []
    if not ck.mapping(at, keys, "env"):
        return {}
    out = {}
    for key, v in at.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", key):
            ck.add(v, f"environment variable name {describe(key)} is not valid")
        elif isinstance(v.value, bool) or not isinstance(v.value, str | int | float):
            ck.add(v, f"env {key} needs a single value, not {describe(v.value)}")
        else:
            out[key] = str(v.value)
    return out
