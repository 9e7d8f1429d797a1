"""A question to answer before a plan is applied to the running stack: yes or no, No by default."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from checks.core.textio import shown


class ConfirmModal(ModalScreen[bool]):
    """The plan's confirmations (``Plan.confirm``), one line each; dismisses True only on a yes.

    No has the focus, so Enter alone never says yes; Esc and n say no.
    """

    NAME = "Confirm"
    CSS_PATH = "confirm.tcss"
    HELP = ("Applying this step recreates running containers, and something about that needs your yes first "
            "(for example: DesterLib's API runs `prisma db push --accept-data-loss` each time it starts, and no "
            "recent backup was found). **y** goes on; **n**, Esc or Enter on No leaves the files and the stack "
            "as they are.")
    BINDINGS = [
        Binding("y", "answer(True)", "Yes, go on", id="confirm.yes", tooltip="Apply this step"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no", tooltip="Leave everything as it is"),
    ]

    def __init__(self, title: str, questions: list[str]) -> None:
        super().__init__()
        self._title = title
        self.questions = list(questions)

    def compose(self):
        with Vertical(classes="confirm-box"):
            yield Static(Text(shown(self._title), style="bold"), classes="confirm-title")
            body = Text()
            for q in self.questions:
                body.append("• " + " ".join(shown(q).split()) + "\n")
            yield Static(body, classes="confirm-body")
            with Horizontal(classes="confirm-buttons"):
                yield Button("Yes (y)", id="yes", variant="warning")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(bool(yes))
