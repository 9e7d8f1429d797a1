"""Audits of the project's own installations, one per layout (tests/installs.py).

Runs everywhere (no ../shared needed). Each insecure install fails what its
real counterpart fails, check by check, with the evidence a person acts on
(file, line, service); each hardened counterpart fails nothing at severity
high or critical, and nothing at all except what a comment here justifies.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from checks.audit.catalog import CATALOG
from checks.audit.findings import FAIL, PASS, SKIPPED, Finding
from checks.audit.report import render_json, render_sarif, render_text
from checks.audit.run import Report, run_audit
from checks.install.discovery import discover
from checks.install.model import LAYOUT_CLI, LAYOUT_NEWER, LAYOUT_SETUP_SCRIPT

from . import installs
from .conftest import FIXED_NOW, run_cli

#: Checks that need the running system: without it they say skipped, never pass.
LIVE = {c.id for c in CATALOG if c.live}
#: Checks for the internet profile only; these audits use the local profile.
INTERNET_ONLY = {"TLS-001", "TLS-002", "TLS-003"}

F, P, S = FAIL, PASS, SKIPPED

# Expected status of every file-based check, spelled out per installation.
EXPECTED: dict[str, dict[str, str]] = {
    "cli": {
        "NET-001": F,  # postgres "5432:5432": all interfaces
        "NET-002": F,
        "NET-003": P,  # 0.0.0.0:3001 is fine on the local profile (LAN apps)
        "NET-004": P,
        "NET-005": F,  # default network only
        "SEC-001": F,  # a 10-character password
        "SEC-002": P,  # the compose file and .env agree
        "SEC-003": F,  # the CLI writes the password into the compose file
        "SEC-004": P,
        "SEC-005": P,  # no Redis
        "SEC-006": P,
        "SEC-007": P,
        "FS-001": F,   # .env 0644
        "FS-002": F,   # 0644 while it holds the password
        "FS-003": P,
        "FS-004": P,   # the CLI mounts media :ro
        "FS-005": F,   # chmod -R 755 from the docs: every video executable
        "FS-006": P,
        "FS-007": S,   # no SQLite database: PostgreSQL has a password instead
        "DKR-001": P,
        "DKR-002": P,
        "DKR-003": F,
        "DKR-004": F,  # desterlib/api:latest
        "DKR-006": P,
        "DKR-007": P,
        "DKR-008": F,
        "OPS-001": F,  # no backup at all
    },
    "setup-script": {
        "NET-001": F,
        "NET-002": F,
        "NET-003": P,
        "NET-004": P,
        "NET-005": F,
        "SEC-001": F,  # postgres/postgres
        "SEC-002": P,
        "SEC-003": F,
        "SEC-004": P,
        "SEC-005": P,
        "SEC-006": P,
        "SEC-007": P,
        "FS-001": F,   # apps/api/.env 0644
        "FS-002": F,
        "FS-003": P,
        "FS-004": P,
        "FS-005": S,   # the media path given to the script does not exist here
        "FS-006": P,
        "FS-007": S,   # no SQLite database: PostgreSQL has a password instead
        "DKR-001": P,
        "DKR-002": P,
        "DKR-003": F,
        "DKR-004": P,  # postgres:15-alpine is pinned; the API is built, not pulled
        "DKR-006": P,
        "DKR-007": P,
        "DKR-008": F,
        "OPS-001": F,
    },
    "newer": {
        "NET-001": F,  # redis "6379:6379"
        "NET-002": F,
        "NET-003": P,
        "NET-004": P,
        "NET-005": F,
        "SEC-001": S,  # SQLite: no database password
        "SEC-002": S,
        "SEC-003": P,  # no secret in the compose file
        "SEC-004": P,
        "SEC-005": F,  # Redis without requirepass on 0.0.0.0:6379
        "SEC-006": P,
        "SEC-007": P,
        "FS-001": F,   # root .env 0644 (cp .env.example .env)
        "FS-002": P,   # 0644 and no secrets in it
        "FS-003": P,
        "FS-004": P,
        "FS-005": P,   # a tidy library: 0755 directories, 0644 files
        "FS-006": P,
        "FS-007": F,   # desterlib-data/db 0755 and main.db 0644: the whole library for any local user
        "DKR-001": P,
        "DKR-002": P,
        "DKR-003": F,
        "DKR-004": P,  # redis:7-alpine; the API and the scanner are built
        "DKR-006": P,
        "DKR-007": P,
        "DKR-008": F,
        "OPS-001": F,
    },
}
_HARDENED = {cid: P for cid in EXPECTED["cli"]}
EXPECTED["cli-hardened"] = dict(_HARDENED, **{
    # The fix for NET-001 binds PostgreSQL to 127.0.0.1, which the catalog
    # accepts; removing the publish (NET-002, low) is offered, not the default,
    # because pg_dump and database clients on the host use it.
    "NET-002": F,
    "FS-007": S,  # PostgreSQL
})
EXPECTED["setup-script-hardened"] = dict(_HARDENED, **{"FS-007": S})
EXPECTED["newer-hardened"] = dict(_HARDENED, **{"SEC-001": S, "SEC-002": S, "FS-007": P})  # SQLite

BUILDERS = {
    "cli": (installs.cli_install, False),
    "setup-script": (installs.setup_script_install, False),
    "newer": (installs.newer_install, False),
    "cli-hardened": (installs.cli_install, True),
    "setup-script-hardened": (installs.setup_script_install, True),
    "newer-hardened": (installs.newer_install, True),
}
LAYOUTS = {"cli": LAYOUT_CLI, "setup-script": LAYOUT_SETUP_SCRIPT, "newer": LAYOUT_NEWER}


def test_expectations_cover_the_whole_catalog():
    ids = {c.id for c in CATALOG}
    for name, table in EXPECTED.items():
        assert set(table) | LIVE | INTERNET_ONLY == ids, name
        assert not set(table) & (LIVE | INTERNET_ONLY), name


class Audited:
    def __init__(self, root: Path, report: Report) -> None:
        self.root = root
        self.report = report
        self.inst = report.installation

    def f(self, check_id: str) -> Finding:
        return self.report.by_id(check_id)

    def lines(self, rel: str) -> str:
        return (self.root / rel).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> dict[str, Audited]:
    """Every fixture built and audited once (local profile, an empty host root)."""
    tmp = tmp_path_factory.mktemp("layouts")
    host = tmp / "host-root"
    host.mkdir()
    out = {}
    for name, (build, hardened) in BUILDERS.items():
        root = build(tmp, hardened=hardened)
        inst = discover(str(root), host_root=str(host), now=FIXED_NOW)
        out[name] = Audited(root, run_audit(inst, "local"))
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_layout_is_detected(audited, name):
    assert audited[name].inst.layout == LAYOUTS[name.removesuffix("-hardened")]


@pytest.mark.parametrize("name,check_id,status", [
    pytest.param(name, cid, st, id=f"{name}-{cid}") for name, table in EXPECTED.items() for cid, st in table.items()
])
def test_status(audited, name, check_id, status):
    f = audited[name].f(check_id)
    assert f.status == status, (f.status, f.reason, [(e.file, e.line, e.note) for e in f.evidence])


@pytest.mark.parametrize("name", list(BUILDERS))
def test_live_and_internet_checks_are_skipped_with_a_reason(audited, name):
    for cid in sorted(LIVE | INTERNET_ONLY):
        f = audited[name].f(cid)
        assert f.status == SKIPPED and f.reason, cid
        if cid in INTERNET_ONLY:
            assert "internet profile" in f.reason


def _ev(f: Finding) -> list[tuple]:
    return [(e.file, e.line, e.service) for e in f.evidence]


# -- the CLI install ---------------------------------------------------------------

def test_cli_files(audited):
    a = audited["cli"]
    assert [s.display for s in a.inst.compose_files] == ["docker-compose.yml"]
    assert [e.display for e in a.inst.env_files] == [".env"]
    assert [s.name for s in a.inst.services] == ["postgres", "api"]


def test_cli_net_001_postgres_on_all_interfaces(audited):
    a = audited["cli"]
    compose = a.lines("docker-compose.yml")
    f = a.f("NET-001")
    assert f.severity == "critical"
    assert _ev(f) == [("docker-compose.yml", installs.line_no(compose, '- "5432:5432"'), "postgres")]
    assert f.evidence[0].note == "port 5432 -> 5432 on all interfaces"


def test_cli_sec_001_short_password_everywhere_it_is_set(audited):
    a = audited["cli"]
    compose = a.lines("docker-compose.yml")
    f = a.f("SEC-001")
    assert _ev(f) == [
        ("docker-compose.yml", installs.line_no(compose, "POSTGRES_PASSWORD:"), "postgres"),
        ("docker-compose.yml", installs.line_no(compose, "DATABASE_URL:"), "api"),
        (".env", installs.line_no(a.lines(".env"), "DATABASE_URL="), None),
    ]
    for e in f.evidence:
        assert e.note == "10 characters, fewer than 32"  # not a known default: only too short
        assert "••••" in e.text


def test_cli_sec_003_password_in_the_compose_file(audited):
    a = audited["cli"]
    compose = a.lines("docker-compose.yml")
    f = a.f("SEC-003")
    assert _ev(f) == [
        ("docker-compose.yml", installs.line_no(compose, "POSTGRES_PASSWORD:"), "postgres"),
        ("docker-compose.yml", installs.line_no(compose, "DATABASE_URL:"), "api"),
    ]
    assert [e.note for e in f.evidence] == ["POSTGRES_PASSWORD is set to a literal value",
                                           "a connection URL with a literal password"]


def test_cli_file_modes(audited):
    a = audited["cli"]
    fs1 = a.f("FS-001")
    assert [(e.file, e.line) for e in fs1.evidence] == [(".env", None)]
    assert fs1.evidence[0].text.startswith("mode 0644")
    assert fs1.evidence[0].note == "readable or writable by group and others; should be 0600"
    fs2 = a.f("FS-002")
    assert [(e.file, e.line) for e in fs2.evidence] == [("docker-compose.yml", None)]
    assert "holds secrets" in fs2.evidence[0].note


def test_cli_media_executable_files(audited):
    f = audited["cli"].f("FS-005")
    assert "3 files executable" in f.evidence[0].text
    assert "writable" not in f.evidence[0].text  # 0755 directories are right
    assert sorted(e.text for e in f.evidence[1:]) == ["mode 0755"] * 3


def test_cli_image_latest(audited):
    a = audited["cli"]
    f = a.f("DKR-004")
    assert _ev(f) == [
        ("docker-compose.yml", installs.line_no(a.lines("docker-compose.yml"), "image: desterlib/api"), "api")]
    assert f.evidence[0].note == "tag latest"


def test_cli_services_without_hardening_options(audited):
    a = audited["cli"]
    for cid in ("NET-005", "DKR-003", "DKR-008"):
        assert audited["cli"].f(cid).services == {"postgres", "api"}, cid
    assert a.f("OPS-001").reason == "no dump files, no backup service and no cron entry with pg_dump"


# -- the setup-script install ---------------------------------------------------------

def test_setup_script_files(audited):
    a = audited["setup-script"]
    assert [e.display for e in a.inst.env_files] == ["apps/api/.env"]
    assert a.inst.env_files[0].roles == ["env_file"]
    assert a.inst.notes == []


def test_setup_script_sec_001_default_password_never_shown(audited):
    a = audited["setup-script"]
    compose = a.lines("docker-compose.yml")
    pw_lines = [i for i, line in enumerate(compose.splitlines(), 1) if "POSTGRES_PASSWORD:" in line]
    f = a.f("SEC-001")
    assert f.severity == "critical"
    assert _ev(f) == [
        ("docker-compose.yml", pw_lines[0], "postgres"),
        ("docker-compose.yml", pw_lines[1], "api"),
        ("docker-compose.yml", installs.line_no(compose, "DATABASE_URL:"), "api"),
    ]
    for e in f.evidence:
        assert "a well-known default password" in e.note
        assert "the same as the database user name" in e.note
        assert "8 characters, fewer than 32" in e.note
        # "postgres" is also the user, the host and the image, so look at the password positions.
        assert "POSTGRES_PASSWORD: postgres" not in e.text
        assert "postgres:postgres@" not in e.text
        assert "••••" in e.text


def test_setup_script_sec_003_and_fs_001(audited):
    a = audited["setup-script"]
    f = a.f("SEC-003")
    assert len(f.evidence) == 3 and f.services == {"postgres", "api"}
    fs1 = a.f("FS-001")
    assert [(e.file, e.line) for e in fs1.evidence] == [("apps/api/.env", None)]
    assert fs1.evidence[0].text.startswith("mode 0644")


def test_setup_script_media_missing_is_skipped_not_passed(audited):
    a = audited["setup-script"]
    assert a.f("FS-004").status == PASS  # :ro is in the file whether or not the path exists
    f = a.f("FS-005")
    assert f.reason.startswith("media directory not found on this host")
    assert f.reason.endswith("srv-media")


# -- the newer layout --------------------------------------------------------------------

def test_newer_files(audited):
    a = audited["newer"]
    assert [s.display for s in a.inst.compose_files] == ["docker/docker-compose.yml"]
    # The root .env is the project .env (interpolation) and every service's env_file.
    assert [(e.display, sorted(e.roles)) for e in a.inst.env_files] == [(".env", ["env_file", "project", "root"])]
    assert [s.name for s in a.inst.services] == ["redis", "api", "scanner-service"]


def test_newer_redis_published_without_password(audited):
    a = audited["newer"]
    line = installs.line_no(a.lines("docker/docker-compose.yml"), '- "6379:6379"')
    net = a.f("NET-001")
    assert _ev(net) == [("docker/docker-compose.yml", line, "redis")]
    sec = a.f("SEC-005")
    assert sec.severity == "high"
    assert _ev(sec) == [("docker/docker-compose.yml", line, "redis")]
    assert sec.evidence[0].note == "no requirepass; published on 0.0.0.0:6379"


def test_newer_sqlite_has_no_database_password(audited):
    a = audited["newer"]
    # .env (from .env.example) still names postgres:postgres@localhost, but the
    # compose file sets DATABASE_URL=file:... for every service that reads it.
    assert a.f("SEC-001").reason == "this installation uses SQLite: there is no database password"
    fs1 = a.f("FS-001")
    assert [(e.file, e.line) for e in fs1.evidence] == [(".env", None)]
    assert a.f("NET-005").services == {"redis", "api", "scanner-service"}


# -- hardened counterparts -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["cli-hardened", "setup-script-hardened", "newer-hardened"])
def test_hardened_fails_nothing_high(audited, name):
    report = audited[name].report
    assert report.failed("high") == []
    assert report.failed("medium") == []
    allowed = {"NET-002"} if name == "cli-hardened" else set()
    assert {f.id for f in report.failed()} == allowed
    assert report.score == (97 if allowed else 100)


def test_hardened_cli_loopback_postgres(audited):
    a = audited["cli-hardened"]
    f = a.f("NET-002")
    assert _ev(f) == [
        ("docker-compose.yml", installs.line_no(a.lines("docker-compose.yml"), "127.0.0.1:5432:5432"), "postgres")]
    assert f.evidence[0].note == "container port 5432 published on 127.0.0.1"


@pytest.mark.parametrize("name,dump", [("cli-hardened", "backups/desterlib-20260920.sql"),
                                       ("setup-script-hardened", "backups/desterlib_prod-20260920.sql.gz"),
                                       ("newer-hardened", "backups/main-20260920.db.bak")])
def test_hardened_backup_is_found(audited, name, dump):
    f = audited[name].f("OPS-001")
    assert [(e.file, e.note) for e in f.evidence] == [(dump, "newest dump is 1.0 days old")]


@pytest.mark.parametrize("name", list(BUILDERS))
def test_no_secret_in_any_rendering(audited, name):
    report = audited[name].report
    for text in (render_text(report), render_json(report), render_sarif(report)):
        leaked = [i for i, s in enumerate(installs.SECRETS) if s in text]
        assert not leaked, f"installs.SECRETS[{leaked}] appears in the output"


# -- through the command line ---------------------------------------------------------------

@pytest.mark.parametrize("build", [installs.cli_install, installs.setup_script_install, installs.newer_install])
@pytest.mark.parametrize("hardened", [False, True], ids=["insecure", "hardened"])
def test_cli_exit_code_and_json(tmp_path, build, hardened):
    host = tmp_path / "host-root"
    host.mkdir()
    # The CLI's clock is the real one: date the backup from it (a day old).
    root = build(tmp_path, hardened=hardened, now=time.time())
    res = run_cli("audit", "--dir", str(root), "--format", "json", "--host-root", str(host))
    assert res.code == (0 if hardened else 1), res.err
    doc = json.loads(res.out)
    layout = {installs.cli_install: LAYOUT_CLI, installs.setup_script_install: LAYOUT_SETUP_SCRIPT,
              installs.newer_install: LAYOUT_NEWER}[build]
    assert doc["install"]["layout"] == layout
    name = {installs.cli_install: "cli", installs.setup_script_install: "setup-script",
            installs.newer_install: "newer"}[build] + ("-hardened" if hardened else "")
    # The same findings as the in-process audit of the same fixture.
    failed = {f["id"] for f in doc["findings"] if f["status"] == "fail"}
    assert failed == {cid for cid, st in EXPECTED[name].items() if st == FAIL}
    for out in (res.out, res.err):
        leaked = [i for i, s in enumerate(installs.SECRETS) if s in out]
        assert not leaked, f"installs.SECRETS[{leaked}] appears in the output"


# -- found on the real files (history/8d3b5ba, a9f5148 + prod), kept here on our own text ----

DEFAULTS_COMPOSE = """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: dester
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-dester_password}
  redis:
    image: redis:7-alpine
    command: redis-server --requirepass ${REDIS_PASSWORD:-redis_password}
  api:
    image: desterlib/api:0.2.0
    environment:
      DATABASE_URL: postgresql://dester:${POSTGRES_PASSWORD:-dester_password}@postgres:5432/dester
      REDIS_URL: redis://:${REDIS_PASSWORD:-redis_password}@redis:6379
      TMDB_API_KEY: ${TMDB_API_KEY:-}
