"""Is a transaction unfinished? Asked by every command, so kept import-light.

The audit path runs this on each start: it must cost a directory listing (and
the journal's trust checks, a few ``lstat`` calls a transaction), not the
engine's or the journal's imports.
"""

from __future__ import annotations

import os

from checks.change.statedir import JOURNAL_DIR as JOURNAL_DIR  # re-exported
from checks.change.statedir import journal_dir
from checks.change.trust import UntrustedJournal, verify_journal

FINISHED = ("applied", "rolled-back", "resolved")
"""States recovery has nothing left to do for (resolved: put back by hand, ``undo --resolved``)."""


def has_unfinished(install_root: str) -> bool:
    """Cheap test: is any transaction not yet applied or rolled back?

    Also True for a journal that fails the trust checks, so that the caller's
    slow path (:func:`checks.change.engine.recover_install`) says why in one line.
    """
    try:
        journal = journal_dir(install_root)
        if not verify_journal(journal):
            return False
    except UntrustedJournal:
        return True
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    root = os.path.join(journal, "txn")
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    for name in names:
        try:
            with open(os.path.join(root, name, "state"), encoding="ascii") as fh:
                if fh.read().strip() in FINISHED:
                    continue
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            pass
        except PermissionError:
            return False
        return True
    return False
