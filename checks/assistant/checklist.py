"""The security guide's checklist, and why a failing finding remains after the guided setup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.assistant.steps import STEP_BY_ID, STEP_OF_CHECK
from checks.audit.findings import FAIL, PASS, SKIPPED, Finding

if TYPE_CHECKING:
    from checks.audit.run import Report

@dataclass(frozen=True, slots=True)
class ChecklistItem:
    label: str
    state: str
    """done, todo, unknown (needs the live system, not checked from files) or na."""
    detail: str
    checks: tuple[str, ...]


def checklist(report: Report, profile: str) -> list[ChecklistItem]:
    """DesterLib's security guide as ticks, judged from the report."""

    def state(*ids: str) -> tuple[str, str]:
        fs = [report.by_id(i) for i in ids if _has(report, i)]
        failing = [f for f in fs if f.status == FAIL]
        if failing:
            return "todo", "; ".join(f"{f.id} fails" for f in failing)
        if fs and all(f.status == SKIPPED for f in fs):
            reasons = {f.reason for f in fs if f.reason}
            return "unknown", next(iter(reasons)) if len(reasons) == 1 else "not checked from the files"
        if any(f.status == PASS for f in fs):
            return "done", "passes " + ", ".join(f.id for f in fs if f.status == PASS)
        return "unknown", "not checked"

    items = []
    s, d = state("SEC-001", "SEC-006")
    items.append(ChecklistItem("Strong database password", s, d, ("SEC-001", "SEC-006")))
    s, d = state("FS-001")
    items.append(ChecklistItem(".env readable by its owner only (600)", s, d, ("FS-001",)))
    s, d = state("FS-004")
    items.append(ChecklistItem("Media mounted read-only (:ro)", s, d, ("FS-004",)))
    s, d = state("FW-001", "FW-002")
    items.append(ChecklistItem("Firewall on, database ports closed", s, d, ("FW-001", "FW-002")))
    if profile == "internet":
        s, d = state("TLS-001", "TLS-002", "TLS-003")
    else:
        s, d = "na", f"not exposed to the internet ({profile} profile)"
    items.append(ChecklistItem("HTTPS in front of the API when exposed", s, d, ("TLS-001",)))
    s, d = state("OPS-001")
    items.append(ChecklistItem("Database backups", s, d, ("OPS-001",)))
    s, d = state("OPS-002")
    items.append(ChecklistItem("Monitoring of the API logs", s, d, ("OPS-002",)))
    s, d = state("DKR-005")
    items.append(ChecklistItem("Weekly updates (images pulled within 7 days)", s, d, ("DKR-004", "DKR-005")))
    return items


def _has(report: Report, check_id: str) -> bool:
    return any(f.id == check_id for f in report.findings)


# -- why a finding remains -------------------------------------------------------

def remaining_reason(f: Finding, skipped_steps: set[str], refused: dict[str, str]) -> str:
    """One line on why a failing finding is still there after the guided setup."""
    chk = f.check
    if f.id in refused:
        return refused[f.id]
    if chk.live:
        return "a live check (the running system), not made from files: arrives with the live-system step"
    if not chk.fixable:
        return "explained only: no change dester-harden can make safely; " + chk.fix
    if f.id in ("TLS-001", "TLS-002", "TLS-003"):
        return "set up the HTTPS proxy by hand for now: " + chk.fix
    if f.id == "OPS-001":
        return "backups are not automated yet: " + chk.fix
    step = STEP_OF_CHECK.get(f.id)
    if step in skipped_steps:
        return f"you skipped it on the {STEP_BY_ID[step].title} step"
    return "not selected: " + chk.fix
