"""Every check of the catalog, failing and passing, on small inline installations.

Each case function is registered in :data:`CASES` under its check ID and the
status it must produce; :func:`test_every_check_has_a_failing_and_a_passing_case`
proves the catalog is covered. Nothing here needs ../shared.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

from checks.audit.catalog import BY_ID, CATALOG, PROFILES
from checks.audit.findings import FAIL, PASS, SKIPPED, Finding
from checks.audit.run import run_audit
from checks.install.discovery import discover
from checks.install.model import Installation

from .conftest import FIXED_NOW

#: check ID -> status -> names of the case functions that produce it.
CASES: dict[str, dict[str, list[str]]] = {c.id: {FAIL: [], PASS: [], SKIPPED: []} for c in CATALOG}

STRONG = "Vq3xN8pLr2Tz6WmYb4Hc9JsKd7Fg5QaE1uRt0eXo"  # 40 characters, URL-safe
assert len(STRONG) == 40


def case(check_ids: str | tuple[str, ...], expect: str):
    """Register the decorated test as a ``expect`` case of each of ``check_ids``.

    The test returns the :class:`Finding` (or a list of them, at least one per
    ID); the wrapper asserts their status, and a reason for skipped ones, so a
    case cannot silently test something else.
    """
    ids = (check_ids,) if isinstance(check_ids, str) else tuple(check_ids)
    for check_id in ids:
        assert check_id in BY_ID, check_id

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            result = fn(*args, **kwargs)
            findings = result if isinstance(result, list) else [result]
            assert findings and all(isinstance(f, Finding) for f in findings), f"{fn.__name__} must return its findings"
            assert {f.id for f in findings} == set(ids)
            for finding in findings:
                detail = (finding.id, finding.reason, [e.as_dict() for e in finding.evidence])
                assert finding.status == expect, detail
                if expect == SKIPPED:
                    assert finding.reason, f"{finding.id}: a skipped check must say why"
                if expect == FAIL:
                    assert finding.evidence or finding.reason, (
                        f"{finding.id}: a failing check must show evidence or a reason")

        for check_id in ids:
            CASES[check_id][expect].append(fn.__name__)
        return wrapper

    return deco


# --------------------------------------------------------------------------- helpers


def build(tmp_path: Path, files: dict[str, str], *, host: dict[str, str] | None = None,
          modes: dict[str, int] | None = None) -> Installation:
    """Write an installation to tmp_path/install (and a fake host tree) and discover it.

    Modes are explicit so the result does not depend on the umask: env files
    0600, everything else 0644, directories 0755, unless ``modes`` says otherwise.
    """
    root = tmp_path / "install"
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600 if ".env" in rel or rel.endswith(".env") else 0o644)
    for rel, mode in (modes or {}).items():
        os.chmod(root / rel if rel != "." else root, mode)
    host_root = tmp_path / "host"
    host_root.mkdir(exist_ok=True)
    for rel, text in (host or {}).items():
        path = host_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return discover(str(root), host_root=str(host_root), now=FIXED_NOW)


def run(tmp_path: Path, files: dict[str, str], check_id: str, profile: str = "local", **kw) -> Finding:
    """The one finding of ``check_id`` for the installation ``files``."""
    inst = build(tmp_path, files, **kw)
    return run_audit(inst, profile, only={check_id}).by_id(check_id)


def compose(*services: str, extra: str = "") -> dict[str, str]:
    return {"docker-compose.yml": "services:\n" + "".join(services) + extra}


def notes(finding: Finding) -> str:
    return " | ".join(e.note or "" for e in finding.evidence)


PG = "  postgres:\n    image: postgres:16.4\n"
REDIS = "  redis:\n    image: redis:7.2\n"
API = "  api:\n    image: desterlib/api:1.4.2\n"


# --------------------------------------------------------------------------- NET


@case("NET-001", FAIL)
def test_net001_fails_on_short_syntax_all_interfaces(tmp_path):
    f = run(tmp_path, compose(PG + '    ports:\n      - "5432:5432"\n'), "NET-001")
    assert [(e.file, e.line, e.service) for e in f.evidence] == [("docker-compose.yml", 5, "postgres")]
    assert "all interfaces" in notes(f)
    return f


@case("NET-001", FAIL)
@pytest.mark.parametrize("spec", ['"0.0.0.0:5432:5432"', '"[::]:5432:5432"', '":::5432:5432"', '"5432"'])
def test_net001_fails_on_explicit_any_address(tmp_path, spec):
    return run(tmp_path, compose(PG + f"    ports:\n      - {spec}\n"), "NET-001")


@case("NET-001", FAIL)
def test_net001_fails_on_long_syntax_without_host_ip(tmp_path):
    f = run(tmp_path, compose(PG + "    ports:\n      - target: 5432\n        published: 5432\n"), "NET-001")
    assert f.evidence[0].line == 5
    return f


@case("NET-001", FAIL)
def test_net001_fails_on_a_non_database_image_exposing_5432(tmp_path):
    proxy = "  proxy:\n    image: example/tcp-proxy:2\n    ports:\n      - \"15432:5432\"\n"
    return run(tmp_path, compose(proxy), "NET-001")


@case("NET-001", FAIL)
def test_net001_fails_on_redis(tmp_path):
    return run(tmp_path, compose(REDIS + '    ports:\n      - "6379:6379"\n'), "NET-001")


@case("NET-001", PASS)
@pytest.mark.parametrize("spec", ['"127.0.0.1:5432:5432"', '"[::1]:5432:5432"', '"::1:5432:5432"'])
def test_net001_passes_on_loopback(tmp_path, spec):
    return run(tmp_path, compose(PG + f"    ports:\n      - {spec}\n"), "NET-001")


@case("NET-001", PASS)
def test_net001_passes_on_long_syntax_with_loopback(tmp_path):
    long_port = "    ports:\n      - target: 5432\n        published: 5432\n        host_ip: 127.0.0.1\n"
    return run(tmp_path, compose(PG + long_port), "NET-001")


@case("NET-001", PASS)
def test_net001_passes_without_published_ports_and_for_web_ports(tmp_path):
    return run(tmp_path, compose(PG, API + '    ports:\n      - "8080:3001"\n'), "NET-001")


@case("NET-002", FAIL)
def test_net002_fails_on_a_loopback_database_port(tmp_path):
    f = run(tmp_path, compose(PG + '    ports:\n      - "127.0.0.1:5432:5432"\n'), "NET-002")
    assert "127.0.0.1" in notes(f)
    return f


@case("NET-002", PASS)
def test_net002_passes_when_the_database_is_not_published(tmp_path):
    return run(tmp_path, compose(PG + "    expose:\n      - 5432\n", API + '    ports:\n      - "3001:3001"\n'),
               "NET-002")


API_ON = API + '    ports:\n      - "{ip}3001:3001"\n'


@case("NET-003", PASS)
@pytest.mark.parametrize("ip", ["", "0.0.0.0:", "192.168.1.10:"])
def test_net003_local_allows_any_address(tmp_path, ip):
    return run(tmp_path, compose(API_ON.format(ip=ip)), "NET-003", "local")


@case("NET-003", FAIL)
@pytest.mark.parametrize("ip", ["", "0.0.0.0:", "[::]:", "192.168.1.10:"])
def test_net003_tailscale_fails_on_wide_addresses(tmp_path, ip):
    f = run(tmp_path, compose(API_ON.format(ip=ip)), "NET-003", "tailscale")
    assert f.severity == "high"
    assert f.evidence[0].line == 5
    return f


@case("NET-003", PASS)
@pytest.mark.parametrize("ip", ["100.100.1.2:", "127.0.0.1:", "[fd7a:115c:a1e0::1]:"])
def test_net003_tailscale_allows_tailnet_and_loopback(tmp_path, ip):
    return run(tmp_path, compose(API_ON.format(ip=ip)), "NET-003", "tailscale")


@case("NET-003", FAIL)
@pytest.mark.parametrize("ip", ["", "0.0.0.0:", "100.100.1.2:", "192.168.1.10:"])
def test_net003_internet_fails_unless_loopback(tmp_path, ip):
    return run(tmp_path, compose(API_ON.format(ip=ip)), "NET-003", "internet")


@case("NET-003", PASS)
@pytest.mark.parametrize("ip", ["127.0.0.1:", "[::1]:"])
def test_net003_internet_allows_loopback(tmp_path, ip):
    return run(tmp_path, compose(API_ON.format(ip=ip)), "NET-003", "internet")


@case("NET-003", FAIL)
def test_net003_follows_the_port_variable_and_long_syntax(tmp_path):
    f = run(tmp_path, compose(API + "    environment:\n      PORT: 4000\n    ports:\n"
                              "      - \"127.0.0.1:3001:3001\"\n      - target: 4000\n        published: 4000\n"),
            "NET-003", "internet")
    assert [e.line for e in f.evidence] == [8]
    return f


@case("NET-003", FAIL)
def test_net003_ignores_a_port_variable_that_is_not_ascii_digits(tmp_path):
    # "²".isdigit() is True but int("²") raises: the API port stays 3001.
    return run(tmp_path, compose(API + "    environment:\n      PORT: \"²\"\n    ports:\n      - \"3001:3001\"\n"),
               "NET-003", "internet")


@case("NET-003", SKIPPED)
def test_net003_skipped_without_an_api_service(tmp_path):
    return run(tmp_path, compose(PG), "NET-003", "internet")


def test_net003_severity_by_profile(tmp_path):
    inst = build(tmp_path, compose(API_ON.format(ip="")))
    severities = [run_audit(inst, p, only={"NET-003"}).by_id("NET-003").severity for p in PROFILES]
    assert severities == ["info", "high", "high"]


@case("NET-004", FAIL)
@pytest.mark.parametrize("key", ["network_mode", "pid", "ipc", "userns_mode"])
def test_net004_fails_on_host_namespaces(tmp_path, key):
    f = run(tmp_path, compose(API + f"    {key}: host\n"), "NET-004")
    assert f.evidence[0].line == 4
    return f


@case("NET-004", PASS)
def test_net004_passes_on_private_namespaces(tmp_path):
    return run(tmp_path, compose(API + "    network_mode: bridge\n    ipc: private\n"), "NET-004")


@case("NET-005", FAIL)
def test_net005_fails_on_the_default_network(tmp_path):
    f = run(tmp_path, compose(PG, API), "NET-005")
    assert sorted(e.service or "" for e in f.evidence) == ["api", "postgres"]
    return f


@case("NET-005", PASS)
def test_net005_passes_on_a_user_defined_bridge(tmp_path):
    return run(tmp_path, compose(PG + "    networks: [desterlib-net]\n",
                                 API + "    networks:\n      desterlib-net:\n        aliases: [api]\n",
                                 extra="networks:\n  desterlib-net:\n    driver: bridge\n"), "NET-005")


@case("NET-006", SKIPPED)
def test_net006_is_live(tmp_path):
    return run(tmp_path, compose(PG + '    ports:\n      - "5432:5432"\n'), "NET-006")


@case("NET-007", SKIPPED)
def test_net007_is_live(tmp_path):
    return run(tmp_path, compose(PG + '    ports:\n      - "5432:5432"\n'), "NET-007", "internet")


# --------------------------------------------------------------------------- SEC


def pg_env(password: str, user: str = "dester", db: str = "desterlib") -> str:
    return PG + (f"    environment:\n      POSTGRES_USER: {user}\n      POSTGRES_PASSWORD: {password}\n"
                 f"      POSTGRES_DB: {db}\n")


@case("SEC-001", FAIL)
@pytest.mark.parametrize("password,user,db,reason", [
    ("changeme", "dester", "desterlib", "a well-known default password"),
    ("postgres", "postgres", "postgres", "a well-known default password"),
    ("Dester_Admin_Account_Name_0123456789", "Dester_Admin_Account_Name_0123456789", "desterlib",
     "the same as the database user name"),
    ("Library_Database_Name_0123456789_abc", "dester", "Library_Database_Name_0123456789_abc",
     "the same as the database name"),
    ("Xk29fj3LmQ", "dester", "desterlib", "10 characters, fewer than 32"),
])
def test_sec001_fails_on_weak_passwords(tmp_path, password, user, db, reason):
    f = run(tmp_path, compose(pg_env(password, user, db)), "SEC-001")
    assert reason in notes(f)
    assert f.evidence[0].line == 6
    assert password not in f.evidence[0].text or password in ("postgres", "changeme")
    return f


@case("SEC-001", FAIL)
def test_sec001_fails_on_a_weak_password_in_database_url(tmp_path):
    f = run(tmp_path, {**compose(pg_env("${POSTGRES_PASSWORD}"), API + "    env_file: .env\n"),
                       ".env": f"POSTGRES_PASSWORD={STRONG}\nDATABASE_URL=postgresql://dester:short1@postgres:5432/desterlib\n"},
            "SEC-001")
    assert [(e.file, e.line) for e in f.evidence] == [(".env", 2)]
    return f


@case("SEC-001", PASS)
def test_sec001_passes_on_a_long_random_password(tmp_path):
    return run(tmp_path, {**compose(pg_env("${POSTGRES_PASSWORD}"),
                                    API + "    environment:\n      DATABASE_URL: postgresql://dester:${POSTGRES_PASSWORD}@postgres:5432/desterlib\n"),
                          ".env": f"POSTGRES_PASSWORD={STRONG}\n"}, "SEC-001")


@case("SEC-001", SKIPPED)
def test_sec001_skipped_for_sqlite(tmp_path):
    return run(tmp_path, {**compose(API + "    env_file: .env\n"), ".env": "DATABASE_URL=file:./db/main.db\n"},
               "SEC-001")


@case("SEC-001", SKIPPED)
def test_sec001_skipped_when_the_password_is_an_unset_variable(tmp_path):
    f = run(tmp_path, compose(pg_env("${POSTGRES_PASSWORD}")), "SEC-001")
    assert f.reason is not None and "not set" in f.reason
    return f


@case("SEC-002", FAIL)
def test_sec002_fails_when_compose_and_env_disagree(tmp_path):
    other = STRONG[::-1]
    f = run(tmp_path, {**compose(pg_env(STRONG), API + "    env_file: .env\n"),
                       ".env": f"DATABASE_URL=postgresql://dester:{other}@postgres:5432/desterlib\n"}, "SEC-002")
    assert sorted((e.file, e.line) for e in f.evidence) == [(".env", 1), ("docker-compose.yml", 6)]
    assert "password A of 2" in notes(f) and "password B of 2" in notes(f)
    text = " ".join(e.text for e in f.evidence)
    assert STRONG not in text and other not in text
    return f


@case("SEC-002", PASS)
def test_sec002_passes_when_every_copy_agrees(tmp_path):
    return run(tmp_path, {**compose(pg_env("${POSTGRES_PASSWORD}"),
                                    API + "    env_file: .env\n"),
                          ".env": f"POSTGRES_PASSWORD={STRONG}\nDATABASE_URL=postgresql://dester:{STRONG}@postgres:5432/desterlib\n"},
               "SEC-002")


@case("SEC-002", PASS)
def test_sec002_ignores_a_url_to_another_database(tmp_path):
    return run(tmp_path, {**compose(pg_env(STRONG), API + "    env_file: .env\n"),
                          ".env": "DATABASE_URL=postgresql://dester:elsewhere-pw@db.example.com:5432/x\n"}, "SEC-002")


@case("SEC-002", SKIPPED)
def test_sec002_skipped_without_a_password(tmp_path):
    return run(tmp_path, compose(API), "SEC-002")


@case("SEC-003", FAIL)
def test_sec003_fails_on_a_literal_password(tmp_path):
    f = run(tmp_path, compose(pg_env(STRONG)), "SEC-003")
    assert [(e.file, e.line) for e in f.evidence] == [("docker-compose.yml", 6)]
    assert STRONG not in f.evidence[0].text
    return f


@case("SEC-003", FAIL)
def test_sec003_fails_on_a_literal_url_password(tmp_path):
    return run(tmp_path, compose(API + f"    environment:\n      DATABASE_URL: postgresql://dester:{STRONG}@postgres/x\n"),
               "SEC-003")


@case("SEC-003", PASS)
def test_sec003_passes_on_references(tmp_path):
    return run(tmp_path, {**compose(pg_env("${POSTGRES_PASSWORD}"),
                                    API + "    environment:\n      DATABASE_URL: postgresql://dester:${POSTGRES_PASSWORD}@postgres/x\n"
                                          "      JWT_EXPIRES_IN: 7d\n"),
                          ".env": f"POSTGRES_PASSWORD={STRONG}\n"}, "SEC-003")


@case("SEC-004", FAIL)
def test_sec004_fails_on_an_unencoded_base64_password(tmp_path):
    f = run(tmp_path, {**compose(API + "    env_file: .env\n"),
                       ".env": "DATABASE_URL=postgresql://dester:q8/Zr+T1kQ4wZ9cV2bN7mLp3xY6hJ0sAe5dF1gH2k==@postgres:5432/desterlib\n"},
            "SEC-004")
    assert [(e.file, e.line) for e in f.evidence] == [(".env", 1)]
    assert "q8/Zr+T1" not in f.evidence[0].text
    return f


@case("SEC-004", PASS)
def test_sec004_passes_on_a_percent_encoded_password(tmp_path):
    return run(tmp_path, {**compose(API + "    env_file: .env\n"),
                          ".env": "DATABASE_URL=postgresql://dester:q8%2FZr%2BT1kQ4wZ9cV2bN7mLp3xY6hJ0sAe5dF1gH2k%3D%3D@postgres:5432/desterlib\n"},
               "SEC-004")


@case("SEC-005", FAIL)
def test_sec005_fails_on_published_redis_without_password(tmp_path):
    redis = REDIS + '    command: redis-server --appendonly yes\n    ports:\n      - "6379:6379"\n'
    f = run(tmp_path, compose(redis), "SEC-005")
    assert f.evidence[0].line == 6
    return f


@case("SEC-005", PASS)
def test_sec005_passes_with_requirepass(tmp_path):
    redis = REDIS + ('    command: redis-server --requirepass ${REDIS_PASSWORD}\n'
                     '    ports:\n      - "127.0.0.1:6379:6379"\n')
    return run(tmp_path, {**compose(redis),
                          ".env": f"REDIS_PASSWORD={STRONG}\n"}, "SEC-005")


@case("SEC-005", PASS)
def test_sec005_passes_with_requirepass_in_list_form(tmp_path):
    redis = REDIS + ('    command: ["redis-server", "--requirepass", "${REDIS_PASSWORD}"]\n'
                     '    ports:\n      - "6379:6379"\n')
    return run(tmp_path, {**compose(redis),
                          ".env": f"REDIS_PASSWORD={STRONG}\n"}, "SEC-005")


@case("SEC-005", PASS)
def test_sec005_passes_when_redis_is_not_published(tmp_path):
    return run(tmp_path, compose(REDIS), "SEC-005")


@case("SEC-006", FAIL)
def test_sec006_fails_on_trust(tmp_path):
    f = run(tmp_path, compose(PG + "    environment:\n      POSTGRES_HOST_AUTH_METHOD: trust\n"), "SEC-006")
    assert f.evidence[0].line == 5
    return f


@case("SEC-006", FAIL)
def test_sec006_fails_on_trust_in_an_env_file(tmp_path):
    return run(tmp_path, {**compose(PG + "    env_file: db.env\n"), "db.env": "POSTGRES_HOST_AUTH_METHOD=TRUST\n"},
               "SEC-006")


@case("SEC-006", PASS)
def test_sec006_passes_on_scram(tmp_path):
    return run(tmp_path, compose(PG + "    environment:\n      POSTGRES_HOST_AUTH_METHOD: scram-sha-256\n"), "SEC-006")


@case("SEC-007", FAIL)
@pytest.mark.parametrize("value", ["change-this-in-production-abc123", "change-me-in-production",
                                   "your-jwt-secret-here", "supersecret"])
def test_sec007_fails_on_published_defaults(tmp_path, value):
    f = run(tmp_path, {**compose(API + "    env_file: .env\n"), ".env": f"NODE_ENV=production\nJWT_SECRET={value}\n"},
            "SEC-007")
    assert [(e.file, e.line) for e in f.evidence] == [(".env", 2)]
    return f


@case("SEC-007", PASS)
def test_sec007_passes_on_a_generated_secret(tmp_path):
    return run(tmp_path, {**compose(API + "    env_file: .env\n"), ".env": f"JWT_SECRET={STRONG}\nJWT_EXPIRES_IN=7d\n"},
               "SEC-007")


# --------------------------------------------------------------------------- FS


@case("FS-001", FAIL)
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_fs001_fails_on_a_readable_env_file(tmp_path, mode):
    f = run(tmp_path, {**compose(API), ".env": "A=1\n"}, "FS-001", modes={".env": mode})
    assert f.evidence[0].file == ".env" and f"{mode:04o}" in f.evidence[0].text
    return f


@case("FS-001", FAIL)
def test_fs001_checks_every_env_file(tmp_path):
    f = run(tmp_path, {**compose(API + "    env_file: apps/api/.env\n"), ".env": "A=1\n", "apps/api/.env": "B=2\n"},
            "FS-001", modes={"apps/api/.env": 0o644})
    assert [e.file for e in f.evidence] == ["apps/api/.env"]
    return f


@case("FS-001", PASS)
def test_fs001_passes_on_0600(tmp_path):
    return run(tmp_path, {**compose(API + "    env_file: api.env\n"), ".env": "A=1\n", "api.env": "B=2\n"}, "FS-001")


@case("FS-002", FAIL)
@pytest.mark.parametrize("mode", [0o664, 0o666, 0o646])
def test_fs002_fails_on_a_writable_compose_file(tmp_path, mode):
    return run(tmp_path, compose(API), "FS-002", modes={"docker-compose.yml": mode})


@case("FS-002", FAIL)
def test_fs002_fails_on_a_readable_compose_file_with_secrets(tmp_path):
    f = run(tmp_path, compose(pg_env(STRONG)), "FS-002")
    assert "holds secrets" in notes(f)
    return f


@case("FS-002", PASS)
def test_fs002_passes_on_0644_without_secrets(tmp_path):
    return run(tmp_path, compose(API), "FS-002")


@case("FS-002", PASS)
def test_fs002_passes_on_0600_with_secrets(tmp_path):
    return run(tmp_path, compose(pg_env(STRONG)), "FS-002", modes={"docker-compose.yml": 0o600})


@case("FS-003", FAIL)
@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_fs003_fails_on_a_writable_install_dir(tmp_path, mode):
    return run(tmp_path, compose(API), "FS-003", modes={".": mode})


@case("FS-003", FAIL)
def test_fs003_checks_the_compose_file_directory(tmp_path):
    f = run(tmp_path, {"docker/docker-compose.yml": "services:\n" + API}, "FS-003", modes={"docker": 0o777})
    assert [e.file for e in f.evidence] == ["docker"]
    return f


@case("FS-003", PASS)
def test_fs003_passes_on_0755(tmp_path):
    return run(tmp_path, compose(API), "FS-003")


MEDIA_API = API + "    volumes:\n      - ./media:/media{mode}\n"


@case("FS-004", FAIL)
@pytest.mark.parametrize("mode", ["", ":rw", ":z"])
def test_fs004_fails_on_a_writable_media_mount(tmp_path, mode):
    f = run(tmp_path, compose(MEDIA_API.format(mode=mode)), "FS-004")
    assert f.evidence[0].line == 5
    return f


@case("FS-004", PASS)
@pytest.mark.parametrize("mode", [":ro", ":ro,z", ":z,ro"])
def test_fs004_passes_on_a_read_only_media_mount(tmp_path, mode):
    return run(tmp_path, compose(MEDIA_API.format(mode=mode)), "FS-004")


@case("FS-004", PASS)
def test_fs004_passes_on_long_syntax_read_only(tmp_path):
    media = ("    volumes:\n      - type: bind\n        source: /srv/media\n        target: /media\n"
             "        read_only: true\n")
    return run(tmp_path, compose(API + media), "FS-004")


@case("FS-004", SKIPPED)
def test_fs004_skipped_without_a_media_mount(tmp_path):
    return run(tmp_path, compose(API + "    volumes:\n      - data:/data\n"), "FS-004")


def media_tree(tmp_path: Path, bad: bool) -> Path:
    media = tmp_path / "install" / "media"
    (media / "Movies" / "Film (2020)").mkdir(parents=True)
    (media / "Shows").mkdir()
    film = media / "Movies" / "Film (2020)" / "film.mkv"
    film.write_bytes(b"\x00" * 16)
    episode = media / "Shows" / "s01e01.mkv"
    episode.write_bytes(b"\x00" * 16)
    for d in (media, media / "Movies", media / "Movies" / "Film (2020)", media / "Shows"):
        os.chmod(d, 0o755)
    os.chmod(film, 0o644)
    os.chmod(episode, 0o644)
    # Symbolic links are never followed nor reported, whatever they point at.
    os.symlink("/etc/shadow", media / "Movies" / "shadow-link")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(outside, 0o777)
    (outside / "x.mkv").write_bytes(b"x")
    os.chmod(outside / "x.mkv", 0o777)
    os.symlink(outside, media / "linked-dir")
    if bad:
        os.chmod(media / "Shows", 0o777)
        os.chmod(film, 0o755)
    return media


@case("FS-005", FAIL)
def test_fs005_fails_on_writable_dirs_and_executable_files(tmp_path):
    media_tree(tmp_path, bad=True)
    f = run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "FS-005")
    summary = f.evidence[0].text
    assert "1 directory writable by group/other" in summary
    assert "1 file executable" in summary
    assert "writable by group/other, 1 file executable" in summary and "files writable" not in summary
    shown = " ".join(e.file or "" for e in f.evidence) + " ".join(e.text for e in f.evidence)
    assert "shadow" not in shown and "outside" not in shown and "linked-dir" not in shown
    assert sorted(os.path.basename(e.file or "") for e in f.evidence[1:]) == ["Shows", "film.mkv"]
    return f


@case("FS-005", FAIL)
def test_fs005_counts_a_writable_media_root(tmp_path):
    media = media_tree(tmp_path, bad=False)
    os.chmod(media, 0o775)
    return run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "FS-005")


@case("FS-005", PASS)
def test_fs005_passes_on_a_clean_tree_with_symlinks(tmp_path):
    media_tree(tmp_path, bad=False)
    return run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "FS-005")


@case("FS-005", SKIPPED)
def test_fs005_skipped_when_the_media_dir_is_absent(tmp_path):
    f = run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "FS-005")
    assert f.reason is not None and "not found" in f.reason
    return f


@case("FS-005", SKIPPED)
def test_fs005_does_not_follow_a_symlinked_media_root(tmp_path):
    target = tmp_path / "real-media"
    target.mkdir()
    os.chmod(target, 0o777)
    (tmp_path / "install").mkdir()
    os.symlink(target, tmp_path / "install" / "media")
    return run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "FS-005")


@case("FS-006", FAIL)
@pytest.mark.parametrize("name", [".env.bak", ".env.orig", ".env~", "docker-compose.yml.bak", ".env.backup.2024"])
def test_fs006_fails_on_a_readable_copy(tmp_path, name):
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / name).write_text("A=1\n")
    os.chmod(tmp_path / "install" / name, 0o644)
    f = run(tmp_path, {**compose(API), ".env": "A=1\n"}, "FS-006")
    assert [e.file for e in f.evidence] == [name]
    return f


def _fs006_with_copy(tmp_path, copy_name: str, copy_text: str, profile: str = "local") -> Finding:
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / copy_name).write_text(copy_text)
    os.chmod(tmp_path / "install" / copy_name, 0o644)
    db = ("  db:\n    image: postgres:16\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n"
          "  api:\n    image: desterlib/api:1.4.2\n    environment:\n"
          "      DATABASE_URL: postgresql://postgres:${POSTGRES_PASSWORD}@db:5432/desterlib\n")
    return run(tmp_path, {**compose(db), ".env": f"POSTGRES_PASSWORD={STRONG}\n"}, "FS-006", profile)


@pytest.mark.parametrize("copy_text", [f"POSTGRES_PASSWORD={STRONG}\n", f"POSTGRES_PASSWORD='{STRONG}'\n",
                                       f"DATABASE_URL=postgresql://postgres:{STRONG}@db:5432/desterlib\n"])
@pytest.mark.parametrize("profile", PROFILES)
def test_fs006_is_as_severe_as_fs001_when_the_copy_holds_a_password_in_use(tmp_path, copy_text, profile):
    f = _fs006_with_copy(tmp_path, ".env.bak", copy_text, profile)
    assert f.status == FAIL
    assert f.severity == BY_ID["FS-001"].severity_for(profile) == "high"
    assert "still in use" in notes(f)
    assert STRONG not in str(f.as_dict())


def test_fs006_stays_medium_when_the_copy_holds_an_old_password(tmp_path):
    f = _fs006_with_copy(tmp_path, ".env.bak", "POSTGRES_PASSWORD=an-old-password-no-longer-used\n")
    assert f.status == FAIL
    assert f.severity == BY_ID["FS-006"].severity_for("local") == "medium"
    assert "still in use" not in notes(f)


def test_fs006_compose_copy_with_the_password_in_use_is_high(tmp_path):
    copy = f"services:\n  db:\n    environment:\n      - \"POSTGRES_PASSWORD={STRONG}\"\n"
    f = _fs006_with_copy(tmp_path, "docker-compose.yml.bak", copy)
    assert f.severity == "high"


@case("FS-006", PASS)
def test_fs006_passes_on_a_0600_copy(tmp_path):
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / ".env.bak").write_text("A=1\n")
    os.chmod(tmp_path / "install" / ".env.bak", 0o600)
    (tmp_path / "install" / ".env.example").write_text("A=\n")
    os.chmod(tmp_path / "install" / ".env.example", 0o644)
    return run(tmp_path, {**compose(API), ".env": "A=1\n"}, "FS-006")


SQLITE_API = API + ("    environment:\n      DATABASE_URL: file:/app/db/main.db\n"
                     "    volumes:\n      - ./desterlib-data/db:/app/db\n")


def _sqlite(tmp_path, dir_mode: int, db_mode: int, companions: int | None = None) -> Finding:
    db = tmp_path / "install" / "desterlib-data" / "db"
    db.mkdir(parents=True)
    for name in ["main.db"] + (["main.db-wal", "main.db-shm"] if companions is not None else []):
        (db / name).write_bytes(b"SQLite format 3\x00")
        os.chmod(db / name, db_mode if name == "main.db" else companions or 0)
    os.chmod(db, dir_mode)
    os.chmod(db.parent, 0o755)
    return run(tmp_path, compose(SQLITE_API), "FS-007")


@case("FS-007", FAIL)
def test_fs007_fails_on_a_readable_sqlite_database(tmp_path):
    f = _sqlite(tmp_path, 0o700, 0o644)
    assert [e.file for e in f.evidence] == ["desterlib-data/db/main.db"]
    # What the fix works on: the database's host path.
    assert [e.target for e in f.evidence] == [str(tmp_path / "install" / "desterlib-data" / "db" / "main.db")]
    return f


@case("FS-007", FAIL)
def test_fs007_fails_on_a_readable_directory_and_wal(tmp_path):
    f = _sqlite(tmp_path, 0o755, 0o600, companions=0o644)
    assert [e.file for e in f.evidence] == ["desterlib-data/db", "desterlib-data/db/main.db-wal",
                                            "desterlib-data/db/main.db-shm"]
    assert "0700" in (f.evidence[0].note or "") and "0600" in (f.evidence[1].note or "")
    return f


@case("FS-007", PASS)
def test_fs007_passes_on_0600_in_0700(tmp_path):
    return _sqlite(tmp_path, 0o700, 0o600, companions=0o600)


@case("FS-007", SKIPPED)
def test_fs007_is_skipped_without_sqlite(tmp_path):
    f = run(tmp_path, compose(pg_env(STRONG)), "FS-007")
    assert f.reason and "no SQLite database" in f.reason
    return f


@case("FS-007", SKIPPED)
def test_fs007_is_skipped_when_the_database_is_on_no_bind_mount(tmp_path):
    f = run(tmp_path, compose(API + "    environment:\n      DATABASE_URL: file:/app/db/main.db\n"), "FS-007")
    assert f.reason and "on no bind mount" in f.reason
    return f


def test_fs007_does_not_follow_a_symlinked_database(tmp_path):
    outside = tmp_path / "elsewhere.db"
    outside.write_bytes(b"x")
    os.chmod(outside, 0o644)
    db = tmp_path / "install" / "desterlib-data" / "db"
    db.mkdir(parents=True)
    os.chmod(db, 0o700)
    (db / "main.db").symlink_to(outside)
    f = run(tmp_path, compose(SQLITE_API), "FS-007")
    assert f.status == "error" and f.reason and "symbolic link" in f.reason


# --------------------------------------------------------------------------- DKR


@case("DKR-001", FAIL)
@pytest.mark.parametrize("vol", ["/var/run/docker.sock:/var/run/docker.sock", "/run/docker.sock:/docker.sock:ro",
                                 "/var/run:/host-run"])
def test_dkr001_fails_on_the_docker_socket(tmp_path, vol):
    watch = "  watch:\n    image: containrrr/watchtower:1.7.1\n    volumes:\n      - " + vol + "\n"
    f = run(tmp_path, compose(watch), "DKR-001")
    assert f.evidence[0].line == 5
    return f


@case("DKR-001", FAIL)
def test_dkr001_fails_on_a_socket_through_a_named_volume(tmp_path):
    watch = "  watch:\n    image: containrrr/watchtower:1.7.1\n    volumes:\n      - sock:/var/run/docker.sock\n"
    sock = "volumes:\n  sock:\n    driver_opts: {type: none, o: bind, device: /var/run/docker.sock}\n"
    return run(tmp_path, compose(watch, extra=sock),
               "DKR-001")


@case("DKR-001", PASS)
def test_dkr001_passes_without_the_socket(tmp_path):
    return run(tmp_path, compose(MEDIA_API.format(mode=":ro")), "DKR-001")


@case("DKR-002", FAIL)
@pytest.mark.parametrize("value", ["true", '"true"', "yes"])
def test_dkr002_fails_on_privileged(tmp_path, value):
    return run(tmp_path, compose(API + f"    privileged: {value}\n"), "DKR-002")


@case("DKR-002", PASS)
def test_dkr002_passes_on_unprivileged(tmp_path):
    return run(tmp_path, compose(API + "    privileged: false\n"), "DKR-002")


@case("DKR-003", FAIL)
@pytest.mark.parametrize("opt", ["", "    security_opt: [\"no-new-privileges:false\"]\n",
                                 "    security_opt: [\"seccomp:unconfined\"]\n"])
def test_dkr003_fails_without_no_new_privileges(tmp_path, opt):
    return run(tmp_path, compose(API + opt), "DKR-003")


@case("DKR-003", PASS)
@pytest.mark.parametrize("opt", ["no-new-privileges:true", "no-new-privileges", "no-new-privileges=true"])
def test_dkr003_passes_with_no_new_privileges(tmp_path, opt):
    return run(tmp_path, compose(API + f"    security_opt:\n      - \"{opt}\"\n"), "DKR-003")


@case("DKR-004", FAIL)
@pytest.mark.parametrize("image", ["postgres", "postgres:latest", "registry.local:5000/dester/api",
                                   "ghcr.io/x/y:latest"])
def test_dkr004_fails_on_latest_or_missing_tag(tmp_path, image):
    return run(tmp_path, compose(f"  app:\n    image: {image}\n"), "DKR-004")


@case("DKR-004", PASS)
@pytest.mark.parametrize("image", ["postgres:16.4", "registry.local:5000/dester/api:1.2", "redis@sha256:" + "a" * 64])
def test_dkr004_passes_on_pinned_images(tmp_path, image):
    return run(tmp_path, compose(f"  app:\n    image: {image}\n"), "DKR-004")


@case("DKR-005", SKIPPED)
def test_dkr005_is_live(tmp_path):
    return run(tmp_path, compose(API), "DKR-005")


@case("DKR-006", FAIL)
@pytest.mark.parametrize("cap", ["SYS_ADMIN", "cap_net_admin", "ALL", "SYS_PTRACE"])
def test_dkr006_fails_on_dangerous_capabilities(tmp_path, cap):
    f = run(tmp_path, compose(API + f"    cap_add:\n      - CHOWN\n      - {cap}\n"), "DKR-006")
    assert [e.line for e in f.evidence] == [6]
    return f


@case("DKR-006", PASS)
def test_dkr006_passes_on_harmless_capabilities(tmp_path):
    return run(tmp_path, compose(API + "    cap_add: [CHOWN, NET_BIND_SERVICE]\n    cap_drop: [ALL]\n"), "DKR-006")


@case("DKR-007", FAIL)
@pytest.mark.parametrize("vol", ["/:/host", "/etc:/host-etc:ro", "/root:/root", "/proc:/host-proc", "~/.ssh:/keys:ro"])
def test_dkr007_fails_on_sensitive_host_paths(tmp_path, vol):
    return run(tmp_path, compose(API + f"    volumes:\n      - {vol}\n"), "DKR-007")


@case("DKR-007", PASS)
def test_dkr007_passes_on_ordinary_mounts(tmp_path):
    return run(tmp_path, compose(API + "    volumes:\n      - ./media:/media:ro\n      - /srv/media:/library:ro\n"
                                       "      - /etc/localtime:/etc/localtime:ro\n      - data:/data\n"), "DKR-007")


LOGGING = "    logging:\n      driver: json-file\n      options:\n        max-size: 10m\n        max-file: \"3\"\n"


@case("DKR-008", FAIL)
def test_dkr008_fails_without_rotation(tmp_path):
    f = run(tmp_path, compose(API + LOGGING, PG), "DKR-008")
    assert [e.service for e in f.evidence] == ["postgres"]
    return f


@case("DKR-008", FAIL)
def test_dkr008_fails_on_json_file_options_without_max_size(tmp_path):
    logging = "    logging:\n      driver: json-file\n      options:\n        max-file: \"3\"\n"
    return run(tmp_path, compose(API + logging),
               "DKR-008")


@case("DKR-008", PASS)
def test_dkr008_passes_with_max_size(tmp_path):
    return run(tmp_path, compose(API + LOGGING, PG + "    logging:\n      driver: journald\n"), "DKR-008")


@case("DKR-008", PASS)
def test_dkr008_passes_with_daemon_json_log_opts(tmp_path):
    return run(tmp_path, compose(API, PG), "DKR-008",
               host={"etc/docker/daemon.json":
                     '{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}'})


@case("DKR-008", PASS)
def test_dkr008_daemon_log_opts_reach_an_explicit_json_file_driver(tmp_path):
    # Docker merges the daemon's log-opts into a container whose driver is the
    # daemon's default even when the compose file names that driver.
    pg = PG + "    logging:\n      options:\n        max-file: \"3\"\n"
    return run(tmp_path, compose(API + "    logging:\n      driver: json-file\n", pg),
               "DKR-008", host={"etc/docker/daemon.json": '{"log-opts": {"max-size": "10m"}}'})


@case("DKR-008", PASS)
def test_dkr008_logging_options_without_driver_use_the_daemon_driver(tmp_path):
    return run(tmp_path, compose(API + "    logging:\n      options:\n        mode: non-blocking\n"),
               "DKR-008", host={"etc/docker/daemon.json": '{"log-driver": "local"}'})


@case("DKR-008", FAIL)
def test_dkr008_explicit_json_file_does_not_inherit_another_drivers_options(tmp_path):
    f = run(tmp_path, compose(API + "    logging:\n      driver: json-file\n"), "DKR-008",
            host={"etc/docker/daemon.json": '{"log-driver": "local", "log-opts": {"max-size": "10m"}}'})
    assert f.evidence[0].line == 4
    return f


@case("DKR-008", FAIL)
def test_dkr008_fails_with_daemon_json_without_max_size(tmp_path):
    return run(tmp_path, compose(API), "DKR-008", host={"etc/docker/daemon.json": '{"log-opts": {"max-file": "3"}}'})


# --------------------------------------------------------------------------- TLS


API_LOCAL = API + '    ports:\n      - "127.0.0.1:3001:3001"\n'

CADDY_GOOD = """\
{
    email admin@example.com
}

