"""Where the journal of an installation lives for the user running dester-harden.

* The effective uid owns the install directory, and it and every directory
  above it are closed to other users: ``<install>/.dester-harden`` (as before).
* Otherwise (typically root on ``~alice/.desterlib``): a journal of the
  effective uid's own, outside the installation: ``/var/lib/dester-harden``
  for root, ``$XDG_STATE_HOME/dester-harden`` (``~/.local/state``) for anyone
  else; ``$DESTER_HARDEN_STATE_DIR`` overrides both (tests; sudo's env_reset
  drops it). There each installation has ``installs/<dev>-<inode>/``, found by
  the install directory's inode first (so it survives a move), then by the
  path recorded in its ``install.json``. The owner's ``.dester-harden`` inside
  the install is then never read or touched.

The fallback file for secrets (no working keyring) is always in the effective
uid's state directory, under ``secrets/``. See
docs/adr/0001-journal-location-and-trust.md. Imported on every audit start:
``os``, ``json`` and :mod:`checks.change.trust` only.
"""

from __future__ import annotations

import contextlib
import json
import os

from checks.change.trust import UntrustedJournal, check_ancestors, closed_to_others, open_checked, read_checked
from checks.core.names import JOURNAL_DIR as JOURNAL_DIR  # re-exported

STATE_ENV = "DESTER_HARDEN_STATE_DIR"
INSTALL_RECORD = "install.json"


def state_base() -> str:
    """The effective uid's own state directory (not created here)."""
    env = os.environ.get(STATE_ENV)
    if env:
        return os.path.realpath(env)
    if os.geteuid() == 0:
        return "/var/lib/dester-harden"
    xdg = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(os.path.realpath(xdg), "dester-harden")


def secrets_dir() -> str:
    """Where secrets go when no keyring works: the effective uid's state directory, never a journal."""
    return os.path.join(state_base(), "secrets")


def hosts_journal(install_root: str) -> bool:
    """Does the journal of the effective uid live inside this installation?"""
    real = os.path.realpath(install_root)
    try:
        st = os.stat(real)
    except OSError:
        return True  # nothing to find there anyway; callers report the missing directory
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022 and closed_to_others(real)


def journal_dir(install_root: str, create: bool = False) -> str:
    """The journal directory for ``install_root`` (created, 0700, when ``create``)."""
    real = os.path.realpath(install_root)
    if hosts_journal(real):
        path = os.path.join(real, JOURNAL_DIR)
        if create:
            ensure_dir(path)
        return path
    st = os.stat(real)
    base = state_base()
    installs = os.path.join(base, "installs")
    if create:
        ensure_dir(base, parents=True)
        ensure_dir(installs)
        ensure_dir(secrets_dir())
    check_ancestors(installs)
    by_inode = os.path.join(installs, f"{st.st_dev}-{st.st_ino}")
    path = by_inode if os.path.lexists(by_inode) else _by_recorded_path(installs, real) or by_inode
    if create:
        ensure_dir(path)
        record = os.path.join(path, INSTALL_RECORD)
        data = json.dumps({"path": real, "dev": st.st_dev, "ino": st.st_ino}).encode()
        if read_checked(record) != data:
            from checks.core.atomic import write_private

            write_private(record, data)
    return path


def _by_recorded_path(installs: str, real: str) -> str | None:
    """The journal whose install.json records ``real`` (the directory was replaced, not moved)."""
    try:
        names = sorted(os.listdir(installs))
    except (FileNotFoundError, NotADirectoryError):
        return None
    for name in names:
        try:
            raw = read_checked(os.path.join(installs, name, INSTALL_RECORD))
            if raw and json.loads(raw).get("path") == real:
                return os.path.join(installs, name)
        except (UntrustedJournal, OSError, ValueError, AttributeError):
            continue  # the journal itself is checked when it is used
    return None


def ensure_dir(path: str, parents: bool = False) -> None:
    """Create ``path`` 0700 if missing; refuse one that is not ours (see :mod:`checks.change.trust`)."""
    parent = os.path.dirname(path)
    if parents and not os.path.isdir(parent):
        os.makedirs(parent, mode=0o755, exist_ok=True)
    check_ancestors(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    pfd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = open_checked(os.path.basename(path), pfd, path, True)
    finally:
        os.close(pfd)
    if fd is None:  # pragma: no cover - removed between mkdir and open
        raise UntrustedJournal(path, "disappeared while it was being created")
    os.close(fd)
