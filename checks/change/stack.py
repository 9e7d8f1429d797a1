"""The running stack, as the change engine sees it: recreate services, then wait for the health gate.

A :class:`checks.change.plan.Recreate` change is carried out by a :class:`Stack`
injected into the engine (``Engine(..., stack=...)``), like the executor: the engine
imports no Docker code. The real one is :class:`checks.live.stack.ComposeStack`;
tests of the engine alone pass a fake.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.plan import Recreate

Reporter = Callable[[str, float | None], None]
"""``report(what, elapsed)``: "recreating api", "waiting for api to be healthy" (seconds so far or None)."""


@dataclass(frozen=True, slots=True)
class GateResult:
    """How a recreate went."""

    ok: bool
    reason: str = ""
    """One line when not ok: "api restarted 2 times", "old password still accepted"..."""
    recreated: tuple[str, ...] = ()
    """Services whose container was really replaced."""
    last_logs: tuple[str, ...] = ()
    """The failing container's last log lines (masked by the engine before anyone sees them)."""
    elapsed: float = 0.0
    service: str = ""
    """The service that failed the gate (when not ok); "" when it was not one service's fault."""


class Stack(Protocol):
    """Recreates services of a compose project and judges the health gate."""

    def recreate(self, change: Recreate, secrets: Mapping[str, str], report: Reporter | None = None) -> GateResult:
        """``docker compose up -d --no-deps --wait`` exactly ``change.services``, then the gate
        (healthcheck, no restart, ``GET /health`` for ``change.http``, ``change.logins``), within
        ``change.timeout`` seconds in all. ``secrets``: the plan's named secrets, for the logins."""
        ...


class GateFailed(EngineError):
    """The stack did not come up healthy: the transaction is rolled back (files restored, services recreated)."""

    def __init__(self, message: str, result: GateResult) -> None:
        super().__init__(message)
        self.result = result
        self.rollback_problems: list[str] = []
        """What the rollback after it could not put back (the engine fills it in): "recreate api by hand..."."""
