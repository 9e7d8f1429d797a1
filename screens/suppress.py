"""A small modal: accept a failing finding with a reason (and an optional last day)."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Static

from tui.widgets import plain


class SuppressModal(ModalScreen[bool]):
    """Asks for the reason (required) and an until date (optional); ``add`` writes the suppression.

    ``add(reason, until)`` is :meth:`checks.assistant.session.Session.suppress` (the same
    checks function as ``dester-harden suppress``); a refusal stays on screen as one line.
    """

    CSS_PATH = "suppress.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel", id="suppress.cancel", tooltip="Close without suppressing")]

    def __init__(self, check: str, title: str, add: Callable[[str, str | None], None]) -> None:
        super().__init__()
        self.check, self.title_text, self.add = check, title, add

    def compose(self) -> ComposeResult:
        with Vertical(classes="suppress-box"):
            yield Static(plain(f"Suppress {self.check}: {self.title_text}"), classes="modal-title")
            yield Static("Shown as suppressed, not counted in the score or the exit code, until the date.")
            yield Input(placeholder="Reason (required): why this finding is accepted", id="suppress-reason")
            yield Input(placeholder="Until (optional): YYYY-MM-DD", id="suppress-until")
            yield Static("", id="suppress-error")
            with Horizontal(classes="modal-buttons"):
                yield Button("Suppress", id="suppress-ok", variant="primary")
                yield Button("Cancel", id="suppress-cancel")

    def on_mount(self) -> None:
        self.query_one("#suppress-reason", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "suppress-reason":
            self.query_one("#suppress-until", Input).focus()
        else:
            self.submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "suppress-ok":
            self.submit()
        else:
            self.dismiss(False)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def submit(self) -> None:
        from checks.core.errors import InputError
        from tui.errors import one_line

        reason = self.query_one("#suppress-reason", Input).value
        until = self.query_one("#suppress-until", Input).value.strip() or None
        try:
            self.add(reason, until)
        except (InputError, ValueError, OSError) as exc:
            self.query_one("#suppress-error", Static).update(plain(one_line(exc)))
            return
        self.dismiss(True)
