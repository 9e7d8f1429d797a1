"""Confirm-or-revert as use cases: a change applied on trial, confirmed in time or reverted.

The orchestration both faces reach through :mod:`checks.assistant.usecases` (which re-exports
these): the mechanism (the pending record, the watcher, the boot hook) is
:mod:`checks.firewall.confirm`'s; here the engine's lock is taken around it and the outcome is
put in words a face shows. See docs/adr/0010-confirm-or-revert.md.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from checks.firewall.confirm import ARMED, CONFIRMED, REVERTED, Pending

if TYPE_CHECKING:
    from checks.change.engine import ApplyResult, Engine
    from checks.change.plan import Plan

__all__ = ["ARMED", "CONFIRMED", "REVERTED", "Confirmation", "Outcome", "Pending", "apply_on_trial", "confirm",
           "pending_confirmation", "revert_expired", "revert_now"]


class Outcome(enum.Enum):
    """What ``dester-harden confirm`` (or the assistant's confirm) found."""

    CONFIRMED = "confirmed"
    """The change waiting for confirmation is now permanent."""
    TOO_LATE = "too late"
    """Its deadline had passed (or the machine rebooted): it was reverted, not confirmed."""
    NOTHING = "nothing"
    """Nothing waited for confirmation (the last record, if any, says how it ended)."""


@dataclass(frozen=True, slots=True)
class Confirmation:
    """The outcome of a confirm, with the record for its details (deadline, transaction, result)."""

    outcome: Outcome
    pending: Pending | None

    @property
    def message(self) -> str:
        p = self.pending
        if self.outcome is Outcome.CONFIRMED and p is not None:
            return f"Confirmed: transaction {p.txn} stays."
        if self.outcome is Outcome.TOO_LATE and p is not None:
            return f"Too late: {p.result}; the files and the rules are as before it."
        if p is None:
            return "Nothing waits for confirmation."
        return f"Nothing waits for confirmation (the last change on trial: {p.result or p.state})."


def apply_on_trial(engine: Engine, plan: Plan, seconds: float, host_root: str = "/") -> tuple[ApplyResult, Pending]:
    """Arm the revert, apply ``plan`` as a tentative transaction, attach it (the lock held by the caller).

    The watcher is started before the first change: a kill at any instant after arming is reverted at
    the deadline (a half-applied transaction by recovery, a whole one by the watcher)."""
    from checks.firewall.confirm import arm, attach, disarm

    pending = arm(engine, seconds, host_root=host_root)
    try:
        # The engine's deadline is the record's (it starts counting when the intent is written, a moment later).
        result = engine.apply(plan, tentative=max(0.0, pending.deadline - time.time()))
    except Exception:
        disarm(engine.root, pending, "the change failed and was rolled back")
        raise
    return result, attach(engine.root, pending, result.txn.id)


def _engine(root: str, command: str) -> Engine:
    from checks.change.engine import Engine

    return Engine(root, command)


T = TypeVar("T")

WAIT = 30.0
"""Seconds a confirm or a revert waits for the lock (the watcher reverting at that very moment holds it
for well under a second); longer, the one line of :class:`checks.change.lock.LockedError` says who has it."""


def _with_lock(root: str, command: str, act: Callable[[Engine], T], wait: float | None = WAIT) -> T:
    """``act(engine)`` with the install lock held, waiting up to ``wait`` seconds (None: for ever) for it."""
    from checks.change.engine import LockedError
    from checks.firewall.confirm import POLL

    give_up = None if wait is None else time.monotonic() + wait
    while True:
        engine = _engine(root, command)
        try:
            with engine.locked():
                return act(engine)
        except LockedError:
            if give_up is not None and time.monotonic() >= give_up:
                raise
            time.sleep(POLL)


def confirm(root: str) -> Confirmation:
    """Confirm the change on trial; an expired one is reverted instead (``TOO_LATE``)."""
    from checks.firewall import confirm as fc

    def act(engine: Engine) -> tuple[Pending | None, Pending | None]:
        return fc.load(root), fc.confirm(engine)

    before, after = _with_lock(root, "confirm", act)
    if before is None or before.state != ARMED or after is None:
        return Confirmation(Outcome.NOTHING, after)
    return Confirmation(Outcome.CONFIRMED if after.state == CONFIRMED else Outcome.TOO_LATE, after)


def revert_now(root: str, why: str = "not confirmed") -> Pending | None:
    """Revert the change on trial at once (the countdown's "no" or its end); the record (None: none)."""
    from checks.firewall import confirm as fc

    return _with_lock(root, "confirm", lambda engine: fc.revert(engine, why))


def revert_expired(root: str, *, wait: bool = False) -> Pending | None:
    """Revert the change on trial when its deadline passed or the machine rebooted since it was armed (the
    boot hook, and every command's recovery); the record when it was reverted now. Someone else holding the
    lock (the watcher, an apply) is left to finish it unless ``wait``."""
    from checks.change.engine import LockedError
    from checks.firewall import confirm as fc

    pending = fc.load(root)
    if pending is None or not pending.expired():
        return None
    try:
        return _with_lock(root, "recover", fc.revert_if_expired, None if wait else 0.0)
    except LockedError:
        return None  # the holder (the watcher, an apply) finishes it


def pending_confirmation(root: str) -> Pending | None:
    """The change waiting for confirmation (deadline, transaction), for a countdown; None when none waits.
    Read only; a record another user could write raises :class:`checks.change.trust.UntrustedJournal`."""
    from checks.firewall import confirm as fc

    pending = fc.load(root)
    return pending if pending is not None and pending.state == ARMED else None

