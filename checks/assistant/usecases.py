"""The use cases both faces share: plan, apply, undo, history, recover, the baseline and the re-audit.

``dester-harden fix / undo / history / reaudit`` (:mod:`tui.changes`) and the
assistant's :class:`checks.assistant.session.Session` call these functions and
only render what they return and ask the user to confirm; neither face drives
the engine itself. Every applied change and every undo saves the baseline
here, so the next ``dester-harden`` opens the re-audit whichever face made
the change.

Errors are raised as they are today (:class:`checks.core.errors.EngineError`
and its kinds, :class:`checks.core.errors.InputError`,
:class:`checks.fix.planner.PlanError`, ``OSError`` before a change began):
each face turns them into one line. What is not an error (a baseline that
could not be saved, where the old secrets went, media entries left alone) is
a :class:`Notice` of the outcome.

A little over 500 lines: every use case both faces share is here, one front door; confirm-or-revert's
own use cases are in :mod:`checks.assistant.trial` and re-exported.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.assistant.baseline import Baseline, Drift, drift, load_baseline, save_baseline
from checks.assistant.stackrun import Recreated as Recreated  # re-exported: the faces read the outcome's types here
from checks.assistant.stackrun import Reverted as Reverted
from checks.assistant.stackrun import recording, reverted, stack_or_default
from checks.assistant.trial import Confirmation as Confirmation  # re-exported: confirm-or-revert (ADR 0010)
from checks.assistant.trial import Outcome as Outcome
from checks.assistant.trial import Pending as Pending
from checks.assistant.trial import confirm as confirm
from checks.assistant.trial import pending_confirmation as pending_confirmation
from checks.assistant.trial import revert_expired as revert_expired
from checks.assistant.trial import revert_now as revert_now
from checks.core.errors import EngineError, InputError

if TYPE_CHECKING:
    from checks.audit.run import Report
    from checks.audit.settings import Settings
    from checks.change.engine import ApplyResult
    from checks.change.journal import TxnSummary
    from checks.change.plan import Plan
    from checks.change.stack import Reporter, Stack
    from checks.install.model import Installation
    from checks.live.model import LiveState
    from checks.proxy.model import Choice


class Level(enum.Enum):
    """How a notice is shown: information, or a warning the user should act on."""

    INFO = "info"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Notice:
    """One line a face shows after a change (never a secret, never file content)."""

    level: Level
    text: str


#: A context manager the face wraps around the engine's transaction (the CLI
#: ignores SIGHUP and turns SIGTERM into a rollback there); nothing else runs in it.
Guard = Callable[[], AbstractContextManager[object]]


# -- recover -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovered:
    """What recovery did before anything read the files."""

    messages: tuple[str, ...] = ()
    """One line per transaction a killed run left, rolled back or finished."""
    warning: str | None = None
    """Why nothing could be recovered (a journal not acted on); reading the files is still safe."""


def recover(root: str, *, strict: bool = False, stack: Stack | None = None) -> Recovered:
    """Roll back what a killed run left half-applied.

    ``strict`` (before a change): a rollback that cannot be done, or a journal
    that is not acted on, is raised. Otherwise (before reading) it becomes the
    outcome's warning, as for the audit. ``stack``: what recreates services a killed
    transaction had changed (default: the docker CLI, asked only when one must be).
    """
    from checks.change.engine import recover_install

    try:
        # A change on trial past its deadline (or armed before a reboot) is reverted first, and said.
        done = revert_expired(root)
        first = (f"reverted the change that waited for confirmation: {done.result}",) if done else ()
        return Recovered(first + tuple(recover_install(root, stack=stack_or_default(stack))))
    except (EngineError, InputError) as exc:
        if strict:
            raise
        # InputError: a journal another user could write, or one dester-harden would not have written.
        return Recovered(warning=" ".join(str(exc).split()))


# -- plan ------------------------------------------------------------------------------


@dataclass(slots=True)
class Planned:
    """A plan and the audits around it: the files as they are, and as the plan would leave them."""

    plan: Plan
    before: Report
    after: Report
    """The audit of the planned result (the same as ``before`` when nothing is planned)."""

    @property
    def score_before(self) -> int:
        return self.before.score

    @property
    def score_after(self) -> int:
        return self.after.score


def plan(root: str, profile: str, *, only: set[str] | None = None, files: list[str] | None = None,
         host_root: str = "/", now: float | None = None, new_secret: Callable[[int], str] | None = None,
         db_password: str | None = None, validate_with_compose: bool = True, live: LiveState | None = None,
         files_only: bool = False, health_timeout: float = 120.0, front_door: Choice | None = None,
         hasher: Callable[[str], str] | None = None) -> Planned:
    """The fixes for ``only`` (every fixable failure when None), against the files as they are now.

    ``front_door`` (the TLS step, ``fix --domain D --proxy P``): TLS-001/002/003 are fixed by setting up
    that proxy (system files under ``host_root``, validated, reloaded); its generated login password is
    in ``Planned.plan.shown_secrets``. Without it, the one saved in the installation's settings (an
    earlier TLS step); with neither, those checks are a refusal that says how to give one.
    ``hasher``: bcrypt for the login (tests and snapshots fix the salt).

    ``live`` (what runs now): the plan also recreates the running services it changes, behind the
    health gate (``health_timeout`` seconds), unless ``files_only``.
    """
    from checks.fix.planner import plan_fixes

    if front_door is None:
        front_door = _settings(root).front_door
    built, planner = plan_fixes(root, profile, only=only, files=files, host_root=host_root, now=now,
                                new_secret=new_secret, db_password=db_password,
                                validate_with_compose=validate_with_compose, live=None if files_only else live,
                                health_timeout=health_timeout, front_door=front_door, hasher=hasher)
    return Planned(built, planner.base_report, getattr(planner, "final_report", planner.base_report))


# -- apply and undo --------------------------------------------------------------------


@dataclass(slots=True)
class Applied:
    """What an applied change (or undo) did, for the face to tell."""

    txn_id: str
    files: list[str]
    """The changed files and modes, relative to the install root where inside it."""
    media: list[str]
    """The roots of the media trees whose modes were changed."""
    report: Report | None
    """The audit right after it; None when the files no longer parse (``audit_error`` says why)."""
    baseline: Baseline | None
    """The baseline saved for the re-audit; None when it could not be saved (a notice says why)."""
    notices: list[Notice] = field(default_factory=list)
    """What the user should know about the transaction: where the old secrets went, media left alone."""
    audit_error: str | None = None
    """Why the files could not be audited after the change (one line)."""
    baseline_error: str | None = None
    """Why the baseline was not saved (one line): the change itself is done and journaled."""
    result: ApplyResult | None = None
    """The engine's own account (where the old secrets went, media entries skipped...)."""
    recreated: list[Recreated] = field(default_factory=list)
    """Services recreated on the running stack, and how long until they were healthy."""
    trial: Pending | None = None
    """Confirm-or-revert (``Plan.revert_after``): the change is on trial until ``trial.deadline``; a face
    shows the countdown and calls :func:`confirm` (or :func:`revert_now`), else it is reverted by itself."""
    reverted: Reverted | None = None
    """The health gate failed and the whole change was taken back by itself (``txn_id`` is "" then,
    nothing else is set): what happened, and the failing container's last log lines, masked."""


