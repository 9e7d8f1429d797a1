"""The per-entry progress log: which entries of a transaction started, finished, failed or were reverted.

``<txn>/progress`` gets one line per event (``started 3``, ``done 3``,
``failed 3``, ``reverted 3``), appended and fsynced before the engine goes on,
so recovery knows exactly which entries ran: a command cannot be checked by
hash after a crash. A torn last line (a kill mid-write) is ignored: the event
it was about did not happen yet as far as recovery is concerned (an entry is
rolled back from "started" as carefully as from "done").

Intents that record ``"progress": true`` have it; for older ones every entry
is taken as started (their rollback is checked by hash).
"""

from __future__ import annotations

import os

NAME = "progress"
EVENTS = ("started", "done", "failed", "reverted")


class Progress:
    """Reads and appends one transaction's progress log."""

    def __init__(self, txn_dir: str) -> None:
        self.path = os.path.join(txn_dir, NAME)

    def mark(self, event: str, index: int) -> None:
        """Record ``event`` for entry ``index``, on disk before this returns."""
        assert event in EVENTS
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{event} {index}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, raw: bytes | None) -> dict[int, str]:
        """Entry index -> its last event, from the log's bytes."""
        out: dict[int, str] = {}
        for line in (raw or b"").split(b"\n")[:-1]:  # the part after the last newline may be torn
            parts = line.decode("ascii", "replace").split()
            if len(parts) == 2 and parts[0] in EVENTS and parts[1].isdigit():
                out[int(parts[1])] = parts[0]
        return out
