"""Re-audit: what changed since dester-harden last hardened this installation."""

from __future__ import annotations

import datetime as _dt

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from checks.assistant.baseline import drift
from checks.assistant.steps import STEP_BY_ID, STEP_OF_CHECK
from checks.core.textio import shown
from tui.widgets import clip, score_text

from ._base import DesterScreen

KIND_TEXT = {"regression": ("regressed", "bold red"), "new": ("new", "yellow"), "fixed": ("fixed", "green"),
             "still": ("still failing", "dim"), "unchecked": ("not checked", "yellow")}


class ReauditScreen(DesterScreen):
    """The drift since the baseline: regressions, new findings, fixed ones; Enter jumps to the fix."""

    NAME = "Re-audit"
    CSS_PATH = "reaudit.tcss"
    HELP = ("When dester-harden applies a change it saves the audit as a baseline. This screen compares the "
            "installation now with that baseline:\n\n"
            "- **regressed**: passed then, fails now (say `.env` is back to 0644);\n"
            "- **new**: fails in a place it did not before (a new service, a new published port);\n"
            "- **fixed**: failed then, passes now;\n- **still failing**: as it was.\n\n"
            "Select a row and press **Enter** to go to the screen that fixes it, or **s** to suppress a failing "
            "finding you accept: it asks for the reason and an optional last day, writes it to the settings file "
            "(as `dester-harden suppress` does), and the finding is then shown as suppressed and not counted.")
    BINDINGS = [
        Binding("enter", "open", "Fix", id="reaudit.open", tooltip="Go to the screen that fixes the selected finding"),
        Binding("g", "app.guided", "Guided setup", id="reaudit.guided", tooltip="Walk through every step again"),
        Binding("h", "app.history", "History", id="reaudit.history", tooltip="The undo journal"),
        Binding("r", "refresh", "Re-audit", id="reaudit.refresh", tooltip="Read the files again"),
        Binding("s", "suppress", "Suppress…", id="reaudit.suppress",
                tooltip="Accept the selected failing finding with a reason (not counted in the score)"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="reaudit-body"):
            yield Static("Auditing…", id="reaudit-head")
            yield DataTable(id="reaudit-table", cursor_type="row")
            yield Static("", id="reaudit-foot")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.sub_title = self.NAME
        table = self.query_one(DataTable)
        for label, width in (("change", 13), ("check", 7), ("title", 32), ("step", 13)):
            table.add_column(label, width=width)
        self.load()

    def on_screen_resume(self) -> None:
        if self.session.report is not None and self.query_one(DataTable).row_count:
            self.load()

    def action_refresh(self) -> None:
        self.load()

    def show_live(self, live) -> None:
        """The live state arrived: audit again with it, so drift (DKR-009) shows in the list."""
        if live is not None and self.session.report is not None:
            self.load()

    @work(thread=True, exclusive=True, group="reaudit", exit_on_error=False)
    def load(self) -> None:
        try:
            recovered = self.session.recover()
            self.app.call_from_thread(self.dester_app.start_live)
            report = self.session.audit()
        except Exception as exc:  # noqa: BLE001 - one line on screen, never a traceback
            from tui.errors import one_line

            self.session.report = None
            message = Text("Cannot audit this installation: " + one_line(exc), style="bold red")
            self.app.call_from_thread(self.query_one("#reaudit-head", Static).update, message)
            return
        self.app.call_from_thread(self.show, report, recovered)

    def show(self, report, recovered) -> None:
        self.dester_app.preload_screens()
        base = self.session.baseline
        head = Text()
        for m in recovered:
            head.append(m + "\n", style="yellow")
        head.append(score_text(report))
        if base is not None:
            when = _dt.datetime.fromtimestamp(base.saved_at).strftime("%Y-%m-%d %H:%M")
            head.append(f"\nLast hardened {when} (score then {base.score}/100, {base.profile} profile).")
            d = drift(base, report)
            head.append("\n")
            head.append(f"{len(d.regressions)} regressed", style="bold red" if d.regressions else "")
            head.append(f" · {len(d.new)} new", style="yellow" if d.new else "")
            head.append(f" · {len(d.fixed)} fixed", style="green" if d.fixed else "")
            head.append(f" · {len(d.still)} still failing")
            if d.unchecked:  # passed or failed then, could not be checked now: never shown as passing
                head.append(f" · {len(d.unchecked)} not checked now", style="yellow")
            items = d.regressions + d.new + d.fixed + d.unchecked + d.still
        else:
            items = []
        for w in report.warnings:  # the settings' own: untrusted file, unknown or unused suppressions
            head.append("\n" + shown(w), style="yellow")
        self.query_one("#reaudit-head", Static).update(head)
        table = self.query_one(DataTable)
        table.clear()
        for item in items:
            word, style = KIND_TEXT[item.kind]
            if item.kind != "fixed" and item.finding.id in report.suppressed:
                word, style = "suppressed", "dim"
            table.add_row(Text(word, style=style), item.finding.id, clip(item.finding.check.title, 32),
                          clip(STEP_BY_ID[item.step].short, 13), key=f"{item.kind}:{item.finding.id}")
        foot = "Enter on a row goes to the screen that fixes it." if items else "Nothing to show."
        if base is not None and not d.changed:
            foot = "Nothing drifted since the last hardening. " + foot
        self.query_one("#reaudit-foot", Static).update(foot)
        table.focus()

    def action_open(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count or self.session.report is None:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or ""
        kind, cid = key.split(":", 1)
        self.dester_app.fix_one(STEP_OF_CHECK[cid])

    def action_suppress(self) -> None:
        """Open the suppression modal for the selected failing row; re-audit once one is added."""
        table = self.query_one(DataTable)
        if not table.row_count or self.session.report is None:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value or ""
        kind, cid = key.split(":", 1)
        if kind == "fixed":
            self.notify(f"{cid} passes now: nothing to suppress", severity="warning")
            return
        from checks.audit.catalog import BY_ID

        from .suppress import SuppressModal

        def add(reason: str, until: str | None) -> None:
            self.session.suppress(cid, reason, until)

        def done(added: bool | None) -> None:
            if added:
                self.notify(f"{cid} suppressed (dester-harden settings lists it)")
                self.load()

        self.app.push_screen(SuppressModal(cid, BY_ID[cid].title, add), done)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()