def apply(root: str, planned: Plan, *, command: str, profile: str, files: list[str] | None = None,
          host_root: str = "/", now: float | None = None, guard: Guard = nullcontext, stack: Stack | None = None,
          report: Reporter | None = None, front_door: Choice | None = None) -> Applied:
    """Apply a previewed plan as one transaction, audit the result, save the baseline.

    ``front_door``: the choice the plan was built for; once a plan that sets it up is applied, it is
    recorded in the installation's settings (``[front_door]``), so re-audits and fixes use the same.

    The engine refuses a plan whose files (or modes) changed since it was
    built (:class:`checks.change.engine.StaleError`): what was previewed is
    exactly what is applied, or nothing is. A plan that recreates services runs them through
    ``stack`` (default: the docker CLI); ``report`` hears how far a recreate is. A failing health
    gate is not raised: the outcome's ``reverted`` says what happened.
    """
    from checks.change.engine import Engine
    from checks.change.stack import GateFailed

    seen = recording(stack_or_default(stack))
    trial = None
    try:
        with guard():
            engine = Engine(root, command, stack=seen, report=report)
            if planned.revert_after is None:
                result = engine.apply(planned)
            else:
                from checks.assistant.trial import apply_on_trial

                with engine.locked():
                    engine.recover()
                    result, trial = apply_on_trial(engine, planned, planned.revert_after, host_root)
    except GateFailed as exc:
        return Applied("", [], [], None, None, reverted=reverted(exc, planned))
    out = _after_change(root, result, profile, files, host_root, now, seen.done)
    out.trial = trial
    if front_door is not None and planned.system:
        from checks.audit.settings import save_front_door

        try:
            save_front_door(root, front_door)
        except (OSError, InputError) as exc:
            out.notices.append(Notice(Level.WARNING, f"the front door was not recorded in the settings: {exc}"))
    return out


