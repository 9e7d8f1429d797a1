"""Confirm an undo after seeing exactly what it changes."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Button

from ._base import DiffModal


class UndoModal(DiffModal):
    """The undo's diff; dismisses True to undo, False to keep things as they are."""

    NAME = "Undo preview"
    CSS_PATH = "undo.tcss"
    HELP = ("The diff takes the transaction back: contents, modes and owners as they were before it. **u** undoes "
            "it (itself recorded as a transaction), **Esc** keeps everything as it is. When files were edited by "
            "hand since, their changes are shown first and undo overwrites them only because you confirm here.")
    BINDINGS = [
        Binding("u", "choose(True)", "Undo it", id="undo.confirm", tooltip="Undo this transaction"),
        Binding("escape,b", "choose(False)", "Keep", id="undo.cancel", tooltip="Keep things as they are"),
    ]

    def __init__(self, txn_id: str, preview: str, conflicts: bool) -> None:
        super().__init__(preview)
        self.txn_id = txn_id
        self.conflicts = conflicts

    def heading(self) -> Text:
        title = Text(f"Undo {self.txn_id}", style="bold")
        if self.conflicts:
            title.append("  files were edited since: undo overwrites those edits", style="bold red")
        return title

    def buttons(self):
        yield Button("Undo it (u)", id="yes", variant="error" if self.conflicts else "warning")
        yield Button("Keep (Esc)", id="no")

    def action_choose(self, yes: bool) -> None:
        self.dismiss(bool(yes))

    def choose(self, answer: str | None) -> None:
        self.dismiss(answer == "yes")
