"""Agreement with a peer linter's own test fixtures (compose-lint, MIT).

compose-lint's test suite asserts findings on its fixtures; ../shared/peer-fixtures
maps those assertions onto our check IDs (expected.json, see SOURCES.md there).
Every firm entry becomes one test case: one (fixture, level, service, ID). IDs
listed under ``uncertain`` are skipped: whether our check should agree with them
depends on a scope decision, not on a bug.

The fixtures live in ../shared, which exists in CI and next to a developer
checkout but not in a user's clone: without it the module skips with a reason.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from checks.audit.findings import FAIL, PASS
from checks.audit.run import Report, run_audit
from checks.install.discovery import discover

from .conftest import PEER, need_shared, run_cli

EXPECTED = PEER / "expected.json"


def _load_expected() -> dict:
    if not EXPECTED.exists():
        return {}
    with open(EXPECTED, encoding="utf-8") as fh:
        return json.load(fh)


def _slug(text: str) -> str:
    return text.rstrip("/").replace("/", ":")


def _cases() -> list:
    """One case per firm assertion: (fixture key, service or None, check ID, expected status)."""
    expected = _load_expected()
    cases = []
    for key, entry in expected.items():
        unsure = set(entry.get("uncertain") or {})
        for want, ids in (("fail", entry.get("fail") or []), ("pass", entry.get("pass") or [])):
            for cid in ids:
                if cid in unsure:
                    continue
                cases.append(pytest.param(key, None, cid, want, id=f"{_slug(key)}-file-{cid}-{want}"))
        for svc, sentry in (entry.get("per_service") or {}).items():
            s_unsure = unsure | set(sentry.get("uncertain") or {})
            for want, ids in (("fail", sentry.get("fail") or []), ("pass", sentry.get("pass") or [])):
                for cid in ids:
                    if cid in s_unsure:
                        continue
                    cases.append(pytest.param(key, svc, cid, want, id=f"{_slug(key)}-svc:{svc}-{cid}-{want}"))
    if not cases:
        # Keep one case so the skip (and its reason) shows up in the report.
        cases.append(pytest.param(None, None, None, None, id="peer-fixtures-absent"))
    return cases


CASES = _cases()


def _install(key: str, dest: Path) -> tuple[Path, list[str] | None]:
    """Copy a fixture into ``dest``; return (install dir, compose files to pass or None)."""
    src = PEER / key
    install = dest / "install"
    if key.endswith("/"):
        # A project directory: discovery finds compose.yml, compose.override.yml and .env itself.
        shutil.copytree(src, install)
        return install, None
    install.mkdir()
    copied = install / src.name
    shutil.copyfile(src, copied)
    return install, [str(copied)]


class _Audits:
    """Audits each fixture once (in a private temp dir) and remembers the report."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.reports: dict[str, Report] = {}

    def __call__(self, key: str) -> Report:
        report = self.reports.get(key)
        if report is None:
            base = self.factory.mktemp("peer")
            install, files = _install(key, base)
            host_root = base / "host-root"
            host_root.mkdir()
            inst = discover(str(install), files=files, host_root=str(host_root))
            report = run_audit(inst, "local")
            self.reports[key] = report
        return report


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> _Audits:
    return _Audits(tmp_path_factory)


def _describe(finding) -> str:
    ev = "; ".join(f"[{e.service}] {e.file}:{e.line} {e.text!r} ({e.note})" for e in finding.evidence) or "no evidence"
    return f"{finding.id} is {finding.status}: {ev}" + (f"; reason: {finding.reason}" if finding.reason else "")


@pytest.mark.parametrize(("key", "service", "check_id", "want"), CASES)
def test_agrees_with_compose_lint(audits, key, service, check_id, want):
    need_shared(PEER)
    if key is None:
        pytest.skip(f"{EXPECTED} is absent")
    finding = audits(key).by_id(check_id)
    if service is None:
        if want == "fail":
            assert finding.status == FAIL, f"{key}: expected {check_id} to fail; {_describe(finding)}"
        else:
            assert finding.status == PASS, f"{key}: expected {check_id} to pass; {_describe(finding)}"
        return
    named = [e for e in finding.evidence if e.service == service]
    if want == "fail":
        assert finding.status == FAIL and named, \
            f"{key}: expected {check_id} to fail for service {service!r}; {_describe(finding)}"
    else:
        assert not named, f"{key}: expected {check_id} not to name service {service!r}; {_describe(finding)}"


def _firm(entry: dict) -> tuple[set[str], set[str]]:
    unsure = set(entry.get("uncertain") or {})
    return set(entry.get("fail") or []) - unsure, set(entry.get("pass") or []) - unsure


#: Fixtures for the CLI round trip: a single file with several services and
#: findings of several kinds, and a project directory with an .env and an override.
CLI_FIXTURES = [
    "tests/compose_files/mixed.yml",
    "scripts/demo/docker-compose.yml",
    "inline/test_overlay_merge/test_socket_mount_in_the_overlay_is_reported/",
    "inline/test_env_interpolation/test_the_issue_646_reproduction/",
]


@pytest.mark.parametrize("key", CLI_FIXTURES, ids=_slug)
def test_cli_json_agrees(key, tmp_path):
    need_shared(PEER)
    entry = _load_expected().get(key)
    if entry is None:
        pytest.skip(f"{key} is not in {EXPECTED}")
    install, files = _install(key, tmp_path)
    host_root = tmp_path / "host-root"
    host_root.mkdir()
    args = ["audit", "--dir", str(install), "--host-root", str(host_root), "--format", "json", "--fail-on", "never"]
    for f in files or []:
        args += ["--file", f]
    res = run_cli(*args)
    assert res.code == 0, res.err
    data = json.loads(res.out)
    status = {f["id"]: f for f in data["findings"]}
    fails, passes = _firm(entry)
    for cid in sorted(fails):
        assert status[cid]["status"] == "fail", f"{key}: {cid} {status[cid]}"
    for cid in sorted(passes):
        assert status[cid]["status"] == "pass", f"{key}: {cid} {status[cid]}"
    for svc, sentry in (entry.get("per_service") or {}).items():
        s_unsure = set(entry.get("uncertain") or {}) | set(sentry.get("uncertain") or {})
        for cid in set(sentry.get("fail") or []) - s_unsure:
            assert any(e.get("service") == svc for e in status[cid]["evidence"]), f"{key}: {cid} for {svc}"
        for cid in set(sentry.get("pass") or []) - s_unsure:
            assert not any(e.get("service") == svc for e in status[cid]["evidence"]), f"{key}: {cid} for {svc}"