class ConflictKind(enum.Enum):
    """How a file changed by hand since the transaction that undo would take back."""

    EDITED = "edited"
    """Its content differs from what the transaction left."""
    MODE_CHANGED = "mode changed"
    """Its mode (or owner) differs from what the transaction left."""


@dataclass(frozen=True, slots=True)
class Conflict:
    """A file edited by hand since the transaction: undo would overwrite that edit."""

    path: str
    kind: ConflictKind
    expected: bytes | None
    """What the transaction left (None for a mode change)."""
    current: bytes | None
    """What is there now (None for a mode change, or a removed file)."""

    @property
    def mark(self) -> tuple[str, str | None]:
        """What the preview showed of it: (path, hash of the content then)."""
        from checks.change.plan import sha256

        return (self.path, None if self.current is None else sha256(self.current))


@dataclass(slots=True)
class UndoPreview:
    """What undoing a transaction would change, and what it would overwrite."""

    txn_id: str
    checks: list[str]
    plan: Plan
    conflicts: list[Conflict]
    recovered: tuple[str, ...] = ()

    @property
    def marks(self) -> frozenset[tuple[str, str | None]]:
        return frozenset(c.mark for c in self.conflicts)


def _conflicts(raw: list[object]) -> list[Conflict]:
    out = []
    for c in raw:
        expected, current = getattr(c, "expected", None), getattr(c, "current", None)
        kind = ConflictKind.MODE_CHANGED if expected is None and current is None else ConflictKind.EDITED
        out.append(Conflict(str(getattr(c, "path", "")), kind, expected, current))
    return out


def undo_preview(root: str, txn_id: str | None, *, command: str = "undo", stack: Stack | None = None,
                 files_only: bool = False) -> UndoPreview:
    """The plan that takes ``txn_id`` (the last applied one when None) back, with the edits since.

    ``files_only``: without its recreates of the running stack (where no Docker Engine answers)."""
    from checks.change.engine import Engine

    engine = Engine(root, command, stack=stack_or_default(stack))
    with engine.locked():
        recovered = tuple(engine.recover())
        txn = engine.find(txn_id)
        undo, conflicts = engine.undo_plan(txn)
    if files_only:
        _without_recreates(undo)
    return UndoPreview(txn.id, [str(c) for c in txn.intent.get("checks", [])], undo, _conflicts(list(conflicts)),
                       recovered)


def undo(root: str, preview: UndoPreview, *, force: bool = False, command: str = "undo", profile: str | None = None,
         files: list[str] | None = None, host_root: str = "/", now: float | None = None,
         guard: Guard = nullcontext, stack: Stack | None = None, report: Reporter | None = None,
         files_only: bool = False) -> Applied:
    """Undo the previewed transaction (``files_only`` as the preview had it).

    ``force`` overwrites the hand edits the preview showed, and only those: an
    edit made since the preview refuses the undo. ``profile``: the baseline's
    (else local) when None. The running services it changed are recreated through ``stack``
    as for :func:`apply`; a failing health gate takes the undo back (``reverted``).
    """
    from checks.change.engine import Engine
    from checks.change.stack import GateFailed

    seen = recording(stack_or_default(stack))
    engine = Engine(root, command, stack=seen, report=report)
    with engine.locked():
        engine.recover()
        txn = engine.find(preview.txn_id)
        undo_plan, raw = engine.undo_plan(txn)
        if files_only:
            _without_recreates(undo_plan)
        now_marks = frozenset(c.mark for c in _conflicts(list(raw)))
        if now_marks and not force:
            raise EngineError("files were edited since the transaction; undo refused (use --force to overwrite them)")
        if now_marks != preview.marks:
            raise EngineError("files changed again since the undo preview; undo refused (preview it again)")
        try:
            with guard():
                result = engine.apply(undo_plan, kind="undo", undoes=txn.id)
        except GateFailed as exc:
            return Applied("", [], [], None, None, reverted=reverted(exc, undo_plan))
    if profile is None:
        base = load_baseline(root)
        profile = base.profile if base else "local"
    return _after_change(root, result, profile, files, host_root, now, seen.done)


