"""Keep the firewall rules, or have them taken back: the countdown after a firewall step is applied.

Like ``netplan try``: the rules are already live and a revert is armed (a detached process, and a
boot hook, that undo them at the deadline even when this session is gone). Keeping them here
confirms through the session (the same use case as ``dester-harden confirm``); reverting, or the
countdown reaching zero, undoes them now instead of waiting for the detached revert.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from checks.core.textio import shown


class CountdownModal(ModalScreen[str]):
    """Dismisses ``"keep"`` (k, Enter on Keep), ``"revert"`` (r, Esc) or ``"expired"`` (the clock ran out)."""

    NAME = "Keep the firewall rules?"
    CSS_PATH = "countdown.tcss"
    HELP = ("The new firewall rules are live. If you can still use this session (and another SSH login works, "
            "if you want to be sure), keep them with **k** or Enter. **r** or Esc takes them back now. When the "
            "countdown reaches zero they are taken back by themselves, also if this session was cut off, and "
            "after a reboot before you kept them. From another terminal: `dester-harden confirm`.")
    BINDINGS = [
        Binding("k", "answer('keep')", "Keep", id="countdown.keep", tooltip="Keep the new firewall rules"),
        Binding("r,escape", "answer('revert')", "Revert now", id="countdown.revert",
                tooltip="Take the new firewall rules back now"),
    ]

    def __init__(self, deadline: float, clock, lines: list[str] | None = None) -> None:
        super().__init__()
        self.deadline = deadline
        self.clock = clock
        """The session's clock (snapshots fix it, so the frame does not depend on the machine's speed)."""
        self.lines = list(lines or [])

    def remaining(self) -> int:
        return max(0, math.ceil(self.deadline - self.clock()))

    def compose(self):
        with Vertical(classes="countdown-box"):
            yield Static(Text("The new firewall rules are live.", style="bold"), classes="countdown-title")
            body = Text()
            for line in self.lines:
                body.append("• " + " ".join(shown(line).split()) + "\n")
            yield Static(body, classes="countdown-body")
            yield Static("", id="countdown-left", classes="countdown-left")
            with Horizontal(classes="countdown-buttons"):
                yield Button("Keep (k)", id="keep", variant="success")
                yield Button("Revert now (r)", id="revert", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#keep", Button).focus()
        self.tick()
        self.set_interval(0.5, self.tick)

    def tick(self) -> None:
        left = self.remaining()
        if left <= 0:
            self.dismiss("expired")
            return
        t = Text()
        t.append(f"Reverting by themselves in {left} s", style="bold yellow")
        t.append(" unless you keep them.")
        self.query_one("#countdown-left", Static).update(t)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss("keep" if event.button.id == "keep" else "revert")

    def action_answer(self, what: str) -> None:
        self.dismiss(what)
