"""Processes and namespaces of the live lab: start them so they can be stopped exactly, and stop them.

Every long-lived process the lab starts writes its own pid file (``sh -c 'echo $$ > f; exec ...'``, or
dockerd's ``--pidfile``), so the pid is the process's own and never a subshell's; a stop checks
that the pid still runs the expected command before it sends a signal (pids are reused). What is
left inside the lab's network namespaces (containerd shims, a probe that hung) is found by the
namespace's inode, never by a process name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path


def read_pid(pidfile: Path) -> int | None:
    try:
        text = pidfile.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def alive(pidfile: Path, word: str) -> int | None:
    """The pid in ``pidfile`` when it runs and its command line holds ``word`` (a guard against pid reuse)."""
    pid = read_pid(pidfile)
    if pid is None or word not in cmdline(pid):
        return None
    return pid


def netns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def wait_gone(pids: Iterable[int], seconds: float) -> list[int]:
    """Wait until the pids have exited (or are zombies of someone else); return those still running."""
    left = list(pids)
    deadline = time.monotonic() + seconds
    while left and time.monotonic() < deadline:
        left = [p for p in left if _running(p)]
        if left:
            time.sleep(0.05)
    return left


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop(pids: Iterable[int], grace: float) -> None:
    """SIGTERM, wait up to ``grace`` seconds, SIGKILL what is left."""
    pids = [p for p in pids if p > 1]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace):
        _signal(pid, signal.SIGKILL)
    wait_gone(pids, 5)


def stop_pidfile(pidfile: Path, word: str, grace: float) -> None:
    pid = alive(pidfile, word)
    if pid is not None:
        stop([pid], grace)
    pidfile.unlink(missing_ok=True)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def in_netns(inode: str, exclude: Iterable[int] = ()) -> list[int]:
    """Every process whose network namespace is ``inode`` (``net:[4026532...]``), less ``exclude``."""
    skip = set(exclude)
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in skip and netns(int(entry)) == inode:
            found.append(int(entry))
    return found


def parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def remove_cgroups(name: str, base: Path = Path("/sys/fs/cgroup")) -> list[str]:
    """rmdir every cgroup directory called ``name`` (v1 controllers and v2), deepest first; return what stayed."""
    stayed = []
    candidates = [base / name] + [d / name for d in base.iterdir() if d.is_dir()] if base.is_dir() else []
    for top in candidates:
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            try:
                os.rmdir(dirpath)
            except OSError:
                stayed.append(dirpath)
    return stayed


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under ``root`` in this process's mount namespace."""
    prefix = str(root).rstrip("/") + "/"
    found = []
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                found.append(point)
    except OSError:
        pass
    return found
