"""Audits of DesterLib's real configuration files (../shared/real-desterlib).

Each test copies real files into a temporary install laid out the way a user
gets it (the CLI's ``~/.desterlib``, the setup script's repository clone with
``apps/api/.env``, the newer ``docker/docker-compose.yml`` + root ``.env``),
chmods them like the installers (0644: git checkouts and the CLI's writes use
the default umask) and audits it. The expectations are written per install
from reading the files and CHECKS.md, with the line numbers of the real files.

Without ../shared (a user's clone) every test skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from checks.audit.catalog import CATALOG
from checks.audit.findings import FAIL, PASS, SKIPPED
from checks.audit.report import render_json, render_sarif, render_text
from checks.audit.run import Report, run_audit
from checks.install.discovery import discover
from checks.install.model import LAYOUT_CLI, LAYOUT_CUSTOM, LAYOUT_NEWER, LAYOUT_SETUP_SCRIPT

from . import installs
from .conftest import FIXED_NOW, REAL, need_shared, run_cli

F, P, S = FAIL, PASS, SKIPPED
LIVE = {c.id for c in CATALOG if c.live}
TLS = {"TLS-001", "TLS-002", "TLS-003"}

CLI_RENDERED = "rendered-examples/cli-main@4dd80d2/home/USER/.desterlib"
SETUP_RENDERED = "rendered-examples/setup-script-main@30206f0/home/USER/.desterlib"
DC = "docker-compose.yml"
NDC = "docker/docker-compose.yml"
API_ENV = "apps/api/.env"

#: Passwords and secret values as written in the real files (published in the
#: repository, but live passwords of every install that kept them): no output
#: may show one. "postgres" is also the user, the image and the host, so it is
#: checked at password positions instead.
REAL_SECRETS = ("ExamplePass123", "dester_password", "redis_password", "dester_dev", "redis_dev",
                "change-this-in-production-min", "change-this-refresh-secret", "your_jwt_secret_here",
                "your_tmdb_api_key_here", "your-tmdb-api-key-here")
#: Our own values for the variables history/8d3b5ba reads from .env.
OWN_JWT_SECRET = "Wd5Nq8Xz2Lc7Vb4Hm9Kp3Rt6Yg1Fs0Je8Ua2Qo5Ti7Ex"
OWN_REFRESH_SECRET = "Zr4Mk9Pb2Wx7Ln3Qc8Vt5Hy1Dg6Js0Fa9Ue3Ko7Ri2Tw"


@pytest.fixture(autouse=True)
def _shared():
    need_shared(REAL)


# -- building installs from the real files -------------------------------------------------

def _dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o755)
    return path


def _copy(rel: str, dst: Path, mode: int = 0o644) -> None:
    _dir(dst.parent)
    shutil.copyfile(REAL / rel, dst)
    os.chmod(dst, mode)


def _write(dst: Path, text: str, mode: int) -> None:
    _dir(dst.parent)
    dst.write_text(text, encoding="utf-8")
    os.chmod(dst, mode)


def _root(tmp: Path) -> Path:
    return _dir(tmp / "home" / "user" / ".desterlib")


def _clone(tmp: Path, compose: str, api_env: str | None = None) -> Path:
    """A repository clone with the compose file at its root (the setup-script layout)."""
    root = _root(tmp)
    _dir(root / "apps" / "api")
    _copy(compose, root / DC)
    if api_env:
        _copy(api_env, root / API_ENV)
    return root


def _newer(tmp: Path, compose: str, env_example: str) -> Path:
    """A clone with docker/docker-compose.yml after ``cp .env.example .env``."""
    root = _root(tmp)
    _dir(root / "docker")
    _dir(root / "apps" / "api")
    _copy(compose, root / NDC)
    _copy(env_example, root / ".env.example")
    _copy(env_example, root / ".env")
    return root


@dataclass
class Case:
    build: Callable[[Path], Path]
    layout: str
    status: dict[str, str]
    """Every file-based check's status (live and TLS checks are always skipped here)."""
    evidence: dict[str, list[tuple]] = field(default_factory=dict)
    """check -> [(file, line, service)] of its evidence, in order."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """check -> phrases every evidence note must contain."""
    files: list[str] | None = None
    """Compose files given with -f (relative to the install), else discovered."""


# The installers' PostgreSQL stack as it ships: postgres/postgres (or a short
# CLI password) written in the compose file and published on 0.0.0.0:5432, no
# network, no no-new-privileges, no log rotation, no backup.
POSTGRES_STACK = {
    "NET-001": F, "NET-002": F, "NET-003": P, "NET-004": P, "NET-005": F,
    "SEC-001": F, "SEC-002": P, "SEC-003": F, "SEC-004": P, "SEC-005": P, "SEC-006": P, "SEC-007": P,
    "FS-001": F, "FS-002": F, "FS-003": P, "FS-004": P, "FS-005": S, "FS-006": P,
    "FS-007": S,  # PostgreSQL: no SQLite file
    "DKR-001": P, "DKR-002": P, "DKR-003": F, "DKR-004": P, "DKR-006": P, "DKR-007": P, "DKR-008": F,
    "OPS-001": F,
}
# FS-005 is skipped throughout: the media paths in the real files
# (/home/USER/Media, /srv/media, /Volumes/External/Library/Media, ./media) do
# not exist on a test machine, and a missing library is "skipped", never "pass".

WEAK_DEFAULT = ["a well-known default password", "the same as the database user name", "8 characters, fewer than 32"]

CASES: dict[str, Case] = {}


def case(name: str, **kw):
    def register(build):
        CASES[name] = Case(build=build, **kw)
        return build
    return register


@case("rendered-cli", layout=LAYOUT_CLI,
      status=dict(POSTGRES_STACK, **{"DKR-004": F}),  # desterlib/api:latest
      evidence={
          "NET-001": [(DC, 14, "postgres")],
          "SEC-001": [(DC, 11, "postgres"), (DC, 32, "api"), (".env", 5, None)],
          "SEC-003": [(DC, 11, "postgres"), (DC, 32, "api")],
          "FS-001": [(".env", None, None)],
          "FS-002": [(DC, None, None)],
          "DKR-004": [(DC, 24, "api")],
      },
      # ExamplePass123: not a published default, only short.
      notes={"SEC-001": ["14 characters, fewer than 32"], "FS-002": ["holds secrets"]})
def _rendered_cli(tmp: Path) -> Path:
    root = _root(tmp)
    for name in (DC, ".env", "README.md"):
        _copy(f"{CLI_RENDERED}/{name}", root / name)
    return root


SETUP_EVIDENCE = {
    "NET-001": [(DC, 11, "postgres")],
    "SEC-001": [(DC, 8, "postgres"), (DC, 36, "api"), (DC, 39, "api")],
    "SEC-003": [(DC, 8, "postgres"), (DC, 36, "api"), (DC, 39, "api")],
    "FS-001": [(API_ENV, None, None)],
    "FS-002": [(DC, None, None)],
}


@case("rendered-setup-script", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK),
      evidence=SETUP_EVIDENCE, notes={"SEC-001": WEAK_DEFAULT})
def _rendered_setup(tmp: Path) -> Path:
    root = _root(tmp)
    _copy(f"{SETUP_RENDERED}/{DC}", root / DC)
    _copy(f"{SETUP_RENDERED}/{API_ENV}", root / API_ENV)
    return root


# apps/api/.env made from .env.example: its DATABASE_URL (localhost:5433) is
# overridden by the compose file's environment, so only the compose file's
# three places count for SEC-001.
@case("main-HEAD", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK),
      evidence=SETUP_EVIDENCE, notes={"SEC-001": WEAK_DEFAULT})
def _main_head(tmp: Path) -> Path:
    root = _clone(tmp, f"main-HEAD/{DC}", "main-HEAD/apps/api/.env.example")
    _copy("main-HEAD/apps/api/.env.example", root / "apps/api/.env.example")
    _copy("main-HEAD/docker-compose.test.yml", root / "docker-compose.test.yml")  # not read: not an override
    return root


# The test database compose file, run with -f: "5433:5432" still publishes
# container port 5432 on all interfaces. No API service, no media mount.
@case("main-HEAD-test-compose", layout=LAYOUT_CUSTOM, files=["docker-compose.test.yml"],
      status=dict(POSTGRES_STACK, **{"NET-003": S, "FS-001": P, "FS-004": S}),
      evidence={"NET-001": [("docker-compose.test.yml", 11, "postgres")],
                "SEC-001": [("docker-compose.test.yml", 8, "postgres")],
                "SEC-003": [("docker-compose.test.yml", 8, "postgres")]},
      notes={"NET-001": ["port 5433 -> 5432 on all interfaces"], "SEC-001": WEAK_DEFAULT})
def _main_test_compose(tmp: Path) -> Path:
    root = _root(tmp)
    _copy("main-HEAD/docker-compose.test.yml", root / "docker-compose.test.yml")
    return root


# Newer layout: SQLite, Redis published on 0.0.0.0:6379 without a password.
NEWER_SQLITE = dict(POSTGRES_STACK, **{
    "SEC-001": S, "SEC-002": S,   # SQLite: no database password
    "SEC-003": P, "FS-002": P,    # no secret in the compose file
    "SEC-005": F,
    "FS-007": S,  # desterlib-data/db is created by the first start, not by the clone
})


@case("dev-HEAD", layout=LAYOUT_NEWER, status=NEWER_SQLITE,
      evidence={"NET-001": [(NDC, 7, "redis")], "SEC-005": [(NDC, 7, "redis")], "FS-001": [(".env", None, None)]},
      notes={"SEC-005": ["no requirepass; published on 0.0.0.0:6379"]})
def _dev_head(tmp: Path) -> Path:
    return _newer(tmp, f"dev-HEAD/{NDC}", "dev-HEAD/.env.example")


# history/8d3b5ba, no .env: every ${VAR:-default} falls back to the default
# written in the file. SEC-001: dester_password is a published default.
# SEC-003: each default secret in use is written in the compose file
# (POSTGRES_PASSWORD, the requirepass argument, both URLs, both JWT secrets);
# ${TMDB_API_KEY:-} falls back to nothing. SEC-005: Redis does require a
# password (a weak one, but SEC-005 asks only whether there is one). SEC-007:
# the change-this-in-production JWT secrets.
@case("8d3b5ba", layout=LAYOUT_SETUP_SCRIPT,
      status=dict(POSTGRES_STACK, **{"FS-001": P, "SEC-007": F}),  # no env file at all
      evidence={
          "NET-001": [(DC, 32, "postgres"), (DC, 48, "redis")],
          "SEC-001": [(DC, 30, "postgres"), (DC, 69, "api")],
          "SEC-003": [(DC, 30, "postgres"), (DC, 46, "redis"), (DC, 69, "api"), (DC, 75, "api"),
                      (DC, 79, "api"), (DC, 81, "api")],
          "SEC-007": [(DC, 79, "api"), (DC, 81, "api")],
          "FS-002": [(DC, None, None)],
      },
      notes={"SEC-001": ["a well-known default password", "15 characters, fewer than 32"],
             "SEC-003": ["default written in the"], "SEC-007": ["is a published default"]})
def _h8d3b5ba(tmp: Path) -> Path:
    return _clone(tmp, f"history/8d3b5ba/{DC}")


# The same file with a .env (0600) that sets every variable: the written
# defaults are not used any more, so SEC-001/003/007 and FS-002 pass.
@case("8d3b5ba-with-env", layout=LAYOUT_SETUP_SCRIPT,
      status=dict(POSTGRES_STACK, **{"SEC-001": P, "SEC-003": P, "FS-001": P, "FS-002": P}),
      evidence={"NET-001": [(DC, 32, "postgres"), (DC, 48, "redis")]})
def _h8d3b5ba_env(tmp: Path) -> Path:
    root = _clone(tmp, f"history/8d3b5ba/{DC}")
    _write(root / ".env", (f"POSTGRES_PASSWORD={installs.HARDENED_DB_PASSWORD}\n"
                           f"REDIS_PASSWORD={installs.HARDENED_REDIS_PASSWORD}\n"
                           f"JWT_SECRET={OWN_JWT_SECRET}\nREFRESH_TOKEN_SECRET={OWN_REFRESH_SECRET}\n"), 0o600)
    return root


# The development compose file of the same commit, run with -f.
@case("8d3b5ba-dev", layout=LAYOUT_CUSTOM, files=["docker-compose.dev.yml"],
      status=dict(POSTGRES_STACK, **{"NET-003": S, "FS-001": P, "FS-004": S}),
      evidence={
          "NET-001": [("docker-compose.dev.yml", 13, "postgres"), ("docker-compose.dev.yml", 24, "redis")],
          "SEC-001": [("docker-compose.dev.yml", 11, "postgres")],
          "SEC-003": [("docker-compose.dev.yml", 11, "postgres"), ("docker-compose.dev.yml", 22, "redis")],
      },
      notes={"SEC-001": ["a well-known default password", "the same as the database name"]})
def _h8d3b5ba_dev(tmp: Path) -> Path:
    root = _root(tmp)
    _copy("history/8d3b5ba/docker-compose.dev.yml", root / "docker-compose.dev.yml")
    return root


# cb04b72 and a9f5148: development stacks (source bind-mounted, no media, no env file).
DEV_STACK = dict(POSTGRES_STACK, **{"FS-001": P, "FS-004": S})
DEV_EVIDENCE = {"NET-001": [(DC, 13, "postgres")], "SEC-001": [(DC, 10, "postgres"), (DC, 33, "api")],
                "SEC-003": [(DC, 10, "postgres"), (DC, 33, "api")]}


@case("cb04b72", layout=LAYOUT_SETUP_SCRIPT, status=DEV_STACK, evidence=DEV_EVIDENCE,
      notes={"SEC-001": WEAK_DEFAULT})
def _hcb04b72(tmp: Path) -> Path:
    return _clone(tmp, f"history/cb04b72/{DC}")


@case("a9f5148", layout=LAYOUT_SETUP_SCRIPT, status=DEV_STACK, evidence=DEV_EVIDENCE,
      notes={"SEC-001": WEAK_DEFAULT})
def _ha9f5148(tmp: Path) -> Path:
    return _clone(tmp, f"history/a9f5148/{DC}")


# a9f5148 for production: COMPOSE_FILE in .env adds docker-compose.prod.yml.
# Its DATABASE_URL replaces the base file's, which still holds the password as
# written (SEC-003 line 33); ports concatenate, so both files publish 5432.
PROD = "docker-compose.prod.yml"


@case("a9f5148-prod", layout=LAYOUT_SETUP_SCRIPT,
      status=dict(POSTGRES_STACK, **{"FS-004": S}),  # FS-001: the .env is 0644
      evidence={
          "NET-001": [(DC, 13, "postgres"), (PROD, 8, "postgres")],
          "SEC-001": [(DC, 10, "postgres"), (PROD, 13, "api")],
          "SEC-003": [(DC, 10, "postgres"), (DC, 33, "api"), (PROD, 13, "api")],
          "FS-001": [(".env", None, None)],
          "FS-002": [(DC, None, None), (PROD, None, None)],
      },
      notes={"SEC-001": WEAK_DEFAULT})
def _ha9f5148_prod(tmp: Path) -> Path:
    root = _clone(tmp, f"history/a9f5148/{DC}")
    _copy(f"history/a9f5148/{PROD}", root / PROD)
    _write(root / ".env", f"COMPOSE_FILE={DC}:{PROD}\n", 0o644)
    return root


# 8fe0e8f: setup-script layout with apps/api/.env from the same commit's
# example (TMDB_API_KEY="your_tmdb_api_key_here": a placeholder published in
# the repository, in use as the API's key: SEC-007). `volumes: []`: no media.
@case("8fe0e8f", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK, **{"FS-004": S, "SEC-007": F}),
      evidence={"NET-001": [(DC, 13, "postgres")],
                "SEC-001": [(DC, 10, "postgres"), (DC, 38, "api"), (DC, 41, "api")],
                "SEC-003": [(DC, 10, "postgres"), (DC, 38, "api"), (DC, 41, "api")],
                "SEC-007": [(API_ENV, 5, "api")],
                "FS-001": [(API_ENV, None, None)]},
      notes={"SEC-001": WEAK_DEFAULT, "SEC-007": ["TMDB_API_KEY is a published default"]})
def _h8fe0e8f(tmp: Path) -> Path:
    return _clone(tmp, f"history/8fe0e8f/{DC}", "history/8fe0e8f/apps/api/.env.example")


# ba3527c: apps/api/.env.example at that commit is 8fe0e8f's version (the next
# one arrived in ea92c17); the root .env.example of the commit sits in the
# clone unread.
@case("ba3527c", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK, **{"SEC-007": F}),
      evidence=dict(SETUP_EVIDENCE, **{"SEC-007": [(API_ENV, 5, "api")]}),
      notes={"SEC-001": WEAK_DEFAULT})
def _hba3527c(tmp: Path) -> Path:
    root = _clone(tmp, f"history/ba3527c/{DC}", "history/8fe0e8f/apps/api/.env.example")
    _copy("history/ba3527c/.env.example", root / ".env.example")
    return root


@case("7d139cf", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK),
      evidence={"NET-001": [(DC, 11, "postgres")],
                "SEC-001": [(DC, 8, "postgres"), (DC, 39, "api"), (DC, 42, "api")],
                "SEC-003": [(DC, 8, "postgres"), (DC, 39, "api"), (DC, 42, "api")],
                "FS-001": [(API_ENV, None, None)]},
      notes={"SEC-001": WEAK_DEFAULT})
def _h7d139cf(tmp: Path) -> Path:
    return _clone(tmp, f"history/7d139cf/{DC}", "main-HEAD/apps/api/.env.example")


# The dev branch's first docker/ layout: PostgreSQL and Redis both published,
# postgres/postgres written for every service.
NEWER_POSTGRES = dict(POSTGRES_STACK, **{"SEC-005": F})


def _newer_pg_evidence(db_lines: list[tuple]) -> dict:
    return {"NET-001": [(NDC, 11, "postgres"), (NDC, 25, "redis")],
            "SEC-001": [(NDC, line, svc) for line, svc in db_lines],
            "SEC-003": [(NDC, line, svc) for line, svc in db_lines],
            "SEC-005": [(NDC, 25, "redis")],
            "FS-001": [(".env", None, None)],
            "FS-002": [(NDC, None, None)]}


FIVE_SERVICES = [(8, "postgres"), (51, "api"), (53, "api"), (91, "scanner-service"), (125, "metadata-service")]


@case("416d9fb", layout=LAYOUT_NEWER, status=NEWER_POSTGRES, evidence=_newer_pg_evidence(FIVE_SERVICES),
      notes={"SEC-001": WEAK_DEFAULT})
def _h416d9fb(tmp: Path) -> Path:
    return _newer(tmp, f"history/416d9fb/{NDC}", "history/75fad60/.env.example")


@case("c0ef05f", layout=LAYOUT_NEWER, status=NEWER_POSTGRES, evidence=_newer_pg_evidence(FIVE_SERVICES),
      notes={"SEC-001": WEAK_DEFAULT})
def _hc0ef05f(tmp: Path) -> Path:
    return _newer(tmp, f"history/c0ef05f/{NDC}", "dev-HEAD/.env.example")


@case("701551b", layout=LAYOUT_NEWER, status=NEWER_POSTGRES,
      evidence=_newer_pg_evidence([(8, "postgres"), (51, "api"), (53, "api"), (90, "scanner-service")]),
      notes={"SEC-001": WEAK_DEFAULT})
def _h701551b(tmp: Path) -> Path:
    return _newer(tmp, f"history/701551b/{NDC}", "dev-HEAD/.env.example")


# Older apps/api/.env.example files used as apps/api/.env under main-HEAD's
# compose file: their published JWT secrets are SEC-007.
@case("4026bee-env", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK, **{"SEC-007": F}),
      evidence=dict(SETUP_EVIDENCE, **{"SEC-007": [(API_ENV, 14, "api"), (API_ENV, 16, "api"), (API_ENV, 30, "api")]}),
      notes={"SEC-001": WEAK_DEFAULT, "SEC-007": ["is a published default"]})
def _h4026bee(tmp: Path) -> Path:
    return _clone(tmp, f"main-HEAD/{DC}", "history/4026bee/apps/api/.env.example")


@case("ac6b55a-env", layout=LAYOUT_SETUP_SCRIPT, status=dict(POSTGRES_STACK, **{"SEC-007": F}),
      evidence=dict(SETUP_EVIDENCE, **{"SEC-007": [(API_ENV, 5, "api"), (API_ENV, 12, "api")]}),
      notes={"SEC-001": WEAK_DEFAULT})
def _hac6b55a(tmp: Path) -> Path:
    return _clone(tmp, f"main-HEAD/{DC}", "history/ac6b55a/apps/api/.env.example")


def _audit(tmp: Path, c: Case, profile: str = "local", host: Path | None = None) -> Report:
    root = c.build(tmp)
    if host is None:
        host = tmp / "host-root"
        host.mkdir(exist_ok=True)
    files = [str(root / f) for f in c.files] if c.files else None
    inst = discover(str(root), files=files, host_root=str(host), now=FIXED_NOW)
    return run_audit(inst, profile)


NAMES = list(CASES)


def test_every_case_spells_out_every_file_check():
    ids = {c.id for c in CATALOG} - LIVE - TLS
    for name, c in CASES.items():
        assert set(c.status) == ids, name
        assert set(c.evidence) <= {cid for cid, st in c.status.items() if st == FAIL}, name


@pytest.mark.parametrize("name", NAMES)
def test_layout(tmp_path, name):
    c = CASES[name]
    report = _audit(tmp_path, c)
    assert report.installation.layout == c.layout
    assert report.installation.notes == []  # every file the compose files name is there


@pytest.mark.parametrize("name", NAMES)
def test_statuses(tmp_path, name):
    c = CASES[name]
    report = _audit(tmp_path, c)
    got = {f.id: f.status for f in report.findings if f.id not in LIVE | TLS}
    wrong = {cid: (got[cid], st) for cid, st in c.status.items() if got[cid] != st}
    assert not wrong, f"(got, expected): {wrong}"
    for f in report.findings:
        if f.id in LIVE | TLS:
            assert f.status == SKIPPED and f.reason, f.id


@pytest.mark.parametrize("name", NAMES)
def test_evidence(tmp_path, name):
    c = CASES[name]
    report = _audit(tmp_path, c)
    for cid, want in c.evidence.items():
        got = [(e.file, e.line, e.service) for e in report.by_id(cid).evidence]
        assert got == want, cid
    for cid, phrases in c.notes.items():
        f = report.by_id(cid)
        assert f.evidence, cid
        for e in f.evidence:
            for phrase in phrases:
                assert phrase in (e.note or ""), (cid, e.note)


@pytest.mark.parametrize("name", NAMES)
def test_no_real_secret_in_any_rendering(tmp_path, name):
    report = _audit(tmp_path, CASES[name])
    own = installs.SECRETS + (OWN_JWT_SECRET, OWN_REFRESH_SECRET)
    for text in (render_text(report), render_json(report), render_sarif(report)):
        leaked = [s for s in REAL_SECRETS if s in text] + [f"own secret #{i}" for i, s in enumerate(own) if s in text]
        assert not leaked, "secret values in the output"  # names of the published ones only
        for bad in ("POSTGRES_PASSWORD: postgres", "postgres:postgres@", "--requirepass redis"):
            assert bad not in text


def test_sqlite_reason(tmp_path):
    report = _audit(tmp_path, CASES["dev-HEAD"])
    assert report.by_id("SEC-001").reason == "this installation uses SQLite: there is no database password"


def test_missing_env_file_is_a_note(tmp_path):
    """ba3527c without apps/api/.env: Compose would refuse to start; the audit says so."""
    root = _clone(tmp_path, f"history/ba3527c/{DC}")
    report = run_audit(discover(str(root), host_root=str(tmp_path), now=FIXED_NOW), "local")
    assert report.installation.notes == [
        "apps/api/.env: named by env_file of service 'api' but missing; docker compose would refuse to start"]
    assert report.by_id("FS-001").status == PASS  # nothing on disk to be readable


def test_rendered_cli_through_the_command_line(tmp_path):
    c = CASES["rendered-cli"]
    root = c.build(tmp_path)
    host = tmp_path / "host-root"
    host.mkdir()
    res = run_cli("audit", "--dir", str(root), "--format", "json", "--host-root", str(host))
    assert res.code == 1, res.err
    doc = json.loads(res.out)
    assert doc["install"]["layout"] == LAYOUT_CLI
    assert {f["id"] for f in doc["findings"] if f["status"] == "fail"} == {
        cid for cid, st in c.status.items() if st == FAIL}
    assert "ExamplePass123" not in res.out + res.err


# -- reverse proxies from the docs, with the internet profile ------------------------------

DOCS_PROXIES = [
    # (snippet, where it goes under the host root, TLS-001, TLS-002, TLS-003)
    ("docs-snippets/docker.md@30206f0/Caddyfile", "etc/caddy/Caddyfile", P, F, F),
    ("docs-snippets/security.md@30206f0/Caddyfile", "etc/caddy/Caddyfile", P, F, F),
    ("docs-snippets/remote-access.md@7ca9c63/Caddyfile", "etc/caddy/Caddyfile", P, F, F),
    ("docs-snippets/security.md@30206f0/nginx-desterlib.conf", "etc/nginx/sites-enabled/desterlib", F, F, F),
    ("docs-snippets/docker.md@30206f0/nginx.conf", "etc/nginx/sites-enabled/desterlib", F, F, F),
]


@pytest.mark.parametrize("snippet,dest,tls1,tls2,tls3", DOCS_PROXIES, ids=[p[0].split("/", 1)[1] for p in DOCS_PROXIES])
def test_docs_proxy(tmp_path, snippet, dest, tls1, tls2, tls3):
    """Caddy gets HTTPS by itself for a host name; the nginx examples listen on 80 only.
    None asks for authentication or blocks /api/v1/logs and /api/v1/settings."""
    host = tmp_path / "host"
    conf = host / dest
    _copy(snippet, conf)
    report = _audit(tmp_path, CASES["rendered-cli"], "internet", host)
    got = tuple(report.by_id(cid).status for cid in ("TLS-001", "TLS-002", "TLS-003"))
    assert got == (tls1, tls2, tls3)
    for cid in ("TLS-001", "TLS-002", "TLS-003"):
        f = report.by_id(cid)
        assert [(e.file, e.line) for e in f.evidence] == [(str(conf), 1)], cid
    if tls1 == FAIL:
        assert report.by_id("TLS-001").reason == "the proxy serves plain HTTP"
    assert report.by_id("TLS-003").evidence[0].note == "serves /api/v1/logs, /api/v1/settings, /api/docs"
    # The API on 0.0.0.0:3001 bypasses the proxy: NET-003 is high on the internet profile.
    net3 = report.by_id("NET-003")
    assert (net3.status, net3.severity) == (FAIL, "high")
    assert [(e.file, e.line, e.service) for e in net3.evidence] == [(DC, 41, "api")]


def test_no_proxy_at_all(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    report = _audit(tmp_path, CASES["rendered-cli"], "internet", host)
    tls1 = report.by_id("TLS-001")
    assert (tls1.status, tls1.severity) == (FAIL, "critical")
    assert tls1.reason == "no Caddy, nginx, Traefik or cloudflared front door proxies to the API"
    assert report.by_id("TLS-002").status == SKIPPED
    assert report.by_id("TLS-003").status == SKIPPED


def test_docs_caddyfile_through_the_command_line(tmp_path):
    host = tmp_path / "host"
    _copy("docs-snippets/security.md@30206f0/Caddyfile", host / "etc/caddy/Caddyfile")
    root = CASES["rendered-cli"].build(tmp_path)
    res = run_cli("audit", "--dir", str(root), "--profile", "internet", "--host-root", str(host), "--format", "json")
    assert res.code == 1, res.err
    doc = json.loads(res.out)
    status = {f["id"]: f["status"] for f in doc["findings"]}
    assert (status["TLS-001"], status["TLS-002"], status["TLS-003"]) == ("pass", "fail", "fail")
    assert doc["profile"] == "internet"


def test_docs_cloudflared_config(tmp_path):
    """remote-access.md's tunnel: HTTPS at Cloudflare, no Access policy, everything served."""
    host = tmp_path / "host"
    conf = host / "etc/cloudflared/config.yml"
    _copy("docs-snippets/remote-access.md@7ca9c63/cloudflared-config.yml", conf)
    report = _audit(tmp_path, CASES["rendered-cli"], "internet", host)
    got = tuple(report.by_id(cid).status for cid in ("TLS-001", "TLS-002", "TLS-003"))
    assert got == (P, F, F)
    assert [(e.file, e.line) for e in report.by_id("TLS-002").evidence] == [(str(conf), 5)]
    assert report.by_id("TLS-003").evidence[0].text.startswith(f"cloudflared at {conf}:5: HTTPS; no login")


def test_docs_traefik_labels(tmp_path):
    """docker.md's labels on the api service: HTTPS (websecure, a resolver), no login, nothing refused."""
    fragment = (REAL / "docs-snippets/docker.md@30206f0/traefik-labels.compose-fragment.yml").read_text()
    root = _dir(tmp_path / "install")
    _write(root / "docker-compose.yml", "services:\n" + "".join("  " + ln + "\n" for ln in fragment.splitlines()),
           0o644)
    host = _dir(tmp_path / "host")
    inst = discover(str(root), host_root=str(host), now=FIXED_NOW)
    report = run_audit(inst, "internet")
    got = tuple(report.by_id(cid).status for cid in ("TLS-001", "TLS-002", "TLS-003"))
    assert got == (P, F, F)
    assert "Traefik cannot refuse a path" in (report.by_id("TLS-003").evidence[0].note or "")
