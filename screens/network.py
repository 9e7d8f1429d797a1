"""Network exposure: local, Tailscale or internet, and the port bindings that choice implies."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from checks.assistant.steps import PROFILES
from tui.widgets import ChoiceList, clip

from ._base import FixStepScreen


class NetworkScreen(FixStepScreen):
    """Choose who may reach DesterLib; the port-binding fixes follow from it."""

    STEP = "network"
    NAME = "Network exposure"
    CSS_PATH = "network.tcss"
    INTRO = "Who should reach DesterLib? (↑↓ Enter to choose, Tab to the fixes)"
    HELP = ("DesterLib has no login yet, so who can reach it is the whole of its security.\n\n"
            "- **Local network only**: the API for devices at home; the database and Redis on 127.0.0.1.\n"
            "- **Through Tailscale**: the API on 127.0.0.1, carried to your devices by `tailscale serve`.\n"
            "- **On the internet**: only an HTTPS reverse proxy with a login faces the internet (the TLS step).\n\n"
            "Docker publishes ports past ufw's rules, so binding to 127.0.0.1 is the fix that holds. "
            "The list below shows the changes this choice implies; the preview at the bottom shows the exact lines.")

    def compose_extra(self):
        current = self.session.choices.profile
        items = [(key, Text(title, style="bold"), sentence) for key, (title, sentence) in PROFILES.items()]
        yield ChoiceList(items, multiple=False, chosen={current}, id="network-profile")
        yield Static("", id="network-live")

    def setup(self) -> None:
        super().setup()
        self.query_one("#network-profile", ChoiceList).focus()
        self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)

    def show_live(self, live, pending: bool = False) -> None:
        """What listens now, per database and cache port, and what is fixed on disk but not applied."""
        from screens._live import CHECKING, drift_lines, engine_line, hanging, listening_lines

        box = self.query_one("#network-live", Static)
        if pending:
            box.update(Text(CHECKING, style="dim"))
            return
        box.display = live is not None
        if live is None:
            box.update("")
            return
        width = max(30, self.size.width - 12)  # after "Now: ", inside the padding and the scroll bar
        rows: list[tuple[str, str]] = []
        if not live.docker_reachable:
            rows.append((engine_line(live, self.dester_app.euid), "yellow"))
        lines = listening_lines(self.session.inst, live)
        rows += [(line, "red" if "listening now on" in line and _exposed(line) else "") for line in lines]
        drifted = drift_lines(self.session.report)
        if not lines and not drifted and live.docker_reachable:
            rows.append(("nothing of the database or cache listens", ""))
        t = Text()
        t.append("Now: ", style="bold")
        for i, (line, style) in enumerate(rows):  # one line each: the fixes and their effect stay in view
            t.append(("\n     " if i else "") + clip(line, width), style=style)
        for i, line in enumerate(drifted):  # drift wraps: what must be recreated is said whole
            t.append(("\n     " if rows or i else "") + hanging("Now: ", line, width + 5)[5:], style="yellow")
        box.update(t)

    def on_choice_list_changed(self, event: ChoiceList.Changed) -> None:
        if event.choice_list.id != "network-profile":
            super().on_choice_list_changed(event)
            return
        key = next(iter(event.choice_list.chosen))
        if key == self.session.choices.profile:
            return
        self.session.choices.profile = key
        self.session.choices.selected.pop(self.STEP, None)
        self.query_one("#step-effect", Static).update("Auditing for this profile…")
        self.run_worker(self._reaudit, thread=True, exclusive=True, group="network-profile", exit_on_error=False)

    def _reaudit(self) -> None:
        self.session.audit()
        self.app.call_from_thread(self._after_reaudit)

    def _after_reaudit(self) -> None:
        if self.is_attached:
            self.fill_fixes()
            self.refresh_effect()
            self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)


def _exposed(line: str) -> bool:
    """A "listening now on" line naming an address other than loopback."""
    addresses = line.split("listening now on ", 1)[-1].replace(" and ", ", ").split(", ")
    return any(not (a.startswith("127.") or a.startswith("[::1]")) for a in addresses)
