"""F1: what the current screen is for, and its keys."""

from __future__ import annotations

import re

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GENERAL = """\
**Keys everywhere**: F1 this help · Ctrl+P command palette (jump to any screen) · Ctrl+Q quit · \
Tab / Shift+Tab move between parts of a screen · arrows and Space choose · Esc goes back.

Nothing is written until you choose **Apply** on a preview; every applied change can be taken back from \
**History**. Secrets are masked everywhere unless you reveal them on the password step.
"""

_INLINE = re.compile(r"\*\*(.+?)\*\*|`([^`]+)`")


def help_text(source: str) -> Text:
    """The help's light markup as styled text: **bold**, `code`, and "- " list items.

    Plain Text rather than a Markdown widget: the help opens in one frame.
    """
    out = Text()
    for line in source.split("\n"):
        if line.startswith("- "):
            out.append("  • ")
            line = line[2:]
        pos = 0
        for m in _INLINE.finditer(line):
            out.append(line[pos:m.start()])
            if m.group(1) is not None:
                out.append(m.group(1), style="bold")
            else:
                out.append(m.group(2), style="bold cyan")
            pos = m.end()
        out.append(line[pos:] + "\n")
    return out


class HelpScreen(ModalScreen[None]):
    """Help for one screen: its purpose, its keys, and the keys everywhere."""

    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,f1,q,b", "close", "Close", id="help.close", tooltip="Close the help")]

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self._for = screen

    def compose(self) -> ComposeResult:
        name = getattr(self._for, "NAME", "") or type(self._for).__name__
        text = Text(name + "\n\n", style="bold underline")
        text.append_text(help_text(getattr(self._for, "HELP", "") or ""))
        keys = Text()
        for binding in getattr(self._for, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.show and binding.description:
                label = ", ".join(k.strip().replace("escape", "Esc").replace("enter", "Enter").replace("space", "Space")
                                  for k in binding.key.split(","))
                keys.append(f"  {label:<10}", style="bold")
                keys.append(f"{binding.tooltip or binding.description}\n")
        with Vertical():
            with VerticalScroll():
                yield Static(text, id="help-text")
                if keys:
                    yield Static(Text("Keys on this screen\n", style="bold") + keys, id="help-keys")
                yield Static(help_text(GENERAL), id="help-general")
            yield Static("Esc or F1 closes this help.", id="help-close")

    def action_close(self) -> None:
        self.dismiss(None)
