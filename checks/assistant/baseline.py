"""The baseline (the audit as dester-harden last left the installation) and the drift since.

Saved by every applied change and every undo, whichever face made it
(:mod:`checks.assistant.usecases`); read by the re-audit screen and by
``dester-harden reaudit``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.assistant.steps import STEP_OF_CHECK
from checks.audit.findings import FAIL, PASS, Finding

if TYPE_CHECKING:
    from checks.audit.run import Report

BASELINE = "baseline.json"


@dataclass(slots=True)
class Baseline:
    """The audit as dester-harden last left the installation (saved after each apply)."""

    saved_at: float
    profile: str
    score: int
    status: dict[str, str]
    """check id -> pass / fail / skipped / error."""
    evidence: dict[str, list[str]]
    """check id -> evidence keys of failures (file:service, never a value)."""
    txn: str | None = None


def _evidence_keys(f: Finding) -> list[str]:
    """Where a failure is, as the baseline keeps it: file and service, never a value."""
    return sorted({f"{e.file or ''}|{e.service or ''}" for e in f.evidence})


def baseline_path(root: str) -> str:
    """In the journal of the user running dester-harden (:func:`checks.change.statedir.journal_dir`)."""
    from checks.change.statedir import journal_dir

    return os.path.join(journal_dir(os.path.abspath(root)), BASELINE)


def load_baseline(root: str) -> Baseline | None:
    """The baseline, read only from a journal that passes the trust checks (else None: a first run)."""
    from checks.change.trust import UntrustedJournal, read_checked, verify_journal

    try:
        path = baseline_path(root)
        if not verify_journal(os.path.dirname(path)):
            return None
        raw = read_checked(path)
        if raw is None:
            return None
        data = json.loads(raw)
        return Baseline(float(data["saved_at"]), str(data["profile"]), int(data["score"]),
                        dict(data["status"]), {k: list(v) for k, v in data.get("evidence", {}).items()},
                        data.get("txn"))
    except (FileNotFoundError, UntrustedJournal):
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # unreadable: treated as a first run (the file is rewritten after the next apply)


def save_baseline(root: str, report: Report, profile: str, txn: str | None, now: float | None = None) -> Baseline:
    """Write the baseline atomically (0600 in the 0700 journal directory)."""
    base = Baseline(now if now is not None else time.time(), profile, report.score,
                    {f.id: f.status for f in report.findings},
                    {f.id: _evidence_keys(f) for f in report.findings if f.status == FAIL}, txn)
    from checks.change.journal import ensure_private_dir
    from checks.change.statedir import journal_dir
    from checks.change.trust import verify_journal
    from checks.core.atomic import write_private

    journal = journal_dir(os.path.abspath(root), create=True)
    verify_journal(journal)
    ensure_private_dir(journal)
    path = os.path.join(journal, BASELINE)
    write_private(path, json.dumps({"saved_at": base.saved_at, "profile": profile, "score": base.score,
                                    "status": base.status, "evidence": base.evidence, "txn": txn},
                                   indent=1, sort_keys=True).encode())
    return base


@dataclass(slots=True)
class DriftItem:
    """One check's change since the baseline."""

    finding: Finding
    kind: str
    """regression (passed at the baseline, fails now), new (fails in a new place), fixed, still, or
    unchecked (passed or failed at the baseline, could not be checked now: never counted as passing)."""
    step: str


@dataclass(slots=True)
class Drift:
    """The installation now against the baseline, check by check."""

    regressions: list[DriftItem] = field(default_factory=list)
    new: list[DriftItem] = field(default_factory=list)
    fixed: list[DriftItem] = field(default_factory=list)
    still: list[DriftItem] = field(default_factory=list)
    unchecked: list[DriftItem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.regressions or self.new or self.fixed)


def drift(base: Baseline, report: Report) -> Drift:
    """Compare ``report`` with the baseline (the same profile gives the same checks)."""
    out = Drift()
    for f in report.findings:
        was = base.status.get(f.id)
        step = STEP_OF_CHECK.get(f.id, "network")

        def item(kind: str, f: Finding = f, step: str = step) -> DriftItem:
            return DriftItem(f, kind, step)

        if f.status == FAIL:
            if was == PASS:
                out.regressions.append(item("regression"))
            elif was != FAIL or set(_evidence_keys(f)) - set(base.evidence.get(f.id, [])):
                out.new.append(item("new"))
            else:
                out.still.append(item("still"))
        elif f.status == PASS and was == FAIL:
            out.fixed.append(item("fixed"))
        elif f.status not in (PASS, FAIL) and was in (PASS, FAIL):
            out.unchecked.append(item("unchecked"))
    return out
