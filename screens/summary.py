"""Summary: the security guide's checklist with ticks, the new score, and what remains and why."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from checks.assistant.checklist import checklist, remaining_reason
from checks.audit.findings import FAIL
from checks.core.textio import shown
from tui.widgets import SEVERITY_STYLE, score_text

from ._base import DesterScreen

MARKS = {"done": ("[✓]", "green"), "todo": ("[✗]", "red"), "unknown": ("[?]", "yellow"), "na": ("[–]", "dim")}


class SummaryScreen(DesterScreen):
    """Where the installation stands after the guided setup."""

    NAME = "Summary"
    CSS_PATH = "summary.tcss"
    HELP = ("The checklist is DesterLib's security guide: ✓ done, ✗ still to do, ? not checked from the files (it "
            "needs the running system), – does not apply to your exposure. Below it, every check that still fails "
            "and why. Next time you run dester-harden it compares the installation with this state and shows what "
            "drifted.")
    BINDINGS = [
        Binding("enter,d", "finish", "Done", id="summary.done", tooltip="Finish the guided setup"),
        Binding("h", "app.history", "History", id="summary.history", tooltip="The undo journal"),
    ]

    def __init__(self, start_score: int | None = None, skipped: set[str] | None = None,
                 refused: dict[str, str] | None = None) -> None:
        super().__init__()
        self.start_score = start_score
        self.skipped = skipped or set()
        self.refused = refused or {}

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="summary-body"):
            yield Static("", id="summary-score")
            yield Static("", id="summary-before")
            yield Static("", id="summary-checklist")
            yield Static("", id="summary-remaining")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.sub_title = self.NAME
        session = self.session
        report = session.report
        if report is None:  # the flows audit before they show the summary
            self.query_one("#summary-score", Static).update("Not audited yet.")
            return
        score = score_text(report, "Score now")
        if self.start_score is not None:
            score.append(f"   (was {self.start_score}/100)")
        self.query_one("#summary-score", Static).update(score)
        notes = self.dester_app.applied_notes
        before = self.query_one("#summary-before", Static)
        if notes:
            b = Text()
            b.append("Before `docker compose up -d`\n", style="bold yellow")
            for n in notes:
                b.append(f"  • {shown(n)}\n")
            before.update(b)
        else:
            before.display = False
        t = Text()
        t.append("Security checklist\n", style="bold")
        for item in checklist(report, session.choices.profile):
            mark, style = MARKS[item.state]
            t.append(f" {mark} ", style=style)
            t.append(f"{item.label}\n")
            if item.state != "done":
                t.append(f"     {shown(item.detail)}\n", style="dim")
        self.query_one("#summary-checklist", Static).update(t)
        failing = [f for f in report.findings if f.status == FAIL]
        r = Text()
        r.append("What remains, and why\n", style="bold")
        if not failing:
            r.append("  Nothing fails in the files.\n", style="green")
        for f in failing:
            r.append(f"  {f.severity:<8} ", style=SEVERITY_STYLE.get(f.severity, ""))
            r.append(f"{f.id} {f.check.title}\n")
            r.append(f"           {shown(remaining_reason(f, self.skipped, self.refused))}\n", style="dim")
        self.query_one("#summary-remaining", Static).update(r)
        self.query_one("#summary-body").focus()

    def action_finish(self) -> None:
        self.dismiss(None)
