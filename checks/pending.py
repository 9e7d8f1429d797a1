"""Is a transaction unfinished? Asked by every command, so kept import-light.

The audit path runs this on each start: it must cost a directory listing, not
the engine's or the journal's imports.
"""

from __future__ import annotations

import os

JOURNAL_DIR = ".dester-harden"


def has_unfinished(install_root: str) -> bool:
    """Cheap test: is any transaction not yet applied or rolled back?"""
    root = os.path.join(install_root, JOURNAL_DIR, "txn")
    try:
        names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return False
    for name in names:
        try:
            with open(os.path.join(root, name, "state"), encoding="ascii") as fh:
                if fh.read().strip() in ("applied", "rolled-back"):
                    continue
        except (FileNotFoundError, NotADirectoryError, UnicodeDecodeError):
            pass
        except PermissionError:
            return False
        return True
    return False
