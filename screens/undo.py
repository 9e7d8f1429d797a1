"""Confirm an undo after seeing exactly what it changes."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.widgets import DiffView


class UndoModal(ModalScreen[bool]):
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
        super().__init__()
        self.txn_id = txn_id
        self.preview = preview
        self.conflicts = conflicts

    def compose(self) -> ComposeResult:
        with Vertical(id="undo-box"):
            title = Text(f"Undo {self.txn_id}", style="bold")
            if self.conflicts:
                title.append("  files were edited since: undo overwrites those edits", style="bold red")
            yield Static(title, id="undo-title")
            yield DiffView(self.preview, id="undo-diff")
            with Horizontal(id="undo-buttons"):
                yield Button("Undo it (u)", id="yes", variant="error" if self.conflicts else "warning")
                yield Button("Keep (Esc)", id="no")

    def on_mount(self) -> None:
        self.query_one(DiffView).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_choose(self, yes: bool) -> None:
        self.dismiss(yes)
