"""Which directory the media fix may walk as a library: judged once, by the planner, the engine and undo.

The media fix (FS-005) runs as root and takes write, exec and set-id bits off
a whole tree: pointed at ``/usr`` it would break the system, at a home
directory it would strip ``~/.ssh`` and scripts, at a directory holding the
installation it would rewrite the journal's own modes. The bind mount's host
path comes from a compose file the installation's owner writes, so it is
judged here, after resolving it (``realpath``; the engine judges the path of
the directory it actually opened). Refused:

* ``/`` and the system trees, with everything under them: ``/usr``, ``/etc``,
  ``/bin``, ``/sbin``, ``/lib*``, ``/boot``, ``/var`` (``/var/lib`` is
  services' state: a library kept there is changed by hand), ``/proc``,
  ``/sys``, ``/dev``, ``/run`` (except a disk under ``/run/media/USER/``),
  ``/snap``;
* mount parents and shared tops themselves, not what is under them:
  ``/media``, ``/mnt``, ``/srv``, ``/opt``, ``/tmp``, ``/home``, ``/root``,
  ``/run/media`` and ``/run/media/USER`` (``/media/disk/films`` or
  ``/srv/media`` is where libraries live);
* a home directory itself (any passwd entry's, the invoking user's ``$HOME``
  and ``$SUDO_USER``'s): a library inside it is fine;
* a directory that is, or contains, the installation directory, or lies
  inside its journal;
* a symbolic link (not followed, as everywhere else).
"""

from __future__ import annotations

import os
import pwd
import re

from checks.core.names import JOURNAL_DIR

_SYSTEM = ("/usr", "/etc", "/bin", "/sbin", "/boot", "/var", "/proc", "/sys", "/dev", "/run", "/snap")
_TOPS = ("/", "/media", "/mnt", "/srv", "/opt", "/tmp", "/home", "/root", "/run/media")


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _homes() -> dict[str, str]:
    """Resolved home directory -> whose, for every passwd entry and the invoking user."""
    homes: dict[str, str] = {}
    try:
        entries = pwd.getpwall()
    except OSError:  # pragma: no cover - no passwd database at all
        entries = []
    for pw in entries:
        if pw.pw_dir:
            homes.setdefault(os.path.realpath(pw.pw_dir), pw.pw_name)
    for who, home in (("$HOME", os.environ.get("HOME")), ("$SUDO_USER", _sudo_home())):
        if home and os.path.isabs(home):
            homes.setdefault(os.path.realpath(home), who)
    return homes


def _sudo_home() -> str | None:
    user = os.environ.get("SUDO_USER")
    if not user:
        return None
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        return None


_LIB = re.compile(r"lib(?:32|64|x32|exec)?")


def system_problem(real: str) -> str | None:
    """Why the resolved path ``real`` is no library by where it is, or None (the path alone, no disk)."""
    if real == "/":
        return "the whole system, not a media library"
    parts = real.split("/")  # "", top, ...
    if parts[1] == "run" and len(parts) > 2 and parts[2] == "media":
        if len(parts) >= 5:
            return None  # /run/media/USER/DISK[/...]: a removable disk (udisks)
        return "where disks are mounted; name the library directory on one"
    top = "/" + parts[1]
    if top in _SYSTEM or _LIB.fullmatch(parts[1]):
        return f"a system directory (under {top}), not a media library"
    return None


def media_root_problem(root: str, install_root: str) -> str | None:
    """Why the media walk must not treat ``root`` as a library, or None when it may.

    ``root`` is the bind mount's host path (absolute); ``install_root`` the
    installation directory. One line naming the path (and what it resolves
    to), for a :class:`~checks.change.plan.Refusal` or a refused apply or undo.
    """
    root = os.path.abspath(root)
    if os.path.islink(root):
        return f"{root} is a symbolic link, not followed; point the mount at the directory itself"
    real = os.path.realpath(root)
    shown = real if real == root else f"{root} (which is {real})"
    why = system_problem(real)
    if why is None:
        who = _homes().get(real)
        if who is not None:
            why = f"the home directory of {who}, not a media library; name the library directory inside it"
    if why is None and real in _TOPS:
        why = "a directory of other directories (disks, users, services); name the library directory inside it"
    if why is None:
        inst = os.path.realpath(install_root)
        if inst == real:
            why = "the installation directory itself; name the library directory"
        elif _under(inst, real):
            why = f"it holds the installation directory {inst}; name the library directory itself"
        elif _under(real, os.path.join(inst, JOURNAL_DIR)):
            why = "inside dester-harden's journal"
    return None if why is None else f"{shown}: {why}"


def manual_step(root: str) -> str:
    """What to do by hand about a refused media root."""
    return (f"point the media bind mount at the library directory itself (not {root}), then run the fix again; "
            "or `chmod -R u=rwX,go=rX` the library by hand, never a system or home directory")
