"""checks/assistant/ without Textual: steps, passwords, the session, the baseline, drift, the checklist."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest

from checks.assistant.baseline import drift, load_baseline, save_baseline
from checks.assistant.checklist import checklist, remaining_reason
from checks.assistant.passwords import password_strength
from checks.assistant.session import Session
from checks.assistant.steps import APPLY_STEPS, STEP_OF_CHECK, STEPS
from checks.audit.catalog import CATALOG
from checks.demo import materialize
from tests.apphelpers import seeded_secrets


def test_every_check_belongs_to_exactly_one_step():
    owners = [cid for s in STEPS for cid in s.checks]
    assert sorted(owners) == sorted(c.id for c in CATALOG)
    assert len(owners) == len(set(owners))
    assert STEP_OF_CHECK["FS-001"] == "permissions" and STEP_OF_CHECK["NET-001"] == "network"


def test_the_sessions_generated_password_comes_from_secrets_and_is_url_safe(tmp_path, monkeypatch):
    import secrets

    calls: list[int] = []
    real = secrets.token_urlsafe

    def token(n: int) -> str:
        calls.append(n)
        return real(n)

    monkeypatch.setattr(secrets, "token_urlsafe", token)
    s = Session(str(tmp_path), hostname="h")
    pw = s.generate_password()
    assert calls == [32] and s.choices.db_password == pw
    assert len(pw) == 43 and re.fullmatch(r"[A-Za-z0-9_-]+", pw)
    assert s.generate_password() != pw


def test_password_strength():
    s = password_strength("x" * 43, random_bytes=32)
    assert (s.bits, s.alphabet, s.label, s.url_safe) == (256, 64, "very strong", True)
    weak = password_strength("postgres")
    assert weak.bits < 80 and weak.label == "weak"
    assert password_strength("Ab1").alphabet == 62
    assert not password_strength("pa$$word").url_safe
    assert password_strength("").bits == 0


def test_plan_writes_the_chosen_password_to_every_place_that_must_agree(tmp_path):
    root = materialize(str(tmp_path))
    s = Session(root, hostname="h", new_secret=seeded_secrets())
    s.audit()
    pw = s.generate_password()
    step = s.plan("password", {"SEC-001"})
    assert step.plan.checks == ["SEC-001"]
    assert pw in step.plan.secrets
    report = s.apply(step).report
    assert report is not None
    env = Path(os.path.join(root, ".env")).read_text(encoding="utf-8")
    compose = Path(os.path.join(root, "docker-compose.yml")).read_text(encoding="utf-8")
    assert env.count(pw) + compose.count(pw) >= 2  # POSTGRES_PASSWORD and DATABASE_URL agree
    assert report.by_id("SEC-001").status == "pass" and report.by_id("SEC-002").status != "fail"


def test_apply_saves_a_private_baseline_without_secrets(tmp_path):
    root = materialize(str(tmp_path))
    s = Session(root, hostname="h", new_secret=seeded_secrets())
    assert s.first_run
    s.audit()
    pw = s.generate_password()
    for step in APPLY_STEPS:
        s.choices.selected[step] = s.default_selection(step)
        s.apply(s.plan(step))
    path = os.path.join(root, ".dester-harden", "baseline.json")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = Path(path).read_text(encoding="utf-8")
    assert pw not in data and "postgres:postgres" not in data
    base = load_baseline(root)
    assert base is not None and s.report is not None
    assert base.score == s.report.score and base.status["FS-001"] == "pass"
    assert not Session(root).first_run


def test_a_corrupt_baseline_counts_as_a_first_run(tmp_path):
    root = materialize(str(tmp_path))
    os.makedirs(os.path.join(root, ".dester-harden"), mode=0o700)
    with open(os.path.join(root, ".dester-harden", "baseline.json"), "w") as fh:
        fh.write("{not json")
    assert load_baseline(root) is None and Session(root).first_run


def test_drift_regressions_new_fixed_and_still(tmp_path):
    root = materialize(str(tmp_path))
    s = Session(root, hostname="h", new_secret=seeded_secrets())
    report = s.audit()
    base = save_baseline(root, report, "local", None)
    os.chmod(os.path.join(root, ".env"), 0o600)  # FS-001: fixed since the baseline
    d = drift(base, s.audit())
    assert "FS-001" in {i.finding.id for i in d.fixed}
    assert "NET-001" not in {i.finding.id for i in d.regressions}
    still = {i.finding.id for i in d.still}
    assert "SEC-001" in still
    # A regression: a check that passed at the baseline fails now.
    base2 = save_baseline(root, s.audit(), "local", None)
    os.chmod(os.path.join(root, ".env"), 0o644)
    d2 = drift(base2, s.audit())
    assert [i.finding.id for i in d2.regressions] == ["FS-001"] and d2.regressions[0].step == "permissions"
    assert d2.changed


def test_drift_reports_a_failing_check_in_a_new_place_as_new(tmp_path):
    root = materialize(str(tmp_path))
    s = Session(root, hostname="h")
    base = save_baseline(root, s.audit(), "local", None)
    stray = os.path.join(root, ".env.old")
    with open(os.path.join(root, ".env"), "rb") as src, open(stray, "wb") as dst:
        dst.write(src.read())
    os.chmod(stray, 0o644)
    d = drift(base, s.audit())
    assert "FS-006" in {i.finding.id for i in d.new}


def test_checklist_ticks_follow_the_report(tmp_path):
    root = materialize(str(tmp_path))
    s = Session(root, hostname="h")
    items = {i.label: i for i in checklist(s.audit(), "local")}
    assert items["Strong database password"].state == "todo"
    assert items[".env readable by its owner only (600)"].state == "todo"
    assert items["HTTPS in front of the API when exposed"].state == "na"
    assert items["Firewall on, database ports closed"].state == "unknown"  # a live check: said so, not ticked
    items = {i.label: i for i in checklist(s.audit("internet"), "internet")}
    assert items["HTTPS in front of the API when exposed"].state == "todo"


def test_remaining_reasons_say_why(tmp_path):
    root = materialize(str(tmp_path))
    report = Session(root, hostname="h").audit()
    f = report.by_id("SEC-001")
    assert "skipped it on the Database password" in remaining_reason(f, {"password"}, {})
    assert remaining_reason(f, set(), {"SEC-001": "refused: inside an anchor"}) == "refused: inside an anchor"
    assert "explained only" in remaining_reason(report.by_id("DKR-004"), set(), {})
    assert "not automated yet" in remaining_reason(report.by_id("OPS-001"), set(), {})


def test_history_and_undo_through_the_session(tmp_path):
    root = materialize(str(tmp_path))
    before = Path(os.path.join(root, "docker-compose.yml")).read_bytes()
    s = Session(root, hostname="h")
    s.audit()
    s.choices.selected["network"] = {"NET-001"}
    done = s.apply(s.plan("network"))
    assert done.files == ["docker-compose.yml"] and s.baseline is not None and s.baseline.txn == done.txn_id
    txns = s.transactions()
    assert [(t.kind, t.state, t.step, t.undoable) for t in txns] == [("fix", "applied", "network", True)]
    preview = s.undo_preview(done.txn_id)
    assert not preview.conflicts and preview.plan.changes and preview.checks == ["NET-001"]
    undone = s.undo(preview)
    assert s.baseline is not None and s.baseline.txn == undone.txn_id
    assert Path(os.path.join(root, "docker-compose.yml")).read_bytes() == before
    assert [t.state for t in s.transactions()] == ["undone", "applied"]
    assert not s.transactions()[0].undoable and not s.transactions()[1].undoable


def test_a_preview_plan_skips_compose_validation_and_is_never_applied(tmp_path, monkeypatch):
    import checks.fix.planner

    root = materialize(str(tmp_path))
    ran = []
    monkeypatch.setattr(checks.fix.planner, "compose_check", lambda planner, inst: ran.append(True))
    s = Session(root, hostname="h")
    s.audit()
    preview = s.plan("network", {"NET-001"}, preview=True)
    assert preview.preview and preview.plan.changes and ran == []
    with pytest.raises(ValueError):
        s.apply(preview)
    real = s.plan("network", {"NET-001"})
    assert ran == [True] and not real.preview
    assert [getattr(c, "after", None) for c in real.plan.changes] == [getattr(c, "after", None)
                                                                      for c in preview.plan.changes]
    s.apply(real)


def test_the_undo_preview_counts_the_media_entries_it_puts_back(tmp_path):
    from checks.change.preview import render

    root = materialize(str(tmp_path))
    s = Session(root, hostname="h")
    s.audit()
    step = s.plan("permissions", {"FS-005"})
    from checks.change.plan import TreeChmod

    changed = sum(t.changes for t in step.plan.changes if isinstance(t, TreeChmod))
    assert changed == 5
    done = s.apply(step)
    text = render(s.undo_preview(done.txn_id).plan, root)
    media = os.path.realpath(os.path.join(root, "media"))
    assert f"FS-005 undo: {media}: {changed} entries get the mode recorded before the fix back" in text


def test_a_forced_undo_overwrites_only_the_hand_edits_that_were_shown(tmp_path):
    from checks.assistant.usecases import ConflictKind
    from checks.core.errors import EngineError

    root = materialize(str(tmp_path))
    compose = os.path.join(root, "docker-compose.yml")
    s = Session(root, hostname="h")
    s.audit()
    s.choices.selected["network"] = {"NET-001"}
    done = s.apply(s.plan("network"))
    with open(compose, "a", encoding="utf-8") as fh:
        fh.write("# edit one\n")
    preview = s.undo_preview(done.txn_id)
    assert [(c.path, c.kind) for c in preview.conflicts] == [(compose, ConflictKind.EDITED)]
    with pytest.raises(EngineError, match="edited since the transaction"):
        s.undo(preview)  # not forced: a hand edit is never overwritten
    with open(compose, "a", encoding="utf-8") as fh:  # edited again while the preview is on screen
        fh.write("# edit two, never shown\n")
    edited = Path(compose).read_bytes()
    with pytest.raises(EngineError, match="changed again since the undo preview"):
        s.undo(preview, force=True)
    assert Path(compose).read_bytes() == edited
    s.undo(s.undo_preview(done.txn_id), force=True)
    assert b"# edit two" not in Path(compose).read_bytes()


def test_drift_never_counts_a_check_that_could_not_run_now_as_passing(tmp_path):
    from checks.assistant.baseline import Baseline

    root = materialize(str(tmp_path))
    report = Session(root, hostname="h").audit()
    skipped = [f.id for f in report.findings if f.status == "skipped"]
    assert skipped, "the demo has checks that need the live system"
    cid = skipped[0]
    base = Baseline(0.0, "local", 100, {f.id: f.status for f in report.findings} | {cid: "pass"}, {})
    d = drift(base, report)
    assert [i.finding.id for i in d.unchecked] == [cid]
    assert cid not in {i.finding.id for i in d.fixed + d.still + d.regressions + d.new}


def test_an_audit_started_earlier_but_finished_later_does_not_replace_the_newer_report(tmp_path, monkeypatch):
    """The welcome's first audit (no live state yet) may end after the one the live state set off."""
    import threading

    import checks.audit.run as run

    root = materialize(str(tmp_path / "demo"))
    s = Session(root, hostname="h")
    real = run.run_audit
    first_started, release = threading.Event(), threading.Event()
    calls = []

    def slow_first(inst, profile, **kw):
        calls.append(kw.get("live"))
        if len(calls) == 1:
            first_started.set()
            assert release.wait(30)
        return real(inst, profile, **kw)

    monkeypatch.setattr(run, "run_audit", slow_first)
    older = threading.Thread(target=s.audit)
    older.start()
    assert first_started.wait(30)
    newer = s.audit("internet")
    release.set()
    older.join(30)
    assert not older.is_alive()
    assert s.report is newer and s.report.profile == "internet"
    assert s.inst is newer.installation
