"""Make a node's mounts: the node's mount anchor (``hold``), or one command's own view.

Run as ``python3 -I -S _enter.py SPEC_JSON CMD ARGS...``: by the launcher, once
per node, with ``hold`` (the anchor, whose mount namespace every later launch
enters with ``nsenter``); and by the ``exec`` verb for a node with no anchor yet
(then it makes the mounts for that one command and execs it). Standalone on
purpose: stdlib only, no netvirt import, so it starts in ~10 ms and works from a
worktree as well as from an install.

Why a program and not ``preexec_fn``: the namespaces a child needs can only
be entered by a single-threaded process (``unshare(CLONE_NEWNS)`` fails with
EINVAL in a process with threads, and Python warns that ``preexec_fn`` is
unsafe with threads). This process is single-threaded, does its mounts in a
private mount namespace, and then becomes the command (same pid, same start
time: what the journal recorded stays true).

Order (``ip netns exec`` does 2-4 the same way):
1. join the cgroup (before anything else can fork: no child escapes it);
2. ``setns`` into the node's network namespace;
3. ``unshare(CLONE_NEWNS)`` and make ``/`` a recursive slave: nothing mounted
   here propagates back to the machine; the mounts die with the last process;
4. remount ``/sys`` so ``/sys/class/net`` shows the node's interfaces;
5. a tmpfs on the node's scratch directory (in this namespace only), for the
   upper layers of the overlays below;
6. ``/etc``: an overlay of the node's files over the machine's ``/etc``, with a
   per-launch upper layer: the node sees its files and the rest of ``/etc``,
   and a write to ``/etc`` never reaches the machine's;
7. each private directory bind-mounted over its path (a path missing on the
   machine is made to exist by an overlay of its nearest existing ancestor);
8. ``chdir``, then ``execvpe`` the command.

With ``hold`` the process does 1-7 and then only waits: it is the node's mount
*anchor*, and later launches enter its mount namespace with ``nsenter``
(the mounts are made once per node, so a write to the node's /etc is seen by
all its processes).

Errors before the exec go to the status fd (``status_fd``, closed on exec:
EOF means the command runs) and exit 127.
"""

import ctypes
import json
import os
import signal
import sys
from typing import Any

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


class Failed(Exception):
    pass


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise Failed(f"{what}: {os.strerror(err)}")


def _mount(src: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None),
           f"mount {fstype or 'bind'} on {target}")


def _overlay(target: str, lower: str, scratch: str, tag: str) -> None:
    upper, work = os.path.join(scratch, tag + ".u"), os.path.join(scratch, tag + ".w")
    os.mkdir(upper)
    os.mkdir(work)
    _mount("overlay", target, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")


def _private(target: str, source: str, scratch: str, index: int) -> None:
    if not os.path.exists(target):
        # make it exist in this view only: overlay the nearest existing ancestor
        real = os.path.realpath(target)
        ancestor = os.path.dirname(real)
        while not os.path.isdir(ancestor):
            ancestor = os.path.dirname(ancestor)
        st = os.stat(ancestor)
        _overlay(ancestor, ancestor, scratch, f"p{index}")
        os.makedirs(real, mode=0o755, exist_ok=True)
        os.chown(real, st.st_uid, st.st_gid)
    _mount(source, target, None, MS_BIND | MS_REC)


def enter(spec: dict[str, Any]) -> None:
    if spec.get("cgroup"):
        with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as f:
            f.write("0")
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY | os.O_CLOEXEC)
        _check(_libc.setns(fd, CLONE_NEWNET), f"setns {spec['netns']}")
        os.close(fd)
    if not spec.get("mounts", True):
        return
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount("none", "/", None, MS_REC | MS_SLAVE)
    if spec.get("netns"):
        flags = MS_RDONLY if os.statvfs("/sys").f_flag & os.ST_RDONLY else 0
        _libc.umount2(b"/sys", MNT_DETACH)
        _mount(os.path.basename(spec["netns"]), "/sys", "sysfs", flags)
    scratch: str = spec.get("scratch") or ""
    if scratch:
        _mount("tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700")
    if spec.get("etc"):
        _overlay("/etc", f"{spec['etc']}:/etc", scratch, "etc")
    for index, (target, source) in enumerate(spec.get("private", ())):
        _private(target, source, scratch, index)


def main() -> None:
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    status = spec.get("status_fd")
    try:
        if status is not None:
            os.set_inheritable(status, False)  # closed by the exec: EOF tells "started"
        enter(spec)
        if spec.get("hold"):  # the node's mount anchor: holds the namespace until killed
            if status is not None:
                os.close(status)
            while True:
                signal.pause()
        if spec.get("cwd"):
            os.chdir(spec["cwd"])
        env = spec.get("env")
        os.execvpe(argv[0], argv, os.environ if env is None else env)
    except (Failed, OSError) as exc:
        msg = f"{exc}" if isinstance(exc, Failed) else f"{exc.strerror}: {exc.filename or argv[0]}"
        if status is not None:
            os.write(status, msg.encode(errors="replace"))
        else:
            sys.stderr.write(f"netvirt: cannot start {argv[0]!r} in the node: {msg}\n")
        os._exit(127)


if __name__ == "__main__":
    main()