dester.example.com {
    basic_auth {
        admin $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG
    }
    @blocked path /api/v1/logs* /api/v1/settings* /api/docs*
    respond @blocked 403
    reverse_proxy 127.0.0.1:3001
}
"""

CADDY_PLAIN = """\
http://dester.example.com {
    reverse_proxy localhost:3001
}
"""

NGINX_GOOD = """\
server {
    listen 443 ssl;
    server_name dester.example.com;
    ssl_certificate /etc/letsencrypt/live/dester.example.com/fullchain.pem;
    auth_basic "DesterLib";
    auth_basic_user_file /etc/nginx/.htpasswd;
    location /api/v1/logs { return 403; }
    location ^~ /api/v1/settings { deny all; }
    location ~ ^/api/docs { return 404; }
    location / {
        proxy_pass http://127.0.0.1:3001;
    }
}
"""

NGINX_PLAIN = """\
server {
    listen 80;
    location / {
        proxy_pass http://127.0.0.1:3001/;
    }
}
"""

TLS_IDS = ("TLS-001", "TLS-002", "TLS-003")


def tls(tmp_path: Path, host: dict[str, str], check_id: str, profile: str = "internet") -> Finding:
    return run(tmp_path, compose(API_LOCAL), check_id, profile, host=host)


@pytest.mark.parametrize("host", [
    {"etc/caddy/Caddyfile": CADDY_GOOD},
    {"etc/nginx/sites-enabled/x": NGINX_GOOD},
    {"etc/caddy/Caddyfile": CADDY_GOOD.replace("\n", "\r\n")},
    {"etc/nginx/sites-enabled/x": NGINX_GOOD.replace("\n", "\r\n")},
], ids=["caddy", "nginx", "caddy-crlf", "nginx-crlf"])
@pytest.mark.parametrize("check_id", TLS_IDS)
def test_tls_good_proxy_passes_all_three(tmp_path, host, check_id):
    assert tls(tmp_path, host, check_id).status == PASS


@case("TLS-001", PASS)
def test_tls001_passes_with_caddy_https(tmp_path):
    f = tls(tmp_path, {"etc/caddy/Caddyfile": CADDY_GOOD}, "TLS-001")
    assert f.evidence[0].line == 5
    return f


@case("TLS-001", FAIL)
def test_tls001_fails_without_a_proxy(tmp_path):
    f = tls(tmp_path, {}, "TLS-001")
    assert f.reason is not None and "no Caddy, nginx, Traefik or cloudflared" in f.reason
    return f


@case("TLS-001", FAIL)
@pytest.mark.parametrize("host", [{"etc/caddy/Caddyfile": CADDY_PLAIN}, {"etc/nginx/sites-enabled/x": NGINX_PLAIN}],
                         ids=["caddy", "nginx"])
def test_tls001_fails_on_plain_http(tmp_path, host):
    return tls(tmp_path, host, "TLS-001")


@case("TLS-002", PASS)
def test_tls002_passes_with_nginx_basic_auth(tmp_path):
    return tls(tmp_path, {"etc/nginx/sites-enabled/x": NGINX_GOOD}, "TLS-002")


@case("TLS-002", FAIL)
@pytest.mark.parametrize("host", [{"etc/caddy/Caddyfile": CADDY_PLAIN}, {"etc/nginx/sites-enabled/x": NGINX_PLAIN}],
                         ids=["caddy", "nginx"])
def test_tls002_fails_without_auth(tmp_path, host):
    return tls(tmp_path, host, "TLS-002")


@case("TLS-002", FAIL)
def test_tls002_fails_on_auth_basic_off(tmp_path):
    nginx = NGINX_GOOD.replace('auth_basic "DesterLib";', "auth_basic off;")
    return tls(tmp_path, {"etc/nginx/sites-enabled/x": nginx}, "TLS-002")


@case("TLS-003", PASS)
def test_tls003_passes_with_blocked_paths(tmp_path):
    return tls(tmp_path, {"etc/caddy/Caddyfile": CADDY_GOOD}, "TLS-003")


@case("TLS-003", FAIL)
def test_tls003_fails_when_only_one_path_is_blocked(tmp_path):
    f = tls(tmp_path, {"etc/caddy/Caddyfile": CADDY_GOOD.replace(" /api/v1/settings*", "")}, "TLS-003")
    assert "/api/v1/settings" in notes(f) and "/api/v1/logs" not in notes(f)
    return f


@case("TLS-003", FAIL)
def test_tls003_fails_on_an_open_proxy(tmp_path):
    return tls(tmp_path, {"etc/nginx/sites-enabled/x": NGINX_PLAIN}, "TLS-003")


@case(TLS_IDS, SKIPPED)
@pytest.mark.parametrize("profile", ["local", "tailscale"])
def test_tls_skipped_on_other_profiles(tmp_path, profile):
    inst = build(tmp_path, compose(API + '    ports:\n      - "3001:3001"\n'),
                 host={"etc/caddy/Caddyfile": CADDY_PLAIN})
    findings = [run_audit(inst, profile, only=set(TLS_IDS)).by_id(i) for i in TLS_IDS]
    for f in findings:
        assert f.reason is not None and profile in f.reason and "internet" in f.reason
        assert f.severity == "info"
    return findings


@pytest.mark.parametrize("check_id", ["TLS-002", "TLS-003"])
def test_tls002_003_skipped_without_a_proxy(tmp_path, check_id):
    f = tls(tmp_path, {}, check_id)
    assert f.status == SKIPPED and f.reason is not None and "TLS-001" in f.reason


def _opened_paths(monkeypatch) -> list[str]:
    """Every path os.open is asked for from here on."""
    opened: list[str] = []
    real_open = os.open

    def spy(path, *a, **kw):
        opened.append(os.fsdecode(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(os, "open", spy)
    return opened


def test_tls_skips_a_fifo_and_a_device_in_the_config_dirs(tmp_path):
    """A FIFO would block the audit forever, /dev/zero never ends: neither is read, nor an error."""
    for sub, host, expect in (("good", {"etc/caddy/Caddyfile": CADDY_GOOD}, PASS), ("none", {}, FAIL)):
        base = tmp_path / sub
        conf = base / "host" / "etc" / "caddy" / "conf.d"
        conf.mkdir(parents=True)
        os.mkfifo(conf / "fifo")
        sites = base / "host" / "etc" / "nginx" / "sites-enabled"
        sites.mkdir(parents=True)
        (sites / "zero").symlink_to("/dev/zero")
        f = tls(base, host, "TLS-001")
        assert f.status == expect, f
        assert "could not read" not in (f.reason or ""), f.reason


def test_tls_read_config_returns_none_for_non_regular_files(tmp_path):
    from checks.proxy.detect import read_config

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "zero").symlink_to("/dev/zero")
    (tmp_path / "proc").symlink_to("/proc/self/status")
    (tmp_path / "ok").write_text("x {\n}\n")
    assert read_config(str(tmp_path / "fifo"), "fifo") is None
    assert read_config(str(tmp_path / "zero"), "zero") is None
    assert read_config(str(tmp_path / "proc"), "proc") is None
    ok = read_config(str(tmp_path / "ok"), "ok")
    assert ok is not None and ok.text == "x {\n}\n"


def test_tls_never_opens_proc_or_sys_files(tmp_path, monkeypatch):
    """/proc and /sys hold regular-looking files (this process's status, kernel
    knobs): a link to one in a config dir, or /proc mounted into the proxy, is not read."""
    host = tmp_path / "host" / "etc" / "caddy" / "conf.d"
    host.mkdir(parents=True)
    (host / "status").symlink_to("/proc/self/status")
    (host / "kernel").symlink_to("/sys/kernel/mm/transparent_hugepage/enabled")
    caddy = ("  caddy:\n    image: caddy:2\n    volumes:\n      - /proc:/etc/caddy:ro\n"
             "      - /sys/kernel:/etc/caddy/conf.d:ro\n")
    opened = _opened_paths(monkeypatch)
    f = run(tmp_path, compose(API_LOCAL, caddy), "TLS-001", "internet")
    assert f.status == FAIL
    bad = [p for p in opened if p.startswith(("/proc/", "/sys/"))]
    assert bad == [], bad[:5]
    assert "could not read" not in (f.reason or ""), f.reason


# --------------------------------------------------------------------------- OPS


def dump(tmp_path: Path, name: str, age_days: float) -> None:
    path = tmp_path / "install" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"-- PostgreSQL database dump\n")
    when = FIXED_NOW - age_days * 86400
    os.utime(path, (when, when))


@case("OPS-001", PASS)
@pytest.mark.parametrize("name", ["desterlib-2026-09-20.sql.gz", "backups/desterlib.dump"])
def test_ops001_passes_on_a_recent_dump(tmp_path, name):
    dump(tmp_path, name, 2)
    f = run(tmp_path, compose(PG), "OPS-001")
    assert "2.0 days old" in notes(f)
    return f


@case("OPS-001", FAIL)
def test_ops001_fails_on_an_old_dump(tmp_path):
    dump(tmp_path, "backups/desterlib.sql", 8)
    f = run(tmp_path, compose(PG), "OPS-001")
    assert f.reason is not None and "older than 7 days" in f.reason
    return f


@case("OPS-001", FAIL)
def test_ops001_fails_without_any_backup(tmp_path):
    return run(tmp_path, compose(PG), "OPS-001")


@case("OPS-001", FAIL)
def test_ops001_ignores_commented_cron_lines_and_copies_of_env(tmp_path):
    (tmp_path / "install").mkdir()
    (tmp_path / "install" / ".env.bak").write_text("A=1\n")
    return run(tmp_path, compose(PG), "OPS-001",
               host={"etc/cron.d/desterlib": "# 0 3 * * * root docker exec desterlib-postgres pg_dump -U dester\n"})


@case("OPS-001", PASS)
def test_ops001_passes_on_a_cron_entry(tmp_path):
    f = run(tmp_path, compose(PG), "OPS-001",
            host={"etc/cron.d/desterlib-backup": "0 3 * * * root docker exec desterlib-postgres pg_dump -U dester "
                                                 "desterlib | gzip > /srv/backup.sql.gz\n"})
    assert f.evidence[0].line == 1
    return f


@case("OPS-001", PASS)
@pytest.mark.parametrize("svc", [
    "  backup:\n    image: prodrigestivill/postgres-backup-local:16\n",
    "  backup:\n    image: postgres:16.4\n    entrypoint: [\"sh\", \"-c\"]\n"
    "    command: [\"while true; do pg_dump -h postgres > /b/db.sql; sleep 86400; done\"]\n",
])
def test_ops001_passes_on_a_backup_service(tmp_path, svc):
    return run(tmp_path, compose(PG, svc), "OPS-001")


# --------------------------------------------------------------------------- live checks


LIVE_IDS = tuple(c.id for c in CATALOG if c.live)


@case(LIVE_IDS, SKIPPED)
@pytest.mark.parametrize("profile", PROFILES)
def test_live_checks_are_skipped_with_a_reason(tmp_path, profile):
    inst = build(tmp_path, compose(PG + '    ports:\n      - "5432:5432"\n', API + '    ports:\n      - "3001:3001"\n'))
    report = run_audit(inst, profile)
    findings = [report.by_id(i) for i in LIVE_IDS]
    for f in findings:
        assert f.reason is not None and ("live" in f.reason or "guard" in f.reason), f.id
    return findings


def test_live_checks_never_pass_on_a_hardened_install(tmp_path):
    inst = build(tmp_path, {**compose(pg_env("${POSTGRES_PASSWORD}"), API_LOCAL),
                            ".env": f"POSTGRES_PASSWORD={STRONG}\n"})
    report = run_audit(inst, "internet")
    for chk in CATALOG:
        if chk.live:
            assert report.by_id(chk.id).status == SKIPPED, chk.id


# --------------------------------------------------------------------------- coverage of the catalog


def test_every_check_has_a_failing_and_a_passing_case():
    missing = []
    for chk in CATALOG:
        cases = CASES[chk.id]
        if chk.live:
            if not cases[SKIPPED]:
                missing.append(f"{chk.id}: no skipped case")
            if cases[PASS]:
                missing.append(f"{chk.id}: a live check must never pass")
            continue
        if not cases[FAIL]:
            missing.append(f"{chk.id}: no failing case")
        if not cases[PASS]:
            missing.append(f"{chk.id}: no passing case")
        if chk.profiles != PROFILES and not cases[SKIPPED]:
            missing.append(f"{chk.id}: no skipped case outside {chk.profiles}")
    assert not missing, missing
    assert set(CASES) == set(BY_ID)
