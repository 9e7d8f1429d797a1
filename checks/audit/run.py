"""Running the catalog against an installation, and the score."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.audit.catalog import BY_ID, CATALOG, PROFILES, SEVERITY_RANK, Check
from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Finding, Outcome
from checks.audit.rules import CheckFn, Context, load_all
from checks.core.perf import paused_gc
from checks.core.secrets import MASK, Masker
from checks.install.model import Installation

if TYPE_CHECKING:
    from checks.audit.settings import Settings, Suppression
    from checks.live.model import LiveState

#: Each failing check multiplies the score by its severity's factor.
SCORE_FACTORS = {"critical": 0.5, "high": 0.75, "medium": 0.9, "low": 0.97, "info": 1.0}

FAIL_ON = ("critical", "high", "medium", "low", "never")


@dataclass(slots=True)
class Report:
    """The findings of one audit."""

    installation: Installation
    profile: str
    findings: list[Finding] = field(default_factory=list)
    masker: Masker = field(default_factory=Masker)
    suppressed: dict[str, Suppression] = field(default_factory=dict)
    """check id -> the active suppression covering its failure: shown, not counted (score, exit code)."""
    expired: dict[str, Suppression] = field(default_factory=dict)
    """check id -> an expired suppression of a failing finding (it counts, and the report says so)."""
    warnings: list[str] = field(default_factory=list)
    """One line each: an untrusted settings file, unknown or unused suppressions (never fatal)."""

    @property
    def score(self) -> int:
        return score([f for f in self.findings if f.id not in self.suppressed])

    def by_id(self, check_id: str) -> Finding:
        for f in self.findings:
            if f.id == check_id:
                return f
        raise KeyError(check_id)

    def failed(self, at_least: str = "info") -> list[Finding]:
        floor = SEVERITY_RANK[at_least]
        return [f for f in self.findings
                if f.status == FAIL and SEVERITY_RANK[f.severity] >= floor and f.id not in self.suppressed]


def score(findings: list[Finding]) -> int:
    """100 times the product of the factors of failing checks; skipped and errored checks count as nothing."""
    value = 1.0
    for f in findings:
        if f.status == FAIL:
            value *= SCORE_FACTORS[f.severity]
    return int(round(100 * value))


def explain_score() -> str:
    # Wrapped by hand to stay within the 80 columns of the text output.
    lines = [
        "The score starts at 100. Each failing check multiplies it by a factor for its",
        "severity under the chosen exposure profile:",
        "",
    ]
    for sev, factor in SCORE_FACTORS.items():
        lines.append(f"  {sev:<9} x {factor:g}" + ("   (does not lower the score)" if factor == 1.0 else ""))
    lines += [
        "",
        "score = round(100 x product of the factors of all failing checks)",
        "",
        "Passing checks keep the score where it is. Skipped checks (not applicable, or",
        "live checks that could not run) and checks that ended in an error count as",
        "nothing: they never raise the score. Two criticals alone bring it to 25; a fully",
        "hardened installation scores 100.",
    ]
    return "\n".join(lines)


def run_audit(inst: Installation, profile: str = "local", only: set[str] | None = None,
              skip: set[str] | None = None, mask: str = MASK, settings: Settings | None = None,
              today: _dt.date | None = None, live: LiveState | None = None) -> Report:
    """Run every applicable check of the catalog; ``settings``' suppressions apply as of ``today``.

    ``live``: what runs (:func:`checks.live.gather.gather`); without it every live check is
    skipped ("live checks not run"), never passed.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}")
    fns = load_all()
    masker = Masker(inst.secrets, mask)
    ctx = Context(inst, profile, masker, live)
    report = Report(inst, profile, masker=masker)
    with paused_gc():
        _run(report, ctx, fns, profile, masker, only, skip)
    if settings is not None:
        apply_settings(report, settings, today)
    return report


def apply_settings(report: Report, settings: Settings, today: _dt.date | None = None) -> None:
    """Mark the failures the settings' active suppressions cover; collect the settings' warnings."""
    from checks.audit.settings import match

    report.warnings.extend(settings.warnings)
    if not settings.suppressions:
        return
    matched = match(report.findings, settings.suppressions, report.installation.root, today)
    report.suppressed, report.expired = matched.suppressed, matched.expired
    report.warnings.extend(matched.warnings)


def _run(report: Report, ctx: Context, fns: dict[str, CheckFn], profile: str, masker: Masker,
         only: set[str] | None, skip: set[str] | None) -> None:
    for chk in CATALOG:
        if only and chk.id not in only:
            continue
        if skip and chk.id in skip:
            continue
        fn = fns[chk.id]
        try:
            outcome = fn(ctx)
        except PermissionError as exc:
            outcome = Outcome(ERROR, reason=f"permission denied reading {exc.filename or 'a file'}; run with sudo")
        except OSError as exc:
            outcome = Outcome(ERROR, reason=f"could not read {exc.filename or 'a file'}: {exc.strerror}")
        if outcome.status == PASS and ctx.inst.unfollowed:
            # A pass that could not see every service is no pass (an include or extends not followed).
            outcome = Outcome(ERROR, reason=unfollowed_reason(ctx.inst))
        report.findings.append(_finding(chk, outcome, profile, masker))


def _finding(chk: Check, outcome: Outcome, profile: str, masker: Masker) -> Finding:
    reason = masker.text(outcome.reason) if outcome.reason else None
    return Finding(chk, outcome.status, outcome.severity or chk.severity_for(profile), outcome.evidence, reason)


def unfollowed_reason(inst: Installation) -> str:
    """One line: what could not be followed, so the checks could not see every service."""
    more = len(inst.unfollowed) - 1
    return f"{inst.unfollowed[0]}" + (f" (and {more} more)" if more > 0 else "") + \
        "; the files could not be read whole, so this check cannot pass"


def exit_code(report: Report, fail_on: str) -> int:
    """0 when nothing fails at or above ``fail_on``; 1 otherwise; 2 when an include or
    extends could not be followed (an input error: the audit could not see every service)."""
    if report.installation.unfollowed:
        return 2
    if fail_on == "never":
        return 0
    return 1 if report.failed(fail_on) else 0


__all__ = ["Report", "run_audit", "exit_code", "score", "explain_score", "FAIL_ON", "BY_ID", "PASS", "SKIPPED",
           "apply_settings"]
