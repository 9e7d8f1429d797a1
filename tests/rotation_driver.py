"""One live rotation of an installation, or the undo of the last one, as its own process.

``python -m tests.rotation_driver ROOT``: SEC-001 planned with the live state and applied through
the use cases when the database password is weak; otherwise the last transaction undone (which is
a rotation back). tests/test_rotation_live.py kills it at random instants; it prints one line
(``rotate ok`` / ``undo ok`` / ``... reverted``) and never a password.
"""

from __future__ import annotations

import sys

from checks.assistant import usecases
from checks.install.discovery import discover
from checks.live.gather import gather


def main(root: str) -> int:
    usecases.recover(root, strict=True)
    state = gather(discover(root), probe=False, logs=False)
    planned = usecases.plan(root, "local", only={"SEC-001"}, live=state)
    if planned.plan.empty:
        out = usecases.undo(root, usecases.undo_preview(root, None), profile="local")
        what = "undo"
    else:
        out = usecases.apply(root, planned.plan, command="fix", profile="local")
        what = "rotate"
    print(what, "reverted" if out.reverted else "ok", flush=True)
    return 1 if out.reverted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
