"""How a path is shown to the user: relative to the installation when inside it, else absolute."""

from __future__ import annotations

import os


def display_path(path: str, root: str, *, escaped: bool = False) -> str:
    """``path`` relative to ``root`` when it lies inside, else as given.

    With ``escaped`` the result has control characters escaped
    (:func:`checks.core.textio.shown`): the form screens and reports print.
    """
    rel = os.path.relpath(path, root)
    shown_path = path if rel.startswith("..") else rel
    if escaped:
        from checks.core.textio import shown

        return shown(shown_path)
    return shown_path
