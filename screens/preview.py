"""The preview of one step's changes before they are made: apply, skip, or go back."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Button

from ._base import DiffModal
from ._results import PreviewChoice


class PreviewModal(DiffModal):
    """Every change of a plan as a masked diff. Dismisses with a :class:`PreviewChoice`."""

    NAME = "Preview"
    CSS_PATH = "preview.tcss"
    HELP = ("This is exactly what will be written: the diff of each file (secrets masked), each mode change, and "
            "the media tree as counts. **a** applies it as one transaction (all of it or nothing, journaled first, "
            "undoable from History), **s** skips this step, **b** or Esc goes back to change your choices.")
    BINDINGS = [
        Binding("a", "choose('apply')", "Apply", id="preview.apply",
                tooltip="Apply these changes (one undoable transaction)"),
        Binding("s", "choose('skip')", "Skip", id="preview.skip", tooltip="Leave these files as they are"),
        Binding("b,escape", "choose('back')", "Back", id="preview.back", tooltip="Go back and change the choices"),
    ]

    def __init__(self, title: str, preview: str, score_before: int, score_after: int, can_apply: bool = True) -> None:
        super().__init__(preview)
        self._title = title
        self._scores = (score_before, score_after)
        self._can_apply = can_apply

    def heading(self) -> Text:
        head = Text(self._title, style="bold")
        if self._can_apply:
            head.append(f"   score {self._scores[0]} -> {self._scores[1]}")
        return head

    def buttons(self):
        yield Button("Apply (a)", id="apply", variant="success", disabled=not self._can_apply)
        yield Button("Skip (s)", id="skip")
        yield Button("Back (b)", id="back")

    def action_choose(self, what: str) -> None:
        self.choose(what)

    def choose(self, answer: str | None) -> None:
        """``answer``: a button id or a key's action argument ("apply", "skip", "back")."""
        choice = PreviewChoice(answer) if answer in {c.value for c in PreviewChoice} else PreviewChoice.BACK
        if choice is PreviewChoice.APPLY and not self._can_apply:
            return
        self.dismiss(choice)
