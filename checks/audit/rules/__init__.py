"""Check functions: the installation model in, an :class:`Outcome` out.

Each function is pure apart from reading the files discovery pointed at (the
media tree for FS-005, proxy and cron files for TLS-* and OPS-001). The live
checks (:mod:`checks.audit.rules.live`) read :attr:`Context.live`, gathered
before the audit; no rule talks to Docker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from checks.audit.findings import Evidence, Outcome, Target
from checks.core.secrets import Masker
from checks.install.model import Installation, Service, Where

if TYPE_CHECKING:
    from checks.live.model import LiveState


@dataclass(slots=True)
class Context:
    """What every check gets besides the installation."""

    inst: Installation
    profile: str
    masker: Masker
    live: LiveState | None = None
    """What runs (Docker Engine, /proc, the API's endpoints); None when not gathered (``audit --no-live``)."""
    cache: dict[str, Any] = field(default_factory=dict)
    """What several checks of one audit share, read once (the front doors for TLS-* and NET-003)."""

    def ev(self, where: Where | None, service: str | None = None, note: str | None = None,
           text: str | None = None, target: Target | None = None) -> Evidence:
        """Evidence at ``where`` (masked), with the ``target`` the rule's fix will work on."""
        if where is None:
            return Evidence(None, None, self.masker.text(text or ""), service, note, target=target)
        shown = self.masker.line(where.text.strip()) if text is None else self.masker.text(text)
        return Evidence(where.file, where.line, shown, service, note, target=target)

    def svc_ev(self, svc: Service, note: str | None = None) -> Evidence:
        return self.ev(svc.where, svc.name, note)


CheckFn = Callable[[Context], Outcome]
REGISTRY: dict[str, CheckFn] = {}


def check(check_id: str) -> Callable[[CheckFn], CheckFn]:
    def register(fn: CheckFn) -> CheckFn:
        REGISTRY[check_id] = fn
        return fn
    return register


def load_all() -> dict[str, CheckFn]:
    from checks.audit.rules import dkr, fs, fw, live, net, ops, sec, tls  # noqa: F401  (registration side effect)
    return REGISTRY
