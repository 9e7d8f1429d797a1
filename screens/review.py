"""Review: each step's pending changes in a preview, applied one transaction per step."""

from __future__ import annotations

import asyncio
import contextlib

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from checks.assistant.steps import STEP_BY_ID
from checks.assistant.usecases import Level, Notice
from checks.core.textio import shown
from tui.errors import one_line
from tui.widgets import ProgressLine, clip

from ._base import DesterScreen
from ._live import Outcome, recreated_outcome, reverted_outcome
from ._results import PreviewChoice, ReviewResult
from .confirm import ConfirmModal
from .preview import PreviewModal


class ReviewScreen(DesterScreen):
    """Walks the pending steps in order; dismisses with a :class:`ReviewResult`."""

    NAME = "Review"
    CSS_PATH = "review.tcss"
    HELP = ("Each step with chosen fixes opens as a preview: the exact diff, with secrets masked. Apply makes it "
            "one transaction (journaled first, atomic, undoable from History); Skip leaves those files alone; Back "
            "returns to that step. Each plan is built against the files as they are at that moment, after the "
            "steps applied before it.")
    BINDINGS = [
        Binding("n", "next", "Summary", id="review.next", tooltip="Go on to the summary"),
        Binding("b,escape", "back", "Back", id="review.back", tooltip="Back to the last step"),
    ]

    def __init__(self, steps: list[str]) -> None:
        super().__init__()
        self.steps = steps
        self.state: dict[str, str] = {s: "pending" for s in steps}
        self.done = False
        self.outcomes: list[Outcome] = []
        """What each step applied to the running stack did, in order."""

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="review-body"):
            yield Static("Pending changes, one preview per step:", id="review-intro")
            yield DataTable(id="review-table", cursor_type="row", zebra_stripes=False)
            yield ProgressLine(moving=self.dester_app.cursor_blink, id="review-progress")
            yield Static("", id="review-outcome")
            yield Static("", id="review-status")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.sub_title = self.NAME
        self.query_one("#review-outcome").display = False  # until something was applied to the stack
        table = self.query_one(DataTable)
        table.add_column("state", width=8)
        table.add_column("step", width=29)
        table.add_column("fixes", width=29)
        for s in self.steps:
            fixes = ", ".join(sorted(self.session.choices.selected.get(s, ())))
            table.add_row(self.state[s], clip(STEP_BY_ID[s].title, 29), clip(fixes, 29), key=s)
        if not self.steps:
            self.query_one("#review-status", Static).update(
                "No fixes were chosen: nothing to apply. Press n for the summary.")
            self.done = True
            return
        self.walk()

    def set_state(self, step: str, state: str) -> None:
        self.state[step] = state
        table = self.query_one(DataTable)
        table.update_cell(step, table.ordered_columns[0].key, clip(state, 8))

    @work(exclusive=True, group="review", exit_on_error=False)
    async def walk(self) -> None:
        from checks.change.preview import render

        session = self.session
        status = self.query_one("#review-status", Static)
        notices: list[Notice] = []
        for i, step in enumerate(self.steps):
            if self.state[step] != "pending":
                continue
            status.update(f"Planning {STEP_BY_ID[step].title}…")
            try:
                step_plan = await asyncio.to_thread(session.plan, step)
            except Exception as exc:  # noqa: BLE001
                self.set_state(step, "cannot plan")
                status.update(Text("Cannot plan " + STEP_BY_ID[step].title + ": " + one_line(exc), style="red"))
                continue
            preview = render(step_plan.plan, session.root)
            title = f"{STEP_BY_ID[step].title} ({i + 1} of {len(self.steps)})"
            choice = await self.app.push_screen_wait(
                PreviewModal(title, preview, step_plan.score_before, step_plan.score_after, not step_plan.plan.empty))
            if choice is PreviewChoice.BACK:
                self.tell(notices)
                self.dismiss(ReviewResult.back(step))
                return
            if choice is PreviewChoice.SKIP:
                self.set_state(step, "skipped")
                continue
            questions = [q for q in getattr(step_plan.plan, "confirm", None) or [] if q]
            if questions and not await self.app.push_screen_wait(
                    ConfirmModal(f"Before applying {STEP_BY_ID[step].title}", questions)):
                self.set_state(step, "declined")
                status.update(f"{STEP_BY_ID[step].title}: not applied (you said no); nothing was changed.")
                continue
            status.update(f"Applying {STEP_BY_ID[step].title}…")
            self.set_state(step, "applying")
            progress = self.query_one("#review-progress", ProgressLine)
            progress.services = []
            try:
                done = await self.dester_app.apply_plan(step_plan, make_reporter(self.app, progress))
            except Exception as exc:  # noqa: BLE001
                self.set_state(step, "failed")
                self.notify(one_line(exc), markup=False, title="Nothing was changed", severity="error", timeout=10)
                continue
            finally:
                progress.stop()
            if done.reverted is not None:  # the health gate failed: the engine took it all back by itself
                self.set_state(step, "reverted")
                self.add_outcome(reverted_outcome(done.reverted.message, done.reverted.last_logs,
                                                  _secrets(step_plan, session)))
                continue
            for r in done.recreated:
                self.add_outcome(recreated_outcome(r.services, r.elapsed))
            if done.trial is not None and not await self.kept(step, done.trial):
                continue
            self.set_state(step, "applied")
            self.app.sub_title = self.NAME
            notices += [n for n in done.notices if n not in notices]
            if done.baseline_error:
                notices.append(Notice(Level.WARNING, "The baseline for the re-audit was not saved: "
                                                     + done.baseline_error))
        self.tell(notices)
        score = f" Score now {session.report.score}/100." if session.report is not None else ""
        status.update(Text(f"Done.{score} Press n for the summary.", style="bold"))
        self.done = True

    async def kept(self, step: str, trial) -> bool:
        """A change on trial (the firewall): the countdown, then keep it or take it back; True when kept."""
        from screens._live import Outcome as Line
        from screens.countdown import CountdownModal

        lines = [f"Check that you can still reach this server (a second SSH login, the API from your LAN). "
                 f"From another terminal: dester-harden confirm --dir {self.session.root}"]
        answer = await self.app.push_screen_wait(CountdownModal(trial.deadline, self.dester_app.wall_clock, lines))
        status = self.query_one("#review-status", Static)
        if answer == "keep":
            message = await asyncio.to_thread(self.session.keep_trial)
            kept = message.startswith("Confirmed")
        else:
            why = "not kept at the countdown" if answer == "revert" else "the countdown ran out"
            message = await asyncio.to_thread(self.session.revert_trial, why)
            kept = False
        self.set_state(step, "applied" if kept else "reverted")
        self.add_outcome(Line(kept, message, []))
        status.update(message)
        return kept

    def add_outcome(self, outcome: Outcome) -> None:
        """What applying to the running stack did: recreated services, or the auto-revert with its log lines."""
        self.outcomes.append(outcome)
        t = Text()
        for o in self.outcomes:
            t.append(("✓ " if o.ok else "✗ ") + o.headline + "\n", style="green" if o.ok else "bold yellow")
            if o.lines:
                t.append("  Its last log lines (masked):\n", style="dim")
                for line in o.lines[-12:]:
                    t.append("  " + clip(line, max(20, (self.size.width or 80) - 6)) + "\n", style="dim")
        t.rstrip()
        box = self.query_one("#review-outcome", Static)
        box.update(t)
        box.display = True

    def tell(self, notices: list[Notice]) -> None:
        """The applied steps' notices (where the old secrets went, media left alone...) as one toast,
        not one per step stacked over each other; never a secret, never markup."""
        if not notices:
            return
        warn = any(n.level is Level.WARNING for n in notices)
        self.notify("\n".join(shown(n.text) for n in notices), markup=False,
                    severity="warning" if warn else "information", title="Applied", timeout=12 if warn else 8)

    def action_next(self) -> None:
        if self.done:
            self.dismiss(ReviewResult.next())
        else:
            self.notify("Finish the previews first (or press b to go back).")

    def action_back(self) -> None:
        self.dismiss(ReviewResult.back(self.steps[-1] if self.steps else None))


def _secrets(step_plan, session) -> list[str]:
    """Every secret the plan knows, masked again in what the revert shows."""
    plan = step_plan.plan
    out = list(plan.secrets) + list(getattr(plan, "named_secrets", {}).values())
    if session.choices.db_password:
        out.append(session.choices.db_password)
    return out


def make_reporter(app, progress):
    """The engine's reporter: called in the apply's thread, shown on the app's; it never fails the apply."""
    def report(what: str, elapsed: float | None) -> None:
        with contextlib.suppress(Exception):  # a closing terminal must not break the transaction
            app.call_from_thread(progress.report, what, elapsed)

    return report
