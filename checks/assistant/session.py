"""The assistant's session: one installation, the user's choices, plans per step.

Everything the Textual screens show or do goes through :class:`Session`; the
screens never read or write the disk themselves, and this module never imports
Textual. Planning, applying, undoing, the history, recovery and the baseline
are the use cases the CLI calls too (:mod:`checks.assistant.usecases`): the
session only adds what the guided setup remembers between screens.
"""

from __future__ import annotations

import os
import secrets as _secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.assistant import usecases
from checks.assistant.baseline import load_baseline
from checks.assistant.passwords import DEFAULT_PASSWORD_BYTES
from checks.assistant.steps import STEP_BY_ID, STEP_OF_CHECK
from checks.audit.findings import FAIL, Finding

FRONT_DOOR_STEP = "tls"
"""The step whose fixes are a front door: planned from :attr:`Choices.front_door`, not from a fix list."""

if TYPE_CHECKING:  # imported where used: the assistant's first frame needs none of them
    from checks.assistant.frontdoor import Kept, Options
    from checks.assistant.usecases import Applied, UndoPreview
    from checks.audit.run import Report
    from checks.change.plan import Plan
    from checks.change.stack import Reporter
    from checks.install.model import Installation
    from checks.live.model import LiveState
    from checks.proxy.model import Choice


@dataclass(slots=True)
class Choices:
    """What the user decided on the way through the guided setup."""

    profile: str = "local"
    selected: dict[str, set[str]] = field(default_factory=dict)
    """step id -> the check ids whose fixes the user wants."""
    db_password: str | None = None
    """The generated database password (never shown unless revealed)."""
    front_door: Choice | None = None
    """The TLS step's front door (domain, proxy, opted-in paths); None until a valid domain is entered."""
    proxy_password: str | None = None
    """The front door's generated login password: one per session, so the plan previewed on the TLS
    screen and the one built again on review carry the same (never shown unless revealed)."""


@dataclass(slots=True)
class Summary:
    """The files-and-exposure overview on the welcome screen."""

    root: str
    layout: str
    services: list[str]
    compose_files: list[str]
    env_files: list[str]
    exposure: list[str]
    """Published ports, e.g. ``postgres 0.0.0.0:5432 -> 5432``."""
    media: list[str]


@dataclass(slots=True)
class StepPlan:
    step: str
    plan: Plan
    score_before: int
    score_after: int
    preview: bool = False
    """Built only to show (not validated with docker compose): never applied."""


@dataclass(slots=True)
class TxnInfo:
    id: str
    when: str
    kind: str
    state: str
    checks: list[str]
    files: list[str]
    media: list[str]
    undoable: bool
    step: str | None