def _without_recreates(plan: Plan) -> None:
    from checks.change.plan import Recreate

    plan.changes = [c for c in plan.changes if not isinstance(c, Recreate)]


def _after_change(root: str, result: ApplyResult, profile: str, files: list[str] | None, host_root: str,
                  now: float | None, recreated: list[Recreated] | None = None) -> Applied:
    """The audit after a transaction and the baseline from it; neither undoes the change when it fails."""
    from checks.audit.run import run_audit
    from checks.change.journal import summarize
    from checks.install.discovery import discover

    info = summarize(result.txn, root)
    out = Applied(result.txn.id, list(info.files), list(info.media), None, None, result=result,
                  recreated=list(recreated or []))
    out.notices += list(_engine_notices(result))
    try:
        inst = discover(root, files, host_root, now)
        out.report = run_audit(inst, profile, settings=_settings(root), live=_live_for(inst, host_root))
    except InputError as exc:
        out.audit_error = " ".join(str(exc).split())
        out.baseline_error = f"the files do not parse after the change: {out.audit_error}"
        return out
    try:
        out.baseline = save_baseline(root, out.report, profile, result.txn.id, now)
    except (OSError, InputError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        out.baseline_error = " ".join(str(reason).split())
    return out


def _engine_notices(result: ApplyResult) -> Iterator[Notice]:
    if result.secret_store == "keyring":
        yield Notice(Level.INFO, f"The old secrets needed to undo it are in {result.secret_where}.")
    elif result.secret_store:
        yield Notice(Level.WARNING,
                     f"No keyring is available: the old secrets needed to undo it are in {result.secret_where}.")
    if result.tree_skipped:
        yield Notice(Level.WARNING, f"Media entries left alone (changed or unreadable during the walk): "
                                    f"{len(result.tree_skipped)}")
    if result.tree_mounts:
        yield Notice(Level.INFO, f"Mount points inside the media library, not entered (another filesystem): "
                                 f"{len(result.tree_mounts)}")


def mark_resolved(root: str, txn_id: str) -> str:
    """Record that an interrupted transaction whose secrets are gone was put back by hand; its id."""
    from checks.change.engine import Engine

    engine = Engine(root, "undo")
    with engine.locked():
        return engine.resolve(txn_id).id


def has_journal(root: str) -> bool:
    """Whether the installation has a journal at all (read-only: creates nothing)."""
    from checks.change.statedir import journal_dir
    from checks.change.trust import verify_journal

    return bool(verify_journal(journal_dir(root)))


# -- history ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class History:
    """The transactions of the installation, oldest first."""

    txns: list[TxnSummary]
    warning: str | None = None
    """Why the journal is not shown (another user could write it): nothing of it is listed then."""


def history(root: str) -> History:
    """Every transaction, after recovery; a journal that fails the trust checks is a warning, not a list."""
    from checks.change.journal import history as read_history
    from checks.change.trust import UntrustedJournal

    try:
        return History(read_history(root))
    except UntrustedJournal as exc:
        return History([], " ".join(str(exc).split()))


# -- the re-audit ----------------------------------------------------------------------


class NoBaseline(InputError):
    """No baseline yet: nothing was ever applied here (or the journal is not trusted)."""


@dataclass(slots=True)
class Reaudit:
    """The installation now against the baseline of the last hardening."""

    baseline: Baseline
    report: Report
    drift: Drift

    def worse(self, fail_on: str) -> list[str]:
        """Check ids that regressed or fail somewhere new, at or above ``fail_on`` (none for ``never``)."""
        from checks.audit.catalog import SEVERITY_RANK

        if fail_on == "never":
            return []
        floor = SEVERITY_RANK[fail_on]
        return [i.finding.id for i in self.drift.regressions + self.drift.new
                if SEVERITY_RANK[i.finding.severity] >= floor and i.finding.id not in self.report.suppressed]


def reaudit(root: str, *, profile: str | None = None, files: list[str] | None = None, host_root: str = "/",
            now: float | None = None, mask: str | None = None, live: bool = True) -> Reaudit:
    """Audit with the baseline's profile (unless ``profile``) and compare; :class:`NoBaseline` without one.

    The live checks go in like the others (:func:`live_state`; ``live=False``: not run): a drift
    that appears is "new"; a live check that passed or failed at the baseline and cannot be run
    now (the Docker Engine unreachable) is "unchecked", never "fixed".
    """
    from checks.audit.run import run_audit
    from checks.install.discovery import discover

    base = load_baseline(root)
    if base is None:
        raise NoBaseline("no baseline yet: it is saved when 'dester-harden fix' or the assistant applies a change",
                         root)
    from checks.core.secrets import MASK

    inst = discover(root, files, host_root, now)
    report = run_audit(inst, profile or base.profile, mask=mask or MASK, settings=_settings(root),
                       live=_live_for(inst, host_root) if live else None)
    return Reaudit(base, report, drift(base, report))


# -- the live state ----------------------------------------------------------------------

#: Set (to anything but "" or "0"), no live state is gathered: the same as ``audit --no-live``, for scripts
#: and for the tests, which must not read this machine's sockets and Docker Engine.
NO_LIVE_ENV = "DESTER_HARDEN_NO_LIVE"


def live_disabled() -> bool:
    """Whether :data:`NO_LIVE_ENV` turns the live checks off."""
    return os.environ.get(NO_LIVE_ENV, "") not in ("", "0")


def live_state(install: Installation | str, *, probe: bool = True, logs: bool = True,
               only: set[str] | None = None, skip: set[str] | None = None) -> LiveState | None:
    """What runs: the Docker Engine, /proc/net, the API's endpoints (:func:`checks.live.gather.gather`).

    ``install``: the discovered installation, or its directory. None when the live layer is off
    (:data:`NO_LIVE_ENV`); the audit then reports every live check skipped, "live checks not run".
    A part that cannot be read (Docker unreachable, permission denied) is in the state with its
    reason, never an exception. Imported lazily: a file-only audit loads no live code. ``only`` and
    ``skip`` as the audit's: None too when they leave no live check to run.
    """
    if live_disabled() or not _live_checks_among(only, skip):
        return None
    if isinstance(install, str):
        from checks.install.discovery import discover

        install = discover(install_root(install))
    from checks.live.gather import gather

    state = gather(install, probe=probe, logs=logs, firewall=_live_checks_among(only, skip, FIREWALL_CHECKS))
    # What was not asked for is not checked: its checks say so, rather than pass on nothing.
    if not probe and state.probes_error is None:
        state.probes_error = "the API's endpoints were not probed"
    if not logs and state.logs_error is None:
        state.logs_error = "the API's logs were not read"
    return state


FIREWALL_CHECKS = frozenset({"FW-001", "FW-002", "FW-004", "NET-007"})
"""The checks that read the host firewall: without one of them among the asked, it is not read."""


def _live_checks_among(only: set[str] | None, skip: set[str] | None, among: frozenset[str] | None = None) -> bool:
    from checks.audit.catalog import CATALOG

    return any(c.live and (not only or c.id in only) and not (skip and c.id in skip)
               and (among is None or c.id in among) for c in CATALOG)


def _live_for(inst: Installation, host_root: str) -> LiveState | None:
    # A fixture tree as the host (--host-root, tests) is no running system to read.
    return live_state(inst) if host_root == "/" else None


def _settings(root: str) -> Settings:
    """The install's settings (suppressions apply to every audit a use case runs); malformed: SettingsError."""
    from checks.audit.settings import load_settings

    return load_settings(root)


def install_root(path: str) -> str:
    """The install directory as every use case takes it: absolute, ``~`` expanded."""
    return os.path.abspath(os.path.expanduser(path))
