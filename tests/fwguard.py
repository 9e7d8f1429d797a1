"""The firewall lab's host guard: what must be the same on the host before and after the lab's tests.

:func:`host_snapshot` records the host's /etc/ufw, /etc/default/ufw and /etc/firewalld (checksum,
mode, owner of every file) and the output of ``iptables-save``, ``ip6tables-save`` and ``nft list
ruleset`` run read-only in the host's namespace; :func:`snapshot_diff` says, one line each, what
appeared, went or changed. tests/fwlab.py takes the snapshot before its first sandbox and compares
at the session's end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

#: What the host guard compares: files (checksums) and read-only commands.
GUARD_FILES = ("/etc/ufw", "/etc/default/ufw", "/etc/firewalld")
GUARD_COMMANDS: tuple[tuple[str, ...], ...] = (("iptables-save",), ("ip6tables-save",), ("nft", "list", "ruleset"))


def host_snapshot(root: Path = Path("/"), commands: Sequence[Sequence[str]] = GUARD_COMMANDS,
                  runner: Callable[[Sequence[str]], str] | None = None) -> dict[str, str]:
    """What must not change on the host: ``{"/etc/ufw/user.rules": sha256, ..., "$ iptables-save": text}``.

    Files are read under ``root`` (the host's ``/`` unless a test points it elsewhere); commands are
    read-only and run in this process's (the host's) namespace, their comment lines (timestamps) left
    out. A missing file or tool is recorded as such, so its appearance is a difference too.
    """
    snap: dict[str, str] = {}
    for rel in GUARD_FILES:
        top = root / rel.lstrip("/")
        if top.is_file() or top.is_symlink():
            snap[rel] = _digest(top)
            continue
        if not top.is_dir():
            snap[rel] = "<missing>"
            continue
        for dirpath, dirs, files in os.walk(top):
            dirs.sort()
            for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
                p = Path(dirpath) / name
                snap["/" + str(p.relative_to(root))] = _digest(p)
    run = runner or _run_readonly
    for argv in commands:
        text = run(argv)
        snap["$ " + " ".join(argv)] = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    return snap


def _digest(p: Path) -> str:
    if p.is_symlink():
        return "-> " + os.readlink(p)
    st = p.stat()
    return f"{hashlib.sha256(p.read_bytes()).hexdigest()} {st.st_mode:o} {st.st_uid}:{st.st_gid}"


def _run_readonly(argv: Sequence[str]) -> str:
    if not shutil.which(argv[0]):
        return "<not installed>"
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "<timed out>"
    return done.stdout + (f"\n<exit {done.returncode}: {done.stderr.strip()}>" if done.returncode else "")


def snapshot_diff(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """One line per key that appeared, went or changed between two :func:`host_snapshot` results."""
    lines = []
    for key in sorted(set(before) | set(after)):
        if key not in after:
            lines.append(f"gone: {key}")
        elif key not in before:
            lines.append(f"new: {key}")
        elif before[key] != after[key]:
            if key.startswith("$ "):
                old, new = set(before[key].splitlines()), set(after[key].splitlines())
                extra = sorted(new - old)[:5] + [f"(missing) {ln}" for ln in sorted(old - new)[:5]]
                lines.append(f"changed: {key}: " + "; ".join(extra))
            else:
                lines.append(f"changed: {key}")
    return lines