class Session:
    """One installation as the assistant sees it."""

    def __init__(self, root: str, profile: str | None = None, files: list[str] | None = None, host_root: str = "/",
                 now: Callable[[], float] | None = None, hostname: str | None = None,
                 new_secret: Callable[[int], str] | None = None, shown_root: str | None = None,
                 hasher: Callable[[str], str] | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        from checks.core.textio import shown

        self.shown_root = shown_root if shown_root is not None else shown(self.root)
        """The install directory as the screens name it (control characters escaped); the
        snapshot tests give a fixed one, as they fix the host name and the clock."""
        self.files = files
        self.host_root = host_root
        self.clock = now or time.time
        self.hostname = hostname or socket.gethostname()
        self._new_secret = new_secret or _secrets.token_urlsafe
        self._hasher = hasher
        """bcrypt for the front door's login (None: the generator's, a random salt; snapshots fix it)."""
        self.baseline = load_baseline(self.root)
        from checks.audit.settings import load_settings

        self.settings = load_settings(self.root)  # malformed: SettingsError, one line before the app starts
        self.choices = Choices(profile=profile or self.settings.profile
                               or (self.baseline.profile if self.baseline else "local"))
        self.report: Report | None = None
        self.inst: Installation | None = None
        self._audit_lock = threading.Lock()
        self._audits_started = 0
        self._audit_shown = 0
        """Audits run in worker threads: one started earlier but finished later (say, before the
        live state arrived) must not replace the report of one started after it."""
        self.recovered: list[str] = []
        self.kept: Kept | None = None
        """Where the front door's login went (after the TLS step was applied)."""
        self.live: LiveState | None = None
        """The running system as last gathered (:meth:`gather_live`); None until then, or when not checked."""

    # -- reading -------------------------------------------------------------
    @property
    def first_run(self) -> bool:
        return self.baseline is None

    def recover(self) -> list[str]:
        """Roll back what a killed run left half-applied, before anything reads the files.

        The lines to show: one per transaction recovered; a rollback that cannot
        be done (or a journal not acted on) is a warning, as for the CLI's
        audit: reading the files is still safe.
        """
        done = usecases.recover(self.root)
        self.recovered = list(done.messages) + ([f"warning: {done.warning}"] if done.warning else [])
        return self.recovered

    def audit(self, profile: str | None = None) -> Report:
        from checks.audit.run import run_audit
        from checks.install.discovery import discover

        with self._audit_lock:
            self._audits_started += 1
            mine = self._audits_started
        inst = discover(self.root, self.files, self.host_root, self.clock())
        # the live checks, once gathered (None before: they are skipped, never passed)
        report = run_audit(inst, profile or self.choices.profile, settings=self.settings, live=self.live)
        with self._audit_lock:
            if mine > self._audit_shown:
                self._audit_shown = mine
                self.inst, self.report = inst, report
        return report

    def gather_live(self) -> LiveState | None:
        """Ask the running system (Docker Engine, listening sockets) once, through the use case.

        None when this build has no live layer or the use case did not check;
        an unreachable Engine is a state with its reason, not an error.
        """
        self.live = usecases.live_state(self.root)
        return self.live

    def suppress(self, check: str, reason: str, until: str | None = None, scope: str | None = None) -> None:
        """Add a suppression to the settings file (as ``dester-harden suppress``) and use it from now on."""
        from checks.audit.settings import add_suppression, load_settings

        add_suppression(self.root, check, reason, scope, until or None)
        self.settings = load_settings(self.root)

    def _save_profile(self) -> None:
        """The profile of an applied step becomes the installation's (every later audit, cron included)."""
        from checks.audit.settings import load_settings, save_profile
        from checks.core.errors import InputError

        try:
            save_profile(self.root, self.choices.profile)
            self.settings = load_settings(self.root)
        except (InputError, OSError) as exc:  # the change is applied; the profile is only not remembered
            self.settings.warnings.append(f"profile not saved: {' '.join(str(exc).split())}")

    def summary(self) -> Summary:
        from checks.install.discovery import discover

        inst = self.inst or discover(self.root, self.files, self.host_root, self.clock())
        from checks.audit.rules.fs import media_mounts

        exposure = []
        for svc in inst.services:
            for port in svc.ports:
                ip = port.host_ip or "0.0.0.0"
                exposure.append(f"{svc.name}: {ip}:{port.published or port.target} -> {port.target}/{port.protocol}")
        media = sorted({self.display(m.host_path) for _, m in media_mounts(inst) if m.host_path})
        return Summary(inst.root, inst.layout, [s.name for s in inst.services],
                       [s.display for s in inst.compose_files], [e.display for e in inst.env_files if e.exists],
                       exposure, media)

    def generate_password(self) -> str:
        self.choices.db_password = self._new_secret(DEFAULT_PASSWORD_BYTES)
        return self.choices.db_password

    def failing(self, step: str, report: Report | None = None) -> list[Finding]:
        rep = report or self.report
        ids = set(STEP_BY_ID[step].checks)
        return [f for f in (rep.findings if rep else []) if f.id in ids and f.status == FAIL]

    def default_selection(self, step: str, report: Report | None = None) -> set[str]:
        from checks.fix.registry import FIXERS

        fixable = {fx.id for fx in FIXERS}
        st = STEP_BY_ID[step]
        return {f.id for f in self.failing(step, report) if f.id in fixable and f.id not in st.default_off}

    def fixable(self, step: str) -> list[str]:
        """The check ids of this step that dester-harden can fix from the files."""
        from checks.fix.registry import FIXERS

        fixable = {fx.id for fx in FIXERS}
        return [c for c in STEP_BY_ID[step].checks if c in fixable]

    # -- planning and applying -------------------------------------------------
    def plan(self, step: str, checks: set[str] | None = None, profile: str | None = None,
             preview: bool = False) -> StepPlan:
        """The plan for one step's selected fixes, against the files as they are now.

        ``preview``: only to show on a step screen, never applied, so the
        ``docker compose config`` validation is left to the plan built on review.
        """
        only = set(self.choices.selected.get(step, set()) if checks is None else checks)
        profile = profile or self.choices.profile
        if step == FRONT_DOOR_STEP:
            return self._front_door_step_plan(only, profile, preview)
        if not only:
            report = self.audit(profile)
            from checks.change.plan import Plan

            return StepPlan(step, Plan(), report.score, report.score, preview)
        pw = self.choices.db_password if "SEC-001" in only else None
        planned = usecases.plan(self.root, profile, only=only, files=self.files, host_root=self.host_root,
                                now=self.clock(), new_secret=self._new_secret, db_password=pw,
                                validate_with_compose=not preview, live=self.live)  # plans the recreates
        return StepPlan(step, planned.plan, planned.score_before, planned.score_after, preview)

    # -- the TLS step: a front door ----------------------------------------------------
    def front_door_options(self) -> Options:
        """The servers installed here (Caddy preselected when installed), the saved choice, the front doors
        already in place (the use case; system paths under ``host_root``)."""
        from checks.assistant import frontdoor

        return frontdoor.options(self.root, host_root=self.host_root)

    def choose_front_door(self, choice: Choice | None) -> None:
        """The TLS step's choice (None: no valid domain yet, nothing to apply on this step)."""
        self.choices.front_door = choice
        if choice is None:
            self.choices.selected.pop(FRONT_DOOR_STEP, None)
        else:
            self.choices.selected[FRONT_DOOR_STEP] = set(STEP_BY_ID[FRONT_DOOR_STEP].checks)

    def front_door_plan(self, choice: Choice, preview: bool = False) -> StepPlan:
        """The plan that sets up ``choice`` (chosen or not: the TLS screen previews while the user types):
        the generated site, validated, and its login in ``plan.shown_secrets`` (the same password for
        every plan of this session)."""
        return self._front_door_step_plan(set(STEP_BY_ID[FRONT_DOOR_STEP].checks), self.choices.profile, preview,
                                          choice)

    def _front_door_step_plan(self, only: set[str], profile: str, preview: bool,
                              choice: Choice | None = None) -> StepPlan:
        from checks.change.plan import Plan

        choice = choice or self.choices.front_door
        if choice is None or not only:
            report = self.audit(profile)
            return StepPlan(FRONT_DOOR_STEP, Plan(), report.score, report.score, preview)
        planned = usecases.plan(self.root, profile, only=only, files=self.files, host_root=self.host_root,
                                now=self.clock(), new_secret=self._proxy_secret, validate_with_compose=not preview,
                                live=self.live, front_door=choice, hasher=self._hasher)
        shown = planned.plan.shown_secrets
        if shown:
            self.choices.proxy_password = next(iter(shown.values()))
        return StepPlan(FRONT_DOOR_STEP, planned.plan, planned.score_before, planned.score_after, preview)

    def _proxy_secret(self, nbytes: int) -> str:
        """The session's ``new_secret`` for the TLS plan: the login's password, generated once."""
        if self.choices.proxy_password is None:
            self.choices.proxy_password = self._new_secret(nbytes)
        return self.choices.proxy_password

    def _keep_front_door(self, step_plan: StepPlan, done: Applied) -> None:
        """After the front door is installed: keep its new login (keyring, else a 0600 file) and say where
        (the use case has recorded the choice in the settings, so a re-audit checks the same front door)."""
        from checks.assistant import frontdoor
        from checks.assistant.usecases import Level, Notice
        from checks.core.errors import InputError

        choice = self.choices.front_door
        if choice is None or done.reverted is not None:
            return
        for password in step_plan.plan.shown_secrets.values():
            try:
                self.kept = frontdoor.keep_password(choice, password)
            except (OSError, InputError) as exc:
                done.notices.append(Notice(Level.WARNING, "The proxy login's password was not kept "
                                           f"({' '.join(str(exc).split())}): note it now (v reveals it)."))
            else:
                done.notices.append(Notice(Level.INFO, f"The proxy login's password is kept in {self.kept.where}."))

    def apply(self, step_plan: StepPlan, report: Reporter | None = None) -> Applied:
        """Apply a previewed plan as one transaction (the use case saves the baseline).

        ``report``: told what the engine does to the running stack ("recreating api", elapsed).
        """
        if step_plan.preview:
            raise ValueError("a preview plan is never applied: build the plan again without preview=True")
        front_door = self.choices.front_door if step_plan.step == FRONT_DOOR_STEP else None
        done = usecases.apply(self.root, step_plan.plan, command=f"assistant:{step_plan.step}",
                              profile=self.choices.profile, files=self.files, host_root=self.host_root,
                              now=self.clock(), report=report, front_door=front_door)
        self._save_profile()
        if step_plan.step == FRONT_DOOR_STEP:
            self._keep_front_door(step_plan, done)
        self._after(done)
        return done

    def keep_trial(self) -> str:
        """The countdown's keep: confirm the change on trial (``dester-harden confirm``); its one-line outcome.

        Too late (the deadline passed meanwhile) it was reverted instead, and the audit says so."""
        done = usecases.confirm(self.root)
        self.audit()
        return done.message

    def revert_trial(self, why: str = "not kept at the countdown") -> str:
        """The countdown's revert, or its end: take the change on trial back now; its one-line outcome."""
        before = usecases.pending_confirmation(self.root)
        if before is None or before.state != "armed":
            return "Nothing was on trial any more."
        reverted = usecases.revert_now(self.root, why)
        self.audit()
        if reverted is None:
            return "Nothing was on trial any more."
        return f"Reverted: {reverted.result or 'the files and the rules are as before'}."

    def _after(self, done: Applied) -> None:
        if done.report is not None:
            with self._audit_lock:  # newer than any audit still running
                self._audits_started += 1
                self._audit_shown = self._audits_started
                self.report, self.inst = done.report, done.report.installation
        if done.baseline is not None:
            self.baseline = done.baseline

    # -- history ---------------------------------------------------------------
    def transactions(self) -> list[TxnInfo]:
        # A journal not trusted is said by recover() on the first screen; nothing of it is shown.
        return [TxnInfo(t.id, t.when.strftime("%Y-%m-%d %H:%M") if t.when else t.id[:15], t.kind,
                        "undone" if t.undone_by else t.state, t.checks, t.files, t.media, t.undoable,
                        STEP_OF_CHECK.get(t.checks[0]) if t.checks else None)
                for t in usecases.history(self.root).txns]

    def undo_preview(self, txn_id: str) -> UndoPreview:
        """What undoing ``txn_id`` changes, with the files edited by hand since (typed conflicts)."""
        return usecases.undo_preview(self.root, txn_id, command="assistant:undo")

    def undo(self, preview: UndoPreview, force: bool = False, report: Reporter | None = None) -> Applied:
        """Undo the previewed transaction. ``force`` overwrites hand edits, but only the ones the
        preview showed: edits made after it refuse the undo. ``report``: as for :meth:`apply`."""
        done = usecases.undo(self.root, preview, force=force, command="assistant:undo",
                             profile=self.choices.profile, files=self.files, host_root=self.host_root,
                             now=self.clock(), report=report)
        self._after(done)
        return done

    # -- display -----------------------------------------------------------------
    def display(self, path: str) -> str:
        """A path as the screens show it: relative to the install, control characters escaped."""
        from checks.core.paths import display_path

        return display_path(path, self.root, escaped=True)

