"""First run: what was found, how exposed it is, and the score."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from checks.audit.findings import FAIL
from checks.core.textio import shown
from tui.widgets import SEVERITY_STYLE, score_text

from ._base import DesterScreen


class WelcomeScreen(DesterScreen):
    """The first screen of a first run: the installation as found, then the guided setup."""

    NAME = "Welcome"
    CSS_PATH = "welcome.tcss"
    HELP = ("dester-harden looked at the DesterLib installation below: its compose and env files, the ports it "
            "publishes, its media library. The score is 100 when nothing fails; each failing check lowers it by "
            "its severity.\n\nPress **Enter** to start the guided setup: one decision per screen, a preview of every "
            "change before it is made, and an undo for each. Nothing is written until you apply a preview.\n\n"
            "**Running** is what the Docker Engine says runs now (or why it could not be asked: then the "
            "changes are made to the files only, and the screens say what to do by hand).")
    BINDINGS = [
        Binding("enter,s", "start", "Start setup", id="welcome.start", tooltip="Start the guided setup"),
        Binding("h", "app.history", "History", id="welcome.history", tooltip="The undo journal: earlier changes"),
        Binding("r", "refresh", "Re-audit", id="welcome.refresh", tooltip="Read the files again"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="welcome-body"):
            yield Static(Text("Auditing…"), id="welcome-score")
            yield Static("", id="welcome-found")
            yield Static("", id="welcome-live")
            yield Static("", id="welcome-top")
        yield Static("Press Enter to start the guided setup.", id="welcome-next")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)
        self.load()

    def action_refresh(self) -> None:
        self.query_one("#welcome-score", Static).update(Text("Auditing…"))
        self.dester_app.forget_live()  # asked again after the recovery, with the files
        self.load()

    def show_live(self, live, pending: bool = False) -> None:
        """The Engine's line ("Docker Engine 20.10.24: 3 containers running"); hidden when not checked.

        A state that arrives after the files' audit brings the live checks:
        the audit is run again with it (without recovering twice).
        """
        from screens._live import CHECKING, engine_line, hanging

        line = self.query_one("#welcome-live", Static)
        if pending:
            line.update(Text.assemble(("Running      ", "bold"), (CHECKING, "dim")))
            return
        line.display = live is not None
        if live is None:
            line.update("")
            return
        label = "Running      "
        text = hanging(label, engine_line(live, self.dester_app.euid), max(40, self.size.width - 4))
        line.update(Text.assemble((label, "bold"), (text[len(label):], "" if live.docker_reachable else "yellow")))
        self.load(recover=False)  # exclusive: an audit still running without it is cancelled

    @work(thread=True, exclusive=True, group="welcome-audit", exit_on_error=False)
    def load(self, recover: bool = True) -> None:
        session = self.session
        try:
            recovered = session.recover() if recover else session.recovered
            if recover:  # the live state is read once nothing is left half-applied
                self.app.call_from_thread(self.dester_app.start_live)
            report = session.audit()
            summary = session.summary()
        except Exception as exc:  # noqa: BLE001 - one line on screen, never a traceback
            from tui.errors import one_line

            session.report = None
            self.app.call_from_thread(self.show_error, one_line(exc))
            return
        from textual.worker import get_current_worker

        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self.show, report, summary, recovered)

    def show_error(self, message: str) -> None:
        self.query_one("#welcome-score", Static).update(
            Text("Cannot audit this installation: " + message, style="bold red"))
        self.query_one("#welcome-found", Static).update(
            "Nothing was changed. Fix the file named above (or point --dir at the right directory), then press r.")
        self.query_one("#welcome-top", Static).update("")
        self.query_one("#welcome-next", Static).update("Press r to read the files again, Ctrl+Q to quit.")

    def show(self, report, summary, recovered) -> None:
        self.dester_app.preload_screens()
        self.query_one("#welcome-score", Static).update(score_text(report))
        t = Text()
        for m in recovered:
            t.append(shown(m) + "\n", style="yellow")
        t.append("Installation ", style="bold")
        t.append(f"{self.session.shown_root}  ({summary.layout} layout)\n")
        t.append("Services     ", style="bold")
        t.append(", ".join(shown(s) for s in summary.services) or "none found")
        t.append("\nFiles        ", style="bold")
        t.append(", ".join(shown(f) for f in summary.compose_files + summary.env_files))
        t.append("\nPublished    ", style="bold")
        t.append("\n             ".join(shown(e) for e in summary.exposure) or "no published ports")
        if summary.media:
            t.append("\nMedia        ", style="bold")
            t.append(", ".join(shown(m) for m in summary.media))
        self.query_one("#welcome-found", Static).update(t)
        top = Text()
        top.append("Most urgent\n", style="bold")
        rank = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
        failing = sorted((f for f in report.findings if f.status == FAIL), key=lambda f: rank.get(f.severity, 5))
        for f in failing[:6]:
            top.append(f"  {f.severity:<8}", style=SEVERITY_STYLE.get(f.severity, ""))
            top.append(f" {f.id}  {f.check.title}\n")
        if len(failing) > 6:
            top.append(f"  … and {len(failing) - 6} more\n", style="dim")
        if not failing:
            top = Text("Nothing fails in the files. The guided setup still walks through firewall, HTTPS and "
                       "backups.\n")
        self.query_one("#welcome-top", Static).update(top)

    def action_start(self) -> None:
        if self.session.report is None:
            self.notify("The installation could not be read yet: see the message above.", severity="warning")
            return
        self.dester_app.start_guided()
