"""The host's own lock and journal, for changes outside any installation (/etc, system timers, the firewall).

Kept apart from the per-install journal: ``<state base>/host/`` (for root
``/var/lib/dester-harden/host/``; ``$DESTER_HARDEN_STATE_DIR/host`` in tests),
with the same trust checks (:func:`checks.change.trust.verify_journal`: a
directory or file of another user, a symbolic link, or one group/other
writable, is refused with one line and nothing in it is acted on). A plan with
host changes takes the host lock as well as the installation's, so two
installations never change the host at once; each such transaction leaves a
record ``host/txn/<id>.json`` (which installation journaled it, which
commands it ran), so the host's changes can be found from the host.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from checks.change.lock import hold
from checks.change.statedir import ensure_dir, state_base
from checks.change.trust import verify_journal
from checks.core.atomic import write_private


def host_dir() -> str:
    """The host journal's directory (not created)."""
    return os.path.join(state_base(), "host")


def _ready() -> str:
    d = host_dir()
    if os.path.lexists(d):
        verify_journal(d)  # before anything is changed in it, even its mode
    ensure_dir(d, parents=True)
    verify_journal(d)
    return d


@contextmanager
def host_locked(command: str) -> Iterator[str]:
    """Hold the host lock (refuse an untrusted host journal, or one held by another run); the directory."""
    from checks.change.journal import holder_info

    d = _ready()
    with hold(os.path.join(d, "lock"), holder_info(command), what="this host"):
        yield d


def record(txn_id: str, install_root: str, entries: list[dict[str, Any]]) -> None:
    """Note a transaction with host changes in the host journal (lock held)."""
    d = _ready()
    tdir = os.path.join(d, "txn")
    ensure_dir(tdir)
    write_private(os.path.join(tdir, f"{txn_id}.json"),
                  json.dumps({"id": txn_id, "install": install_root, "entries": entries}, indent=1).encode())


def records() -> list[dict[str, Any]]:
    """The host journal's records, after checking every level of it."""
    d = host_dir()
    if not verify_journal(d):
        return []
    tdir = os.path.join(d, "txn")
    out = []
    for name in sorted(os.listdir(tdir)) if os.path.isdir(tdir) else []:
        from checks.change.trust import read_checked

        raw = read_checked(os.path.join(tdir, name))
        try:
            out.append(json.loads(raw or b"{}"))
        except ValueError:
            continue
    return out
