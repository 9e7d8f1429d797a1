"""Findings: what a check concluded, with evidence a person can act on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from checks.audit.catalog import SEVERITY_RANK, Check
from checks.core.yamlpos import Node
from checks.install.model import EnvVar, Mount, Port, Service

#: What a rule found, as the model holds it: the fix of that rule works on it (never shown, never in JSON).
#: A ``str`` is an absolute host path the model has no object for (FS-007's SQLite files).
Target: TypeAlias = Port | Mount | Service | EnvVar | Node | str

FAIL = "fail"
PASS = "pass"
SKIPPED = "skipped"
ERROR = "error"
STATUSES = (FAIL, PASS, SKIPPED, ERROR)


@dataclass(slots=True)
class Evidence:
    """Where a finding comes from. ``text`` is already masked."""

    file: str | None
    line: int | None
    text: str
    service: str | None = None
    note: str | None = None
    """A short explanation (never a secret): "14 characters, fewer than 32"."""
    severity: str | None = None
    """What this piece of evidence is worth when it is more than the catalog's severity (a stray
    copy that holds a password still in use is as severe as FS-001): the finding takes the highest."""
    target: Target | None = None
    """The model object the rule judged (the port binding, the mount, the node), for the rule's fix."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"file": self.file, "line": self.line, "text": self.text}
        if self.service is not None:
            out["service"] = self.service
        if self.note is not None:
            out["note"] = self.note
        if self.severity is not None:
            out["severity"] = self.severity
        return out


@dataclass(slots=True)
class Outcome:
    """What a check function returns."""

    status: str
    evidence: list[Evidence] = field(default_factory=list)
    reason: str | None = None
    """For skipped and error: why; for fail: an optional one-line summary."""
    severity: str | None = None
    """The catalog's severity under another profile than the audit's (a tailscale funnel is judged as
    the internet profile); None: the audit profile's."""


@dataclass(slots=True)
class Finding:
    """One check's result for one installation and profile."""

    check: Check
    status: str
    severity: str
    evidence: list[Evidence] = field(default_factory=list)
    reason: str | None = None

    def __post_init__(self) -> None:
        # The catalog gives each check one severity per profile; a failing finding's own evidence
        # may raise it (never lower it), so one rule can say "worse here" without a second check ID.
        if self.status == FAIL:
            for e in self.evidence:
                if e.severity is not None and SEVERITY_RANK[e.severity] > SEVERITY_RANK[self.severity]:
                    self.severity = e.severity

    @property
    def id(self) -> str:
        return self.check.id

    @property
    def services(self) -> set[str]:
        return {e.service for e in self.evidence if e.service}

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.check.id,
            "severity": self.severity,
            "status": self.status,
            "title": self.check.title,
            "evidence": [e.as_dict() for e in self.evidence],
            "fixable": self.check.fixable and self.status == FAIL,
        }
        if self.reason:
            out["reason"] = self.reason
        return out
