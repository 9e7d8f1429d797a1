"""F1: what the current screen is for, and its keys."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Markdown, Static

GENERAL = """\
**Keys everywhere**: F1 this help · Ctrl+P command palette (jump to any screen) · Ctrl+Q quit ·
Tab / Shift+Tab move between parts of a screen · arrows and Space choose · Esc goes back.

Nothing is written until you choose **Apply** on a preview; every applied change can be taken back from
**History**. Secrets are masked everywhere unless you reveal them on the password step.
"""


class HelpScreen(ModalScreen[None]):
    """Help for one screen: its purpose, its keys, and the keys everywhere."""

    CSS_PATH = "help.tcss"

    BINDINGS = [Binding("escape,f1,q", "close", "Close", id="help.close", tooltip="Close the help")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self._for = screen

    def compose(self) -> ComposeResult:
        name = getattr(self._for, "NAME", "") or type(self._for).__name__
        text = getattr(self._for, "HELP", "") or ""
        keys = []
        for binding in getattr(self._for, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.show and binding.description:
                label = ", ".join(k.strip().replace("escape", "Esc").replace("enter", "Enter").replace("space", "Space")
                                  for k in binding.key.split(","))
                keys.append(f"- **{label}**: {binding.tooltip or binding.description}")
        with Vertical():
            with VerticalScroll():
                yield Markdown(f"## {name}\n\n{text}", id="help-text")
                if keys:
                    yield Markdown("**Keys on this screen**\n\n" + "\n".join(keys), id="help-keys")
                yield Markdown(GENERAL, id="help-general")
            yield Static("Esc or F1 closes this help.", id="help-close")

    def action_close(self) -> None:
        self.dismiss(None)
