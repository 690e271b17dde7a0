"""What a node's processes see: its network namespace, its ``/etc`` files, its private dirs.

A node's directory (under the lab's state directory) holds::

    etc/            the node's files, laid over the machine's /etc (an overlay)
    private/N-PATH  one empty directory per ``private:`` path, bind-mounted over it
    mnt/            a mount point for a tmpfs (the overlays' upper layers)
    view.json       netns and private paths, for the exec verb (another process)
    anchor.json     pid and start time of the node's mount anchor, once it runs

Nothing here is mounted in the machine's mount namespace: the mounts are made
by the node's anchor (``_enter.py``) in a mount namespace of its own, which
every launch in the node enters, and die with its last process. Teardown
therefore only removes plain files and directories.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

ENTER = str(Path(__file__).with_name("_enter.py"))


def helper_argv(spec: dict[str, Any], argv: Sequence[str]) -> list[str]:
    """The command line that enters a node as ``spec`` says and then runs ``argv``."""
    import json

    return [sys.executable, "-I", "-S", ENTER, json.dumps(spec, separators=(",", ":")), *argv]


def etc_problem(rel: str) -> str | None:
    """Why ``rel`` cannot be a ``files:`` key (a path relative to /etc), or None."""
    parts = rel.split("/")
    if not rel or rel.startswith("/") or any(x in ("", ".", "..") for x in parts):
        return "a file path relative to /etc without '..', e.g. frr/frr.conf"
    if any(c in rel for c in ",:\\\n\0"):
        return "a file path without ',', ':', '\\', newlines"
    return None


def private_problem(path: str) -> str | None:
    """Why ``path`` cannot be a ``private:`` directory, or None."""
    p = PurePosixPath(path)
    if not path.startswith("/") or any(x in (".", "..") for x in path.split("/")) or str(p) == "/":
        return "an absolute directory path other than /, without '..', e.g. /var/run/frr"
    if any(c in path for c in ",:\\\n\0"):
        return "a path without ',', ':', '\\', newlines"
    if str(p) in ("/proc", "/sys", "/dev", "/run/netns", "/etc") or str(p).startswith(("/proc/", "/sys/")):
        return f"{path} cannot be private (the node needs the machine's own)"
    return None


@dataclass(eq=False)
class NodeView:
    """How to enter one node. ``dir`` None: only its network namespace (no files, no private).

    A view with a ``dir`` has a mount *anchor* once something ran in it: a process
    holding the node's mount namespace (made once: /sys, /etc overlay, private
    dirs), which every later launch enters. :meth:`close` stops it (teardown
    also does, with the lab's cgroup).
    """

    netns: str | None
    dir: Path | None = None
    private: tuple[str, ...] = ()
    cgroup_parent: Path | None = None  # where each launch's cgroup is made
    label: str = "node"  # for messages and cgroup names
    anchor: Any = field(default=None, repr=False)  # the anchor Process, once started
    pending: Any = field(default=None, repr=False)  # (files, links) to prepare on first use
    lock: Any = field(default=None, repr=False)  # asyncio.Lock: one anchor start at a time

    @property
    def anchor_id(self) -> tuple[int, int] | None:
        a = self.anchor
        if a is None or not a.running or a.start_time is None:
            return None
        return (a.pid, a.start_time)

    async def close(self) -> None:
        """Stop the mount anchor (safe twice)."""
        anchor, self.anchor = self.anchor, None
        if anchor is not None:
            await anchor.kill()

    @property
    def etc(self) -> Path | None:
        return self.dir / "etc" if self.dir else None

    def private_source(self, index: int, target: str) -> Path:
        assert self.dir is not None
        return self.dir / "private" / f"{index}{target.replace('/', '_')}"

    def spec(self, *, cgroup: Path | None = None, cwd: str | None = None,
             env: Mapping[str, str] | None = None, status_fd: int | None = None,
             mounts: bool = True, hold: bool = False) -> dict[str, Any]:
        """The JSON spec ``_enter.py`` reads."""
        spec: dict[str, Any] = {"netns": f"/run/netns/{self.netns}" if self.netns else None,
                                "cgroup": str(cgroup) if cgroup else None, "cwd": cwd,
                                "env": dict(env) if env is not None else None, "status_fd": status_fd,
                                "mounts": mounts, "hold": hold}
        if self.dir is not None:
            spec["scratch"] = str(self.dir / "mnt")
            etc = self.etc
            if etc is not None and etc.is_dir():
                spec["etc"] = str(etc)
            spec["private"] = [[t, str(self.private_source(i, t))] for i, t in enumerate(self.private)]
        elif self.netns:
            spec["scratch"] = None
        return spec

    def enter_argv(self, argv: Sequence[str], *, anchor: tuple[int, int] | None = None,
                   cwd: str | None = None) -> list[str]:
        """The command line that runs ``argv`` in the node: ``nsenter`` into its netns and the
        mount namespace its anchor holds; without an anchor, ``ip netns exec`` (its own /sys)."""
        if anchor is not None:
            net = [f"--net=/run/netns/{self.netns}"] if self.netns else []
            return ["nsenter", *net, f"--mount=/proc/{anchor[0]}/ns/mnt", f"--wd={cwd or os.getcwd()}",
                    "--", *argv]
        if self.netns is None:
            return list(argv)
        return ["ip", "netns", "exec", self.netns, *argv]

    def host_path(self, path: str) -> str:
        """Where the machine sees what this node sees at ``path`` (a private dir or /etc file)."""
        for i, target in enumerate(self.private):
            if path == target or path.startswith(target.rstrip("/") + "/"):
                return str(self.private_source(i, target)) + path[len(target):]
        etc = self.etc
        if etc is not None and path.startswith("/etc/") and (etc / path[5:]).exists():
            return str(etc / path[5:])
        return path

    # -- preparing (the lab's owner, at build or on first use) --------------
    def ensure(self) -> None:
        """Prepare the node's directory now if that was left for its first use."""
        if self.pending is not None:
            files, links = self.pending
            self.pending = None
            self.prepare(files, links)

    def prepare(self, files: Mapping[str, bytes] | None = None,
                links: Mapping[str, Path] | None = None) -> None:
        """Create the node's directory: its files (``links``: hard links to files shared by
        all nodes, e.g. /etc/hosts), its private dirs (owner and mode of the path each
        covers), the scratch mount point. Raises OSError (with the path)."""
        assert self.dir is not None
        self.dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.dir / "mnt").mkdir(mode=0o700, exist_ok=True)
        for rel, src in (links or {}).items():
            if "/" in rel:
                self._place(rel, src.read_bytes())
                continue
            (self.dir / "etc").mkdir(mode=0o755, exist_ok=True)
            dest = self.dir / "etc" / rel
            if not dest.exists():  # the exec verb may have made it first
                os.link(src, dest)
        import json

        # for the exec verb (another process), when the node has no anchor yet
        (self.dir / "view.json").write_text(json.dumps({"netns": self.netns, "private": self.private}))
        for rel, content in (files or {}).items():
            self._place(rel, content)
        for i, target in enumerate(self.private):
            src = self.private_source(i, target)
            src.parent.mkdir(mode=0o755, exist_ok=True)
            src.mkdir(mode=0o755, exist_ok=True)
            covered = _existing(target)
            st = os.stat(covered)
            mode = (st.st_mode & 0o7777) if covered == target else 0o755
            os.chown(src, st.st_uid, st.st_gid)
            os.chmod(src, mode)

    def _place(self, rel: str, content: bytes) -> None:
        etc = self.etc
        assert etc is not None
        dest = etc / rel
        # directories on the way take the owner and mode of the machine's, if it has them
        parts = PurePosixPath(rel).parts
        for depth in range(1, len(parts)):
            d = etc.joinpath(*parts[:depth])
            if not d.is_dir():
                d.mkdir(mode=0o755, parents=True)
                host = Path("/etc").joinpath(*parts[:depth])
                if host.is_dir():
                    st = host.stat()
                    os.chown(d, st.st_uid, st.st_gid)
                    os.chmod(d, st.st_mode & 0o7777)
        etc.mkdir(mode=0o755, exist_ok=True)
        dest.write_bytes(content)
        host_file = Path("/etc") / rel
        if host_file.is_file():  # a replacement keeps the owner and mode of what it replaces
            st = host_file.stat()
        else:  # a new file: the owner of its directory, readable by all
            st = dest.parent.stat()
            os.chmod(dest, 0o644)
            os.chown(dest, st.st_uid, st.st_gid)
            return
        os.chown(dest, st.st_uid, st.st_gid)
        os.chmod(dest, st.st_mode & 0o7777)


def _existing(path: str) -> str:
    """``path`` if it exists, else its nearest existing ancestor."""
    p = path
    while not os.path.exists(p):
        p = os.path.dirname(p)
    return p


def hosts_file(entries: Sequence[tuple[str, str | None]]) -> bytes:
    """An /etc/hosts naming every node: ``entries`` are (node, first address or None)."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += [f"{addr}\t{name}" for name, addr in entries if addr]
    return ("\n".join(lines) + "\n").encode()


__all__ = ["ENTER", "NodeView", "etc_problem", "helper_argv", "hosts_file", "private_problem"]
