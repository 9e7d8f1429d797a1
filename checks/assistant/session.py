"""The assistant's engine: steps, choices, plans per step, the baseline and drift.

Everything the Textual screens show or do goes through :class:`Session`; the
screens never read or write the disk themselves, and this module never imports
Textual. The CLI's ``fix`` and the assistant build the same :class:`Plan`
objects with :func:`checks.fix.planner.plan_fixes` and apply them with the same
:class:`checks.change.engine.Engine`.
"""

from __future__ import annotations

import json
import math
import os
import secrets as _secrets
import socket
import string
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.audit.catalog import CATALOG
from checks.audit.findings import FAIL, PASS, SKIPPED, Finding

if TYPE_CHECKING:  # imported where used: the assistant's first frame needs none of them
    from checks.audit.run import Report
    from checks.change.plan import Plan
    from checks.install.model import Installation

#: The exposure profiles, each in one sentence.
PROFILES: dict[str, tuple[str, str]] = {
    "local": ("Local network only",
              "devices at home reach the API; database and Redis stay on this host."),
    "tailscale": ("Through Tailscale",
                  "your devices over your tailnet; the API listens on 127.0.0.1."),
    "internet": ("On the internet",
                 "anyone, via an HTTPS proxy with a login; the rest stays on 127.0.0.1."),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One screen of the guided setup and the checks it takes care of."""

    id: str
    title: str
    checks: tuple[str, ...]
    default_off: tuple[str, ...] = ()
    """Fixes offered on this step that the user must ask for."""
    short: str = ""
    """A short name for narrow tables."""


#: The guided setup, in order. Each check belongs to exactly one step, so a
#: finding in the re-audit can jump to the screen that fixes it.
STEPS: tuple[Step, ...] = (
    Step("network", "Network exposure", ("NET-001", "NET-002", "NET-003", "NET-004", "NET-005", "NET-006", "NET-007"),
         default_off=("NET-002",), short="Network"),
    Step("password", "Database password and secrets",
         ("SEC-001", "SEC-002", "SEC-003", "SEC-004", "SEC-005", "SEC-006", "SEC-007"), short="Password, secrets"),
    Step("permissions", "File permissions", ("FS-001", "FS-002", "FS-003", "FS-004", "FS-005", "FS-006"),
         short="Permissions"),
    Step("containers", "Container hardening",
         ("DKR-001", "DKR-002", "DKR-003", "DKR-004", "DKR-005", "DKR-006", "DKR-007", "DKR-008"),
         default_off=("DKR-001",), short="Containers"),
    Step("tls", "HTTPS (TLS)", ("TLS-001", "TLS-002", "TLS-003"), short="HTTPS"),
    Step("firewall", "Firewall", ("FW-001", "FW-002", "FW-003"), short="Firewall"),
    Step("backups", "Backups and monitoring", ("OPS-001", "OPS-002"), short="Backups"),
)
STEP_BY_ID = {s.id: s for s in STEPS}
STEP_OF_CHECK = {cid: s.id for s in STEPS for cid in s.checks}
#: Steps whose changes are planned and applied (the others explain and hand over).
APPLY_STEPS = ("network", "password", "permissions", "containers")

assert set(STEP_OF_CHECK) == {c.id for c in CATALOG}, "every check belongs to one step"


# -- passwords ------------------------------------------------------------------

#: token_urlsafe's alphabet: A-Z a-z 0-9 - _ (64 symbols), so DATABASE_URL needs no percent-encoding.
URLSAFE_ALPHABET = string.ascii_letters + string.digits + "-_"
DEFAULT_PASSWORD_BYTES = 32  # 43 characters


def generate_password(nbytes: int = DEFAULT_PASSWORD_BYTES) -> str:
    """A new database password: ``secrets.token_urlsafe`` (43 characters for 32 bytes)."""
    return _secrets.token_urlsafe(nbytes)


@dataclass(frozen=True, slots=True)
class Strength:
    length: int
    alphabet: int
    bits: int
    label: str
    url_safe: bool


def password_strength(password: str, random_bytes: int | None = None) -> Strength:
    """How strong a password is.

    For a generated one (``random_bytes`` given) the entropy is exactly its
    random bytes x 8. Otherwise it is estimated as if drawn at random from the
    character classes it uses: an upper bound for a typed one, which is why
    known weak passwords are judged by the SEC-001 rules instead.
    """
    classes = [string.ascii_lowercase, string.ascii_uppercase, string.digits]
    size = sum(len(c) for c in classes if any(ch in c for ch in password))
    if any(ch in "-_" for ch in password):
        size += 2
    other = {ch for ch in password if ch not in URLSAFE_ALPHABET}
    if other:
        size += 32
    bits = int(len(password) * math.log2(size)) if size and password else 0
    if random_bytes is not None and not other:
        size, bits = len(URLSAFE_ALPHABET), 8 * random_bytes
    label = ("very strong" if bits >= 192 else "strong" if bits >= 128 else "fair" if bits >= 80 else "weak")
    return Strength(len(password), size, bits, label, not other)


# -- the baseline -----------------------------------------------------------------

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
    finding: Finding
    kind: str
    """regression (passed at the baseline, fails now), new (fails in a new place), fixed, or still."""
    step: str


@dataclass(slots=True)
class Drift:
    regressions: list[DriftItem] = field(default_factory=list)
    new: list[DriftItem] = field(default_factory=list)
    fixed: list[DriftItem] = field(default_factory=list)
    still: list[DriftItem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.regressions or self.new or self.fixed)


def drift(base: Baseline, report: Report) -> Drift:
    out = Drift()
    for f in report.findings:
        was = base.status.get(f.id)
        item = lambda kind, f=f: DriftItem(f, kind, STEP_OF_CHECK.get(f.id, "network"))  # noqa: E731
        if f.status == FAIL:
            if was == PASS:
                out.regressions.append(item("regression"))
            elif was != FAIL or set(_evidence_keys(f)) - set(base.evidence.get(f.id, [])):
                out.new.append(item("new"))
            else:
                out.still.append(item("still"))
        elif f.status == PASS and was == FAIL:
            out.fixed.append(item("fixed"))
    return out


# -- the security guide's checklist -----------------------------------------------

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


# -- the session -----------------------------------------------------------------

@dataclass(slots=True)
class Choices:
    """What the user decided on the way through the guided setup."""

    profile: str = "local"
    selected: dict[str, set[str]] = field(default_factory=dict)
    """step id -> the check ids whose fixes the user wants."""
    db_password: str | None = None
    """The generated database password (never shown unless revealed)."""


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
                 new_secret: Callable[[int], str] | None = None) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))
        self.files = files
        self.host_root = host_root
        self.clock = now or time.time
        self.hostname = hostname or socket.gethostname()
        self._new_secret = new_secret or _secrets.token_urlsafe
        self.baseline = load_baseline(self.root)
        from checks.audit.settings import load_settings

        self.settings = load_settings(self.root)  # malformed: SettingsError, one line before the app starts
        self.choices = Choices(profile=profile or self.settings.profile
                               or (self.baseline.profile if self.baseline else "local"))
        self.report: Report | None = None
        self.inst: Installation | None = None
        self.recovered: list[str] = []

    # -- reading -------------------------------------------------------------
    @property
    def first_run(self) -> bool:
        return self.baseline is None

    def recover(self) -> list[str]:
        """Roll back what a killed run left half-applied, before anything reads the files.

        A rollback that cannot be done is a warning, as for the CLI's audit:
        reading the files is still safe.
        """
        from checks.change.engine import EngineError, recover_install
        from checks.core.errors import InputError

        try:
            self.recovered = recover_install(self.root)
        except (EngineError, InputError) as exc:
            # InputError: a journal another user could write, or one dester-harden
            # would not have written; it is never acted on, the audit reads on.
            self.recovered = ["warning: " + " ".join(str(exc).split())]
        return self.recovered

    def audit(self, profile: str | None = None) -> Report:
        from checks.audit.run import run_audit
        from checks.install.discovery import discover

        self.inst = discover(self.root, self.files, self.host_root, self.clock())
        self.report = run_audit(self.inst, profile or self.choices.profile, settings=self.settings)
        return self.report

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
        from checks.fix.planner import FIXERS

        fixable = {fx.id for fx in FIXERS}
        st = STEP_BY_ID[step]
        return {f.id for f in self.failing(step, report) if f.id in fixable and f.id not in st.default_off}

    def fixable(self, step: str) -> list[str]:
        """The check ids of this step that dester-harden can fix from the files."""
        from checks.fix.planner import FIXERS

        fixable = {fx.id for fx in FIXERS}
        return [c for c in STEP_BY_ID[step].checks if c in fixable]

    # -- planning and applying -------------------------------------------------
    def plan(self, step: str, checks: set[str] | None = None, profile: str | None = None,
             preview: bool = False) -> StepPlan:
        """The plan for one step's selected fixes, against the files as they are now.

        ``preview``: only to show on a step screen, never applied, so the
        ``docker compose config`` validation is left to the plan built on review.
        """
        from checks.fix.planner import plan_fixes

        only = set(self.choices.selected.get(step, set()) if checks is None else checks)
        profile = profile or self.choices.profile
        if not only:
            report = self.audit(profile)
            from checks.change.plan import Plan

            return StepPlan(step, Plan(), report.score, report.score, preview)
        pw = self.choices.db_password if "SEC-001" in only else None
        plan, planner = plan_fixes(self.root, profile, only=only, files=self.files, host_root=self.host_root,
                                   now=self.clock(), new_secret=self._new_secret, db_password=pw,
                                   validate_with_compose=not preview)
        after = getattr(planner, "final_report", planner.base_report).score
        return StepPlan(step, plan, planner.base_report.score, after, preview)

    def apply(self, step_plan: StepPlan):
        """Apply a previewed plan as one transaction; then save the baseline."""
        from checks.change.engine import Engine

        if step_plan.preview:
            raise ValueError("a preview plan is never applied: build the plan again without preview=True")
        result = Engine(self.root, f"assistant:{step_plan.step}").apply(step_plan.plan)
        self._save_profile()
        report = self.audit()
        self.baseline = save_baseline(self.root, report, self.choices.profile, result.txn.id, self.clock())
        return result, report

    # -- history ---------------------------------------------------------------
    def transactions(self) -> list[TxnInfo]:
        from checks.change.journal import history
        from checks.change.trust import UntrustedJournal

        try:
            txns = history(self.root)
        except UntrustedJournal:
            return []  # said by recover() on the first screen; nothing of it is shown
        return [TxnInfo(t.id, t.when.strftime("%Y-%m-%d %H:%M") if t.when else t.id[:15], t.kind,
                        "undone" if t.undone_by else t.state, t.checks, t.files, t.media, t.undoable,
                        STEP_OF_CHECK.get(t.checks[0]) if t.checks else None)
                for t in txns]

    def undo_preview(self, txn_id: str):
        """(plan, conflicts) for undoing ``txn_id``."""
        from checks.change.engine import Engine

        engine = Engine(self.root, "undo")
        with engine.locked():
            engine.recover()
            txn = engine.find(txn_id)
            return engine.undo_plan(txn)

    def undo(self, txn_id: str, force: bool = False, seen: frozenset | None = None):
        """Undo ``txn_id``. ``force`` overwrites hand edits, but only the ones the user saw:
        ``seen`` is :func:`conflict_marks` of the preview; edits made after it refuse the undo."""
        from checks.change.engine import Engine, EngineError

        engine = Engine(self.root, "assistant:undo")
        with engine.locked():
            engine.recover()
            txn = engine.find(txn_id)
            plan, conflicts = engine.undo_plan(txn)
            if conflicts and not force:
                raise EngineError("files were edited since the transaction; undo refused")
            if conflicts and seen is not None and conflict_marks(conflicts) != seen:
                raise EngineError("files changed again since the undo preview; undo refused (open it again)")
            result = engine.apply(plan, kind="undo", undoes=txn.id)
        report = self.audit()
        self.baseline = save_baseline(self.root, report, self.choices.profile, result.txn.id, self.clock())
        return result, report

    # -- display -----------------------------------------------------------------
    def display(self, path: str) -> str:
        """A path as the screens show it: relative to the install, control characters escaped."""
        from checks.core.textio import shown

        rel = os.path.relpath(path, self.root)
        return shown(path if rel.startswith("..") else rel)


def conflict_marks(conflicts) -> frozenset:
    """What an undo preview showed as edited by hand: (path, content hash) pairs."""
    from checks.change.plan import sha256

    return frozenset((c.path, None if c.current is None else sha256(c.current)) for c in conflicts)
