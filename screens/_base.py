"""What every screen of the assistant shares: header, footer, the small-terminal
notice, F1 help text, and (for the guided steps) Back and Next."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.binding import Binding
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Header, Static

from checks.core.textio import shown
from tui.widgets import TooSmallNotice

from ._results import StepAnswer

if TYPE_CHECKING:
    from checks.assistant.session import Session
    from tui.app import DesterApp


class DesterScreen(Screen):
    """A full screen of the assistant."""

    HELP: ClassVar[str] = ""
    """What this screen is for and how to use it (shown by F1)."""
    NAME: ClassVar[str] = ""
    """The screen's name in the command palette and help."""
    SHOWS_SECRET: ClassVar[bool] = False
    """A secret may be on screen: the palette drops its Screenshot command."""

    @property
    def dester_app(self) -> DesterApp:
        """The assistant this screen belongs to (typed: its flows, its session).

        Every screen of screens/ is pushed by :class:`tui.app.DesterApp` only;
        the name is imported for the type checker alone, so screens/ and
        tui/app.py do not import each other at run time.
        """
        return cast("DesterApp", self.app)

    @property
    def session(self) -> Session:
        return self.dester_app.session

    def compose_header(self):
        yield Header(icon="")
        yield TooSmallNotice()

    def compose_footer(self):
        yield Footer()


class StepScreen(DesterScreen):
    """One step of the guided setup. Answers :class:`StepAnswer` NEXT or BACK."""

    STEP: ClassVar[str] = ""

    BINDINGS = [
        Binding("n", "next", "Next", id="step.next", tooltip="Keep these choices and go to the next step"),
        Binding("b,escape", "back", "Back", id="step.back", tooltip="Go back to the previous step"),
    ]

    answer: asyncio.Future[StepAnswer] | None = None
    """The flow's future for this step's answer; set by the app's flow."""

    def _answer(self, what: StepAnswer) -> None:
        if self.answer is not None:
            if not self.answer.done():
                self.answer.set_result(what)
        else:
            self.dismiss(what)

    def action_next(self) -> None:
        self._answer(StepAnswer.NEXT)

    def action_back(self) -> None:
        self._answer(StepAnswer.BACK)


class FixStepScreen(StepScreen):
    """A step whose fixes the user picks from a list, with a live preview of their effect.

    The plan is built by ``checks`` in a worker thread whenever the choice
    changes; the same plan is built again, against the files as they are then,
    on the review screen before anything is applied.
    """

    INTRO: ClassVar[str] = ""

    def compose(self):
        from textual.containers import VerticalScroll
        from textual.widgets import Static

        from tui.widgets import ChoiceList, EffectView

        yield from self.compose_header()
        with VerticalScroll(id="step-body", classes="step-body", can_focus=False):
            yield Static(self.INTRO, classes="step-intro")
            yield from self.compose_extra()
            yield Static("", classes="step-status", id="step-status")
            yield ChoiceList(id="step-fixes", classes="step-fixes")
            with EffectView(classes="step-effect-box"):
                yield Static("", classes="step-effect", id="step-effect")
            yield from self.compose_after()
        yield from self.compose_footer()

    def compose_extra(self):
        """Widgets between the intro and the list of fixes."""
        return iter(())

    def compose_after(self):
        """Widgets after the effect of the fixes."""
        return iter(())

    def on_mount(self) -> None:
        # Textual calls on_mount of every class in the MRO: subclasses extend setup() instead.
        self.setup()

    def setup(self) -> None:
        self.sub_title = self.NAME
        self.fill_fixes()
        self.query_one("#step-fixes").focus()
        # Plan after the first frame: the screen appears at once, the effect follows.
        self.query_one("#step-effect", Static).update("Working out what changes…")
        self.call_after_refresh(self.refresh_effect)

    def fill_fixes(self) -> None:
        from rich.text import Text

        from checks.assistant.checklist import remaining_reason
        from checks.audit.catalog import BY_ID
        from tui.widgets import ChoiceList

        session = self.session
        report = session.report
        failing = {f.id: f for f in session.failing(self.STEP, report)}
        if self.STEP not in session.choices.selected:
            session.choices.selected[self.STEP] = session.default_selection(self.STEP, report)
        chosen = session.choices.selected[self.STEP]
        sel = self.query_one("#step-fixes", ChoiceList)
        offered = [cid for cid in session.fixable(self.STEP) if cid in failing]
        items: list[tuple[str, Text, str | None]] = []
        for cid in offered:
            f = failing[cid]
            label = Text()
            label.append(f"{cid} ", style="bold")
            label.append(BY_ID[cid].title)
            label.append(f" ({f.severity})", style="dim")
            items.append((cid, label, None))
        sel.set_items(items, chosen & set(offered))
        sel.display = bool(offered)
        status = self.query_one("#step-status", Static)
        others = [f for cid, f in failing.items() if cid not in offered]
        lines = Text()
        if offered:
            lines.append("Fixes for this step ([x] chosen; Space toggles, ↑↓ move):")
        else:
            lines.append("Nothing to fix on this step: every check it covers passes or cannot be fixed from the files.")
        for f in others:
            lines.append(f"\n{f.id} fails but is not changed here: {shown(remaining_reason(f, set(), {}))}",
                         style="dim")
        status.update(lines)

    def on_choice_list_changed(self, event) -> None:
        if event.choice_list.id != "step-fixes":
            return
        self.session.choices.selected[self.STEP] = set(event.choice_list.chosen)
        self.refresh_effect()

    def refresh_effect(self) -> None:
        self.query_one("#step-effect", Static).update("Working out what changes…")
        self.plan_effect(set(self.session.choices.selected.get(self.STEP, set())))

    @work(thread=True, exclusive=True, group="step-effect", exit_on_error=False)
    def plan_effect(self, checks: set[str]) -> None:
        try:
            text = self.effect_text(self.session.plan(self.STEP, checks, preview=True))
        except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
            from tui.errors import one_line

            text = "Cannot plan this step: " + one_line(exc)
        self.app.call_from_thread(self._show_effect, text)

    def _show_effect(self, text) -> None:
        if self.is_attached:
            if isinstance(text, str):  # an error line: never markup (a path may hold "[")
                from tui.widgets import plain

                text = plain(text)
            self.query_one("#step-effect", Static).update(text)

    def edit_lines(self, plan):
        """The changed lines of each file edit (secrets masked), cut to the screen's width."""
        from rich.text import Text

        from checks.change.plan import FileEdit
        from checks.change.preview import file_diff
        from checks.core.secrets import Masker
        from tui.widgets import clip, diff_style

        t = Text()
        masker = Masker(plan.secrets)
        root = self.session.root
        width = max(20, (self.size.width or 80) - 6)
        for c in plan.changes:
            if not isinstance(c, FileEdit):
                continue
            lines = file_diff(c, root, masker)
            t.append(lines[0] if c.before is None else self.session.display(c.path), style="bold")
            t.append("\n")
            for line in lines:
                if line.startswith(("+++", "---", "new file")):
                    continue
                if line.startswith(("+", "-")):
                    t.append("  " + clip(line, width) + "\n", style=diff_style(line))
        return t

    def effect_text(self, step_plan):
        """What the selected fixes will change, as a short summary (diff lines, masked)."""
        from rich.text import Text

        from checks.change.plan import ModeChange, TreeChmod
        from checks.change.preview import tree_summary

        plan = step_plan.plan
        t = Text()
        if plan.empty:
            t.append("No change selected." if not plan.refusals else "Nothing can be changed automatically.")
        else:
            t.append(f"This step alone: score {step_plan.score_before} -> {step_plan.score_after}\n", style="bold")
        root = self.session.root
        t.append_text(self.edit_lines(plan))
        for c in plan.changes:
            if isinstance(c, ModeChange):
                t.append(f"{self.session.display(c.path)}: mode {c.before:04o} -> {c.after:04o}\n")
            elif isinstance(c, TreeChmod):
                t.append(tree_summary(c, root) + "\n")
        for r in plan.refusals:
            t.append(f"\nNot changed: {r.check}: {shown(r.reason)}", style="yellow")
        for n in plan.notes:
            t.append(f"\nNote: {shown(n)}", style="dim")
        return t


