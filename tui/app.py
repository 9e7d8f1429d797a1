"""The dester-harden assistant: a Textual app over the same engine as the CLI.

The app holds a :class:`checks.assistant.session.Session`; screens ask it for audits,
plans and transactions in worker threads. Flows (the guided setup, fixing one
step from the re-audit) run in one async worker each, every step awaited with
``push_screen_wait`` and answered with a typed result (:mod:`screens._results`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterable
from pathlib import PurePath
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from checks.assistant.session import Session
from checks.assistant.steps import APPLY_STEPS, STEP_BY_ID, STEPS
from screens._results import ReviewResult, StepAnswer

#: The steps reviewed and applied: the fix-list steps, and the TLS step once a front door is chosen
#: (its selection is set by the TLS screen from a valid domain, never by default).
REVIEW_STEPS = (*APPLY_STEPS, "tls", "firewall")

if TYPE_CHECKING:
    from checks.assistant.session import StepPlan
    from checks.assistant.usecases import Applied, UndoPreview
    from checks.change.stack import Reporter
    from checks.live.model import LiveState

#: Step id -> (module, class) of its screen, imported when first shown.
STEP_SCREENS = {
    "network": ("screens.network", "NetworkScreen"),
    "password": ("screens.password", "PasswordScreen"),
    "permissions": ("screens.permissions", "PermissionsScreen"),
    "containers": ("screens.containers", "ContainersScreen"),
    "tls": ("screens.tls", "TLSScreen"),
    "firewall": ("screens.firewall", "FirewallScreen"),
    "backups": ("screens.backups", "BackupsScreen"),
}


#: The screens' style files (screens/NAME.tcss), preloaded by the app.
SCREEN_STYLES = ("welcome", "network", "password", "permissions", "containers", "tls", "firewall", "backups",
                 "review", "preview", "summary", "reaudit", "history", "undo", "help",
                 "suppress", "confirm", "countdown")


def _screen_class(step: str):
    import importlib

    module, name = STEP_SCREENS[step]
    return getattr(importlib.import_module(module), name)


class DesterApp(App[int]):
    """The guided assistant, the re-audit and the history, for one installation."""

    TITLE = "dester-harden"
    #: Every screen's styles (each beside its screen) are read once at start: a
    #: screen's first appearance then needs no re-parse of the whole stylesheet.
    CSS_PATH: ClassVar[list[str | PurePath]] = [
        "app.tcss",
        *(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "screens", f"{name}.tcss")
          for name in SCREEN_STYLES)]
    ENABLE_COMMAND_PALETTE = True
    HORIZONTAL_BREAKPOINTS = [(0, "-too-narrow"), (80, "-wide-enough")]
    VERTICAL_BREAKPOINTS = [(0, "-too-short"), (24, "-tall-enough")]
    BINDINGS = [
        Binding("f1", "help", "Help", id="app.help", tooltip="What this screen is for, and its keys", priority=True),
        Binding("ctrl+q", "quit", "Quit", id="app.quit", tooltip="Leave dester-harden (applied changes stay)",
                priority=True),
    ]

    class LiveStateReady(Message):
        """The live state arrived from its worker (None: not checked)."""

        def __init__(self, state: LiveState | None) -> None:
            super().__init__()
            self.state = state

    def __init__(self, session: Session, *, theme: str | None = None, cursor_blink: bool = True,
                 live_state=None, euid: int | None = None) -> None:
        super().__init__()
        self.session = session
        """The installation and the user's choices."""
        self._live_provider = live_state
        """``live_state(root) -> LiveState | None``; None: the session's use case (tests give a fake)."""
        self.live: LiveState | None = None
        """The running system, once gathered (``live_ready``); None when not checked."""
        self.live_ready = False
        self._live_started = False
        self.euid = os.geteuid() if euid is None and hasattr(os, "geteuid") else euid
        """Who runs the assistant: a permission denied on the Docker socket says "run with sudo" unless root."""
        self._theme_name = theme
        self.cursor_blink = cursor_blink
        """Off in tests and snapshots, so frames do not depend on timing."""
        self.idle = threading.Event()
        """Clear while the engine applies a transaction (the app must not exit then)."""
        self.idle.set()
        self.hangup = False
        """The terminal went away (SIGHUP) or SIGTERM came: exit as soon as no transaction is in flight."""
        self.hangup_code = 129
        """The exit code for that: 128 + the signal (SIGHUP 129, SIGTERM 143)."""
        self.wall_clock = time.time
        """The countdown's clock (a change on trial has a wall-clock deadline); tests fix it."""
        self.start_score: int | None = None
        self.applied_notes: list[str] = []
        self._home: Screen | None = None
        """The base screen: the welcome, or the re-audit once there is a baseline."""
        """Notes of the applied plans (what to do before restarting), for the summary."""
        from checks.core.textio import shown

        self.sub_title = shown(session.hostname) + " · " + session.shown_root

    # -- start --------------------------------------------------------------
    def on_mount(self) -> None:
        # The home screen is pushed (not the default screen) so its CSS file loads.
        if self.session.first_run:
            from screens.welcome import WelcomeScreen

            self._home = WelcomeScreen()
        else:
            from screens.reaudit import ReauditScreen

            self._home = ReauditScreen()
        self.push_screen(self._home)
        if self._theme_name:
            self.theme = self._theme_name
        try:
            loop = asyncio.get_running_loop()
            # SIGTERM too: the apply runs in a worker thread, where it cannot be
            # interrupted, so it is let finish (or roll back) as for a hangup.
            loop.add_signal_handler(signal.SIGHUP, self._on_hangup, 129)
            loop.add_signal_handler(signal.SIGTERM, self._on_hangup, 143)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass

    # -- the live system --------------------------------------------------------
    def start_live(self) -> None:
        """Gather the live state once, in a worker (after recovery: a killed change is rolled back first)."""
        if self._live_started:
            return
        self._live_started = True
        self.gather_live()

    def forget_live(self) -> None:
        """The next :meth:`start_live` asks the running system again (a refresh)."""
        self._live_started = False

    @work(thread=True, exclusive=True, group="live", exit_on_error=False)
    def gather_live(self) -> None:
        state: LiveState | None
        try:
            if self._live_provider is not None:
                state = self._live_provider(self.session.root)
                self.session.live = state
            else:
                state = self.session.gather_live()
        except Exception:  # noqa: BLE001 - the live state is extra: the files' audit stands without it
            state = None
            self.session.live = None
        self.post_message(self.LiveStateReady(state))

    def on_dester_app_live_state_ready(self, message: LiveStateReady) -> None:
        self.live = message.state
        self.live_ready = True
        for screen in list(self.screen_stack):
            show = getattr(screen, "show_live", None)
            if show is not None and screen.is_attached:
                show(message.state)

    def preload_screens(self) -> None:
        """Import the other screens in the background once the first one is shown (faster first visits)."""
        def load() -> None:
            import importlib

            for module, _ in STEP_SCREENS.values():
                importlib.import_module(module)
            for module in ("screens.review", "screens.preview", "screens.summary", "screens.reaudit",
                           "screens.history", "screens.undo", "screens.help", "checks.fix.planner",
                           "checks.change.preview"):
                importlib.import_module(module)

        self.run_worker(load, thread=True, group="preload", exit_on_error=False)

    # -- a bug ----------------------------------------------------------------------
    def _handle_exception(self, error: Exception) -> None:
        """An unexpected error: one line on exit, never Textual's traceback.

        Textual's traceback shows local variables, which can hold file
        contents and secrets; DESTER_HARDEN_DEBUG=1 brings it back.
        """
        if os.environ.get("DESTER_HARDEN_DEBUG"):
            super()._handle_exception(error)
            return
        from rich.text import Text

        self._return_code = 3
        if self._exception is None:
            self._exception = error  # Pilot re-raises it in tests
            self._exception_event.set()
        self._exit_renderables.append(Text(
            f"dester-harden: internal error ({type(error).__name__}); set DESTER_HARDEN_DEBUG=1 for details and "
            "please report it", no_wrap=True, overflow="ignore"))
        self._close_messages_no_wait()

    # -- a dropped terminal ----------------------------------------------------
    def _on_hangup(self, code: int = 129) -> None:
        """SSH went away (or SIGTERM): let the transaction in flight finish (or roll back), then leave."""
        self.hangup = True
        self.hangup_code = code
        if self.idle.is_set():
            self.exit(code)
            return

        def last_resort() -> None:
            # _run_engine exits the app when the transaction is done. Should the
            # loop be wedged on the dead terminal, the transaction is committed
            # by then, so leaving hard loses nothing. (A daemon: a clean exit ends it.)
            self.idle.wait()
            threading.Event().wait(10)
            os._exit(self.hangup_code)

        threading.Thread(target=last_resort, name="hangup", daemon=True).start()

    async def _run_engine(self, fn, *args, **kwargs):
        """Run an engine call in a thread, marked as in flight for the SIGHUP handler."""
        self.idle.clear()
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        finally:
            self.idle.set()
            if self.hangup:
                self.exit(self.hangup_code)

    async def apply_plan(self, step_plan: StepPlan, report: Reporter | None = None) -> Applied:
        """Apply a previewed step plan as one transaction (then the baseline is saved).

        ``report``: the engine's progress while it recreates services (called from the worker thread).
        """
        if report is None:
            done: Applied = await self._run_engine(self.session.apply, step_plan)
        else:
            done = await self._run_engine(self.session.apply, step_plan, report)
        # A note says what to do before `docker compose up -d`: nothing when the change was taken back
        # (the health gate failed) or was already applied to the running stack (services recreated).
        if done.reverted is None and not done.recreated:
            self.applied_notes += [n for n in step_plan.plan.notes if n not in self.applied_notes]
        return done

    async def apply_undo(self, preview: UndoPreview, force: bool = False, report: Reporter | None = None) -> Applied:
        """Undo a previewed transaction; ``force`` overwrites only the hand edits the preview showed.

        ``report``: the engine's progress while it recreates services (called from the worker thread).
        """
        if report is None:
            done: Applied = await self._run_engine(self.session.undo, preview, force)
        else:
            done = await self._run_engine(self.session.undo, preview, force, report)
        return done

    # -- flows ------------------------------------------------------------------
    def start_guided(self, start: str | None = None) -> None:
        self._reset_to_base()
        self.guided_flow(start)

    def fix_one(self, step: str) -> None:
        """From the re-audit: the screen that fixes a finding, its review, then back."""
        self._reset_to_base()
        self.one_step_flow(step)

    def _reset_to_base(self) -> None:
        self.workers.cancel_group(self, "flow")
        self._pop_home()

    def _pop_home(self) -> None:
        """Pop screens down to the home screen (the welcome, or the re-audit once there is a baseline)."""
        home = self._home
        while len(self.screen_stack) > 1 and self.screen is not home:
            self.pop_screen()

    def steps_for_profile(self) -> list[str]:
        return [s.id for s in STEPS if s.id != "tls" or self.session.choices.profile == "internet"]

    async def _ensure_report(self) -> bool:
        """Audit if not done yet; on an unreadable installation say why (one line) and stop the flow."""
        if self.session.report is not None:
            return True
        try:
            await asyncio.to_thread(self.session.audit)
            return True
        except Exception as exc:  # noqa: BLE001 - never a traceback
            from tui.errors import one_line

            self.notify(one_line(exc), markup=False, title="Cannot audit this installation", severity="error",
                        timeout=10)
            return False

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def guided_flow(self, start: str | None = None) -> None:
        if not await self._ensure_report():
            return
        if self.start_score is None and self.session.report is not None:
            self.start_score = self.session.report.score
        steps = self.steps_for_profile()
        i = steps.index(start) if start in steps else (len(steps) if start == "review" else 0)
        while True:
            result = await self._walk(steps, i)
            if result is None:
                return  # backed out of the first step
            pending = [s for s in self.steps_for_profile()
                       if s in REVIEW_STEPS and self.session.choices.selected.get(s)]
            from screens.review import ReviewScreen

            review = ReviewScreen(pending)
            answer: ReviewResult = await self.push_screen_wait(review)
            if answer.went_back:
                steps = self.steps_for_profile()
                i = steps.index(answer.back_to) if answer.back_to in steps else len(steps) - 1
                continue
            break
        from screens.summary import SummaryScreen

        skipped = {s for s, state in review.state.items() if state == "skipped"}
        await self.push_screen_wait(SummaryScreen(self.start_score, skipped))
        self._back_home()

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def one_step_flow(self, step: str) -> None:
        if not await self._ensure_report():
            return
        while True:
            result = await self._walk([step], 0)
            if result is None:
                self._back_home()
                return
            pending = [step] if step in REVIEW_STEPS and self.session.choices.selected.get(step) else []
            from screens.review import ReviewScreen

            answer: ReviewResult = await self.push_screen_wait(ReviewScreen(pending))
            if answer.went_back:
                continue
            break
        self._back_home()

    async def _walk(self, steps: list[str], i: int):
        """Walk the step screens from ``i``; None when backed out before the first.

        Each next step replaces the current one on the stack (switch, not pop
        then push), so the screen underneath is never resumed and restyled in
        between: a step change costs one new screen, not two.
        """
        current = None
        try:
            while 0 <= i < len(steps):
                screen = _screen_class(steps[i])()
                screen.answer = asyncio.get_running_loop().create_future()
                if current is None:
                    await self.push_screen(screen)
                else:
                    await self.switch_screen(screen)
                current = screen
                answer = await screen.answer
                if answer is StepAnswer.BACK:
                    i -= 1
                else:
                    i += 1
                    steps = self.steps_for_profile() if len(steps) > 1 else steps  # the profile may add or drop TLS
        finally:
            if current is not None and current.is_current:
                self.pop_screen()
        return None if i < 0 else "done"

    def _back_home(self) -> None:
        """Back to the base screen, switched to the re-audit once a baseline exists."""
        self._pop_home()
        from screens.reaudit import ReauditScreen

        if self.session.baseline is not None and not isinstance(self.screen, ReauditScreen):
            self._home = ReauditScreen()
            self.push_screen(self._home)
        elif isinstance(self.screen, ReauditScreen):
            self.screen.load()

    # -- actions ------------------------------------------------------------------
    def action_help(self) -> None:
        from screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def action_history(self) -> None:
        from screens.history import HistoryScreen

        if not isinstance(self.screen, HistoryScreen):
            self.push_screen(HistoryScreen())

    def action_guided(self) -> None:
        if self.session.report is None:
            self.notify("The installation could not be read: see the message on screen.", severity="warning")
            return
        self.start_guided()

    def action_reaudit(self) -> None:
        from screens.reaudit import ReauditScreen

        if self.session.baseline is None:
            self.notify("No baseline yet: it is saved when you apply changes. Showing the audit instead.")
            self._reset_to_base()
            return
        self._reset_to_base()
        if not isinstance(self.screen, ReauditScreen):
            self._home = ReauditScreen()
            self.push_screen(self._home)

    def action_summary(self) -> None:
        self._reset_to_base()
        self.summary_flow()

    @work(exclusive=True, group="flow", exit_on_error=False)
    async def summary_flow(self) -> None:
        from screens.summary import SummaryScreen

        if not await self._ensure_report():
            return
        await self.push_screen_wait(SummaryScreen(self.start_score))
        self._back_home()

    def action_welcome(self) -> None:
        from screens.welcome import WelcomeScreen

        self._reset_to_base()
        if not isinstance(self.screen, WelcomeScreen):
            self.push_screen(WelcomeScreen())

    # -- the command palette ---------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        secret = getattr(screen, "SHOWS_SECRET", False)
        for cmd in super().get_system_commands(screen):
            if cmd.title == "Screenshot" and secret:
                continue  # a screenshot would carry the password when it is revealed
            yield cmd
        yield SystemCommand("Guided setup", "Walk through every step from the start", self.action_guided)
        for step in self.steps_for_profile():
            yield SystemCommand(f"Go to: {STEP_BY_ID[step].title}", f"The {STEP_BY_ID[step].title} step of the setup",
                                lambda step=step: self.start_guided(step))
        yield SystemCommand("Go to: Review", "Preview and apply the chosen fixes",
                            lambda: self.start_guided("review"))
        yield SystemCommand("Go to: Summary", "The security checklist and what remains", self.action_summary)
        yield SystemCommand("Go to: Welcome", "The installation as found, and the score", self.action_welcome)
        yield SystemCommand("Re-audit", "What changed since the last hardening", self.action_reaudit)
        yield SystemCommand("History", "The undo journal: undo any transaction", self.action_history)
        yield SystemCommand("Help", "What this screen is for, and its keys", self.action_help)