"""


def _audit_dir(root: Path, host: Path) -> Report:
    return run_audit(discover(str(root), host_root=str(host), now=FIXED_NOW), "local")


def test_written_defaults_in_use_are_literal_secrets(tmp_path):
    """With no .env, each ${VAR:-default} secret in use is the default written in the file."""
    root = tmp_path / "install"
    root.mkdir()
    (root / "docker-compose.yml").write_text(DEFAULTS_COMPOSE)
    report = _audit_dir(root, tmp_path)
    f = report.by_id("SEC-003")
    assert [(e.line, e.service) for e in f.evidence] == [
        (installs.line_no(DEFAULTS_COMPOSE, "POSTGRES_PASSWORD: $"), "postgres"),
        (installs.line_no(DEFAULTS_COMPOSE, "--requirepass"), "redis"),
        (installs.line_no(DEFAULTS_COMPOSE, "DATABASE_URL:"), "api"),
        (installs.line_no(DEFAULTS_COMPOSE, "REDIS_URL:"), "api"),
        # not TMDB_API_KEY: ${TMDB_API_KEY:-} falls back to nothing written in the file
    ]
    assert f.evidence[1].note == "Redis password falls back to a default written in the command"
    assert f.evidence[2].note == "a connection URL whose password falls back to a default written in the file"
    assert report.by_id("SEC-005").status == PASS  # Redis has a password, if a published one
    note = report.by_id("SEC-001").evidence[0].note
    assert note is not None and "a well-known default password" in note
    text = render_text(report) + render_json(report)
    assert "dester_password" not in text and "redis_password" not in text


def test_supplied_values_beat_written_defaults(tmp_path):
    root = tmp_path / "install"
    root.mkdir()
    (root / "docker-compose.yml").write_text(DEFAULTS_COMPOSE)
    env = root / ".env"
    env.write_text(f"POSTGRES_PASSWORD={installs.HARDENED_DB_PASSWORD}\nREDIS_PASSWORD={installs.HARDENED_REDIS_PASSWORD}\n")
    env.chmod(0o600)
    report = _audit_dir(root, tmp_path)
    assert report.by_id("SEC-003").status == PASS
    assert report.by_id("SEC-001").status == PASS


def test_overridden_literal_password_is_still_in_its_file(tmp_path):
    """An override that replaces DATABASE_URL leaves the base file's literal password where it was."""
    root = installs.cli_install(tmp_path)
    override = root / "docker-compose.override.yml"
    override.write_text("services:\n  api:\n    environment:\n      DATABASE_URL: ${DATABASE_URL}\n")
    override.chmod(0o644)
    report = _audit_dir(root, tmp_path)
    inst = report.installation
    assert [s.display for s in inst.compose_files] == ["docker-compose.yml", "docker-compose.override.yml"]
    api = inst.service("api")
    assert api is not None
    assert api.environment["DATABASE_URL"].where.file == "docker-compose.override.yml"

    compose = (root / "docker-compose.yml").read_text()
    assert [(e.file, e.line, e.service) for e in report.by_id("SEC-003").evidence] == [
        ("docker-compose.yml", installs.line_no(compose, "POSTGRES_PASSWORD:"), "postgres"),
        ("docker-compose.yml", installs.line_no(compose, "DATABASE_URL:"), "api"),
    ]