class InfoStepScreen(StepScreen):
    """A step dester-harden cannot change from the files yet: where things stand and what to do."""

    INTRO: ClassVar[str] = ""

    def compose(self):
        from textual.containers import VerticalScroll
        from textual.widgets import Static

        yield from self.compose_header()
        with VerticalScroll(id="step-body", classes="step-body"):
            yield Static(self.INTRO, classes="step-intro")
            yield Static("", classes="step-findings", id="step-findings")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.setup()

    def setup(self) -> None:
        from rich.text import Text
        from textual.widgets import Static

        from checks.assistant.steps import STEP_BY_ID
        from checks.audit.findings import FAIL, PASS, SKIPPED

        self.sub_title = self.NAME
        self.query_one("#step-body").focus()
        report = self.session.report
        t = Text()
        mark = {FAIL: ("✗ fails", "red"), PASS: ("✓ passes", "green"), SKIPPED: ("? not checked", "yellow")}
        for cid in STEP_BY_ID[self.STEP].checks:
            f = next((x for x in (report.findings if report else []) if x.id == cid), None)
            if f is None:
                continue
            word, style = mark.get(f.status, ("! error", "red"))
            t.append(f"{cid} ", style="bold")
            t.append(f"{f.check.title}: ")
            t.append(word, style=style)
            t.append("\n")
            if f.status == SKIPPED and f.reason:
                t.append(f"  {shown(f.reason)}\n", style="dim")
            if f.status == FAIL:
                for e in f.evidence[:2]:
                    t.append(shown(f"  {e.file or ''}{':' + str(e.line) if e.line else ''} {e.note or e.text}") + "\n",
                             style="dim")
                t.append(f"  What to do: {f.check.fix}\n")
            t.append(f"  dester-harden explain {cid}\n", style="dim")
        self.query_one("#step-findings", Static).update(t)


class DiffModal(ModalScreen):
    """A full-size modal: a heading, a plan's preview as a scrollable diff, and buttons.

    Subclasses give the heading and the buttons (button id = the answer) and
    decide in :meth:`choose` what an answer means.
    """

    def __init__(self, preview: str) -> None:
        super().__init__()
        self.preview = preview

    def heading(self):
        raise NotImplementedError

    def buttons(self):
        raise NotImplementedError

    def compose(self):
        from textual.containers import Horizontal, Vertical
        from textual.widgets import Static

        from tui.widgets import DiffView

        with Vertical(classes="modal-box"):
            yield Static(self.heading(), classes="modal-title")
            yield DiffView(self.preview, classes="modal-diff")
            with Horizontal(classes="modal-buttons"):
                yield from self.buttons()

    def on_mount(self) -> None:
        from tui.widgets import DiffView

        self.query_one(DiffView).focus()

    def on_button_pressed(self, event) -> None:
        self.choose(event.button.id)

    def choose(self, answer) -> None:
        self.dismiss(answer)
