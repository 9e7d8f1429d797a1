"""Secrets never appear in any output: text, JSON, SARIF, explain, demo, errors.

Each install carries distinctive secrets in a different place. Every run's stdout
and stderr is searched for each secret, its percent-encoded and -decoded forms,
and any 10-character piece of them (also across the text report's line wraps).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from tests.conftest import PROJECT

PW = "Zq8-vN3_secretpw_41xYw2"
DRIFT = "Df2-Xc7_secretdrift_30pLm9"
JWT = "Jw7-Tk2_secretjwt_88qRs5-Lw4"
REDIS = "Rd5-Pq9_secretredis_73mNb1"
B64 = "Hq3vT9xLm2/Rw8KpZ4nY+bF6jD1sGc0="
OVERRIDE = "Ov4-Lm8_secretoverride_19kTz6"
DOLLAR_RAW = "Dl4$$Pw7_secretdollar_62hGx3"  # as written in compose: $$ is a literal $
AT = "At9@Kx2_secretatsign_55pLq7"
SPACED = "Qt6 spaced#secret_47wEr2"

ALL_SECRETS = (PW, DRIFT, JWT, REDIS, B64, OVERRIDE, DOLLAR_RAW, AT, SPACED)


def forms(secret: str) -> set[str]:
    """The secret as written, unescaped, and percent-encoded/decoded."""
    out = {secret, secret.replace("$$", "$"), quote(secret, safe=""), quote(secret), unquote(secret),
           quote(secret, safe="").lower(), json.dumps(secret)[1:-1]}
    return {f for f in out if f}


def pieces(secret: str, n: int = 10) -> set[str]:
    out = set()
    for form in forms(secret):
        if len(form) <= n:
            out.add(form)
        else:
            out.update(form[i:i + n] for i in range(len(form) - n + 1))
    return out


def assert_no_secret(text: str, secrets=ALL_SECRETS, where: str = "") -> None:
    # The text report wraps long lines: look across the wraps too.
    joined = re.sub(r"\n[ \t]*", "", text)
    for secret in secrets:
        for piece in pieces(secret):
            for hay, kind in ((text, "output"), (joined, "output joined across line wraps")):
                if piece in hay:
                    i = hay.index(piece)
                    pytest.fail(f"{where}: a piece of secret {secret[:3]}… ({piece!r}) appears in the {kind}: "
                                f"...{hay[max(0, i - 60):i + 60]!r}...")


# -- installs -----------------------------------------------------------------------------


def write(path: Path, text: str | bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    os.chmod(path, mode)


def cli_inline(root: Path) -> None:
    """The CLI layout: the password inline in a 0644 compose file, a drifted copy in .env."""
    write(root / "docker-compose.yml", f"""\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: {PW}
      POSTGRES_DB: desterlib
    ports:
      - "5432:5432"
  api:
    image: desterlib/api:latest
    environment:
      DATABASE_URL: postgresql://desterlib:{PW}@postgres:5432/desterlib?schema=public
      JWT_SECRET: "{JWT}"
      PORT: 3001
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - ./media:/media
""")
    write(root / ".env", f"DATABASE_URL=postgresql://desterlib:{DRIFT}@postgres:5432/desterlib?schema=public\n"
                         f"POSTGRES_PASSWORD='{DRIFT}'\n")
    write(root / ".env.bak", f"POSTGRES_PASSWORD={PW}\n")


def setup_script(root: Path) -> None:
    """The setup-script layout: env_file apps/api/.env, postgres/postgres, a JWT secret."""
    write(root / "docker-compose.yml", """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: postgres
      POSTGRES_PASSWORD: postgres
      POSTGRES_DB: desterlib_prod
    ports:
      - "5432:5432"
  api:
    build: ./apps/api
    env_file: apps/api/.env
    ports:
      - "3001:3001"
    volumes:
      - /srv/media:/media
""")
    write(root / "apps" / "api" / ".env", f"""\
DATABASE_URL=postgresql://postgres:postgres@postgres:5432/desterlib_prod?schema=public
JWT_SECRET={JWT}
SESSION_TOKEN="{PW}"
PORT=3001
""")


def redis_pass(root: Path) -> None:
    """--requirepass in a command string and a list, REDIS_URL with the password."""
    write(root / "docker-compose.yml", f"""\
services:
  redis:
    image: redis:7-alpine
    command: redis-server --appendonly yes --requirepass {REDIS}
    ports:
      - "6379:6379"
    healthcheck:
      test: ["CMD", "redis-cli", "-a", "{REDIS}", "ping"]
  cache:
    image: redis:7-alpine
    command: ["redis-server", "--requirepass", "{REDIS}"]
    ports:
      - "6380:6379"
  api:
    image: desterlib/api:1.0.0
    environment:
      REDIS_URL: redis://:{REDIS}@redis:6379
      DATABASE_URL: ${{DATABASE_URL}}
""")
    write(root / ".env", f"DATABASE_URL=postgresql://desterlib:{PW}@postgres:5432/desterlib\nREDIS_PASSWORD={REDIS}\n")


def base64_pw(root: Path) -> None:
    """An `openssl rand -base64` password: / and + unencoded in one URL, encoded in another."""
    write(root / "docker-compose.yml", f"""\
services:
  postgres:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}
    ports:
      - "127.0.0.1:5432:5432"
  api:
    image: desterlib/api:1.0.0
    environment:
      DATABASE_URL: "postgresql://desterlib:{B64}@postgres:5432/desterlib?schema=public"
  worker:
    image: desterlib/api:1.0.0
    environment:
      - DATABASE_URL=postgresql://desterlib:{quote(B64, safe='')}@postgres:5432/desterlib
""")
    write(root / ".env", f"POSTGRES_PASSWORD={B64}\n")


def override(root: Path) -> None:
    """The secret only in docker-compose.override.yml, which Compose merges automatically."""
    write(root / "docker-compose.yml", """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:-postgres}
  api:
    image: desterlib/api:1.0.0
    environment:
      DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD:-postgres}@postgres:5432/desterlib
""")
    write(root / "docker-compose.override.yml", f"""\
services:
  postgres:
    environment:
      POSTGRES_PASSWORD: {OVERRIDE}
    ports:
      - "5432:5432"
  api:
    environment:
      DATABASE_URL: postgresql://desterlib:{OVERRIDE}@postgres:5432/desterlib
""")


def odd_chars(root: Path) -> None:
    """$$ escapes, an unencoded @ in a URL, a quoted value with a space and a #, list syntax."""
    write(root / "docker-compose.yml", f"""\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      - POSTGRES_PASSWORD={DOLLAR_RAW}
      - "MYSQL_ROOT_PASSWORD={AT}"
    ports:
      - 5432:5432
  api:
    image: desterlib/api
    environment:
      - DATABASE_URL=postgresql://desterlib:{AT}@postgres:5432/desterlib
      - API_KEY=${{API_KEY}}
""")
    write(root / ".env", f'API_KEY="{SPACED}"\nADMIN_PASSWORD="{SPACED}" # the admin\n', 0o600)


INSTALLS = {f.__name__: f for f in (cli_inline, setup_script, redis_pass, base64_pw, override, odd_chars)}


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(*args: str, env: dict | None = None) -> Run:
    full = dict(os.environ)
    full.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, env=full, cwd=str(PROJECT),
                          timeout=120, stdin=subprocess.DEVNULL)
    # Bytes first: a secret must not appear even in output that fails to decode.
    return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@pytest.fixture(params=sorted(INSTALLS))
def install(request, tmp_path) -> tuple[str, Path, str]:
    root = tmp_path / "install"
    root.mkdir()
    INSTALLS[request.param](root)
    (tmp_path / "host").mkdir()
    return request.param, root, str(tmp_path / "host")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
@pytest.mark.parametrize("profile", ["local", "internet"])
def test_audit_output_never_shows_a_secret(install, fmt, profile):
    name, root, host = install
    r = run("audit", "--dir", str(root), "--host-root", host, "--format", fmt, "--profile", profile)
    assert r.code in (0, 1), r.err
    assert r.err == ""
    assert_no_secret(r.out, where=f"{name} {fmt} {profile}")
    if fmt != "text":
        json.loads(r.out)


def test_secret_findings_are_reported_masked(install):
    """The audit does see these secrets (so masking, not blindness, keeps them out)."""
    name, root, host = install
    r = run("audit", "--dir", str(root), "--host-root", host, "--format", "json")
    doc = json.loads(r.out)
    failed = {f["id"] for f in doc["findings"] if f["status"] == "fail"}
    expected = {
        "cli_inline": {"SEC-002", "SEC-003"},
        "setup_script": {"SEC-001", "NET-001"},
        "redis_pass": {"NET-001"},
        "base64_pw": {"SEC-004"},
        "override": {"NET-001", "SEC-001"},
        "odd_chars": {"SEC-001", "SEC-003"},
    }[name]
    assert expected <= failed, (name, failed)
    texts = [e["text"] for f in doc["findings"] for e in f["evidence"]]
    assert any("••••" in t for t in texts), texts


def test_text_output_with_every_check_and_the_live_notes(install):
    name, root, host = install
    for extra in ((), ("--fail-on", "never"), ("--only", "SEC-001,SEC-002,SEC-003,SEC-004,SEC-005")):
        r = run("audit", "--dir", str(root), "--host-root", host, *extra)
        assert_no_secret(r.out + r.err, where=f"{name} {extra}")


def test_debug_mode_does_not_show_secrets_either(install):
    name, root, host = install
    r = run("audit", "--dir", str(root), "--host-root", host, env={"DESTER_HARDEN_DEBUG": "1"})
    assert_no_secret(r.out + r.err, where=name)


def test_setup_script_database_url_is_masked_readably(tmp_path):
    setup_script(tmp_path)
    (tmp_path / "host").mkdir()
    r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path / "host"), "--format", "json")
    doc = json.loads(r.out)
    texts = [e["text"] for f in doc["findings"] for e in f["evidence"] if e["file"] == "apps/api/.env"]
    urls = [t for t in texts if t.startswith("DATABASE_URL=")]
    assert urls, texts
    for t in urls:
        assert "postgres:••••@postgres" in t, t
        assert "postgres:postgres@" not in t
    text = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path / "host")).out
    assert "postgresql://postgres:••••@postgres:5432" in re.sub(r"\n\s*", "", text)
    assert "postgres:postgres@" not in re.sub(r"\n\s*", "", text)


@pytest.mark.parametrize("env", [{"LC_ALL": "C"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}, {"PYTHONIOENCODING": "ascii"}],
                         ids=["LC_ALL=C", "LC_ALL=C-no-utf8-mode", "ascii-io"])
def test_ascii_stdout_masks_with_stars(tmp_path, env):
    setup_script(tmp_path)
    (tmp_path / "host").mkdir()
    r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path / "host"), env=env)
    assert r.code == 1, r.err
    assert "Traceback" not in r.err and r.err == ""
    assert "postgres:****@postgres" in re.sub(r"\n\s*", "", r.out)
    assert "••••" not in r.out
    assert_no_secret(r.out)
    if env.get("PYTHONUTF8") == "0" or "PYTHONIOENCODING" in env:
        r.out.encode("ascii")  # the stream really was ASCII and nothing crashed


@pytest.mark.parametrize("env", [{"LC_ALL": "C"}, {"LC_ALL": "C", "PYTHONUTF8": "0"}], ids=["utf8-mode", "ascii"])
def test_ascii_locale_json_and_demo_do_not_crash(tmp_path, env):
    cli_inline(tmp_path)
    (tmp_path / "host").mkdir()
    for fmt in ("json", "sarif"):
        r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path / "host"), "--format", fmt, env=env)
        assert r.code == 1 and r.err == "", r.err
        json.loads(r.out)
        assert_no_secret(r.out)
    r = run("demo", env={**env, "TMPDIR": str(tmp_path)})
    assert r.code == 0 and "Traceback" not in r.err
    assert "desterlib:postgres@" not in r.out


def test_explain_and_demo_never_show_secrets(tmp_path):
    cli_inline(tmp_path / "install")
    env = {"DESTERLIB_DIR": str(tmp_path / "install"), "TMPDIR": str(tmp_path)}
    for args in (("explain",), ("explain", "--score"), ("explain", "SEC-001"), ("explain", "BOGUS"),
                 ("demo",), ("demo", "--format", "json"), ("demo", "--format", "sarif"), ("--help",)):
        r = run(*args, env=env)
        assert r.code in (0, 2)
        assert_no_secret(r.out + r.err, where=" ".join(args))
    # The demo's own password is the default `postgres`: masked structurally.
    r = run("demo", env=env)
    joined = re.sub(r"\n\s*", "", r.out)
    assert "desterlib:••••@postgres" in joined
    assert "desterlib:postgres@" not in joined
    assert "POSTGRES_PASSWORD: ••••" in r.out


# -- bad input carrying a secret on the failing line --------------------------------------------

_BASE = """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
{line}
"""

BROKEN_COMPOSE = {
    "unterminated-quote": f'      POSTGRES_PASSWORD: "{PW}\n      X: y',
    "undefined-alias": f"      POSTGRES_PASSWORD: *{PW.replace('-', '')}",
    "unknown-tag-handle": f"      POSTGRES_PASSWORD: !{PW[:3]}!{PW[3:]}",
    "bad-escape": f'      POSTGRES_PASSWORD: "{PW[:5]}\\q{PW[5:]}"',
    "tab": f"\tPOSTGRES_PASSWORD: {PW}",
    "duplicate": f"      POSTGRES_PASSWORD: {PW}\n      POSTGRES_PASSWORD: {PW}",
    "bad-indent": f"      POSTGRES_PASSWORD: {PW}\n     DATABASE_URL: postgresql://u:{PW}@db/x",
    "flow": f"      POSTGRES_PASSWORD: [{PW}",
    "colon": f"      POSTGRES_PASSWORD: {PW}: {PW}",
    "anchor-chars": f"      POSTGRES_PASSWORD: &{PW}@x y",
}


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_yaml_errors_never_echo_the_failing_line(tmp_path, case):
    write(tmp_path / "docker-compose.yml", _BASE.format(line=BROKEN_COMPOSE[case]))
    r = run("audit", "--dir", str(tmp_path))
    assert r.code == 2, (case, r.out[:200])
    assert r.err.count("\n") == 1 and "docker-compose.yml" in r.err
    assert_no_secret(r.out + r.err, secrets=(PW, PW.replace("-", ""), PW.replace("-", "_")), where=case)


@pytest.mark.parametrize("case", sorted(BROKEN_COMPOSE))
def test_yaml_errors_never_echo_the_failing_line_without_libyaml(monkeypatch, case):
    """PyYAML's pure-Python parser quotes the offending token in its messages; libyaml does not."""
    import yaml

    from checks.core import yamlpos
    from checks.core.errors import InputError

    monkeypatch.setattr(yamlpos, "_Loader", yaml.SafeLoader)
    with pytest.raises(InputError) as info:
        yamlpos.parse_yaml(_BASE.format(line=BROKEN_COMPOSE[case]), "docker-compose.yml")
    assert_no_secret(str(info.value), secrets=(PW, PW.replace("-", ""), PW.replace("-", "_")), where=case)
    assert str(info.value).startswith("docker-compose.yml:")


BROKEN_BYTES = {
    "invalid-utf8": b"      POSTGRES_PASSWORD: " + PW[:8].encode() + b"\xff" + PW[8:].encode(),
    "nul": b"      POSTGRES_PASSWORD: " + PW.encode() + b"\x00",
    "mid-bom": b"      POSTGRES_PASSWORD: \xef\xbb\xbf" + PW.encode(),
}


@pytest.mark.parametrize("case", sorted(BROKEN_BYTES))
def test_byte_errors_never_echo_the_failing_line(tmp_path, case):
    data = _BASE.encode().replace(b"{line}", BROKEN_BYTES[case])
    write(tmp_path / "docker-compose.yml", data)
    r = run("audit", "--dir", str(tmp_path))
    assert r.code == 2
    assert "docker-compose.yml:5:" in r.err
    assert_no_secret(r.out + r.err, secrets=(PW,), where=case)


@pytest.mark.parametrize("line", [
    f"POSTGRES_PASSWORD {PW}",
    f"DATABASE_URL postgresql://u:{PW}@postgres/x",
    f"export POSTGRES_PASSWORD='{PW}",
])
def test_env_errors_never_echo_the_failing_line(tmp_path, line):
    write(tmp_path / "docker-compose.yml", "services:\n  api:\n    image: desterlib/api:1.0.0\n")
    write(tmp_path / ".env", f"PORT=3001\n{line}\nNODE_ENV=production\n")
    r = run("audit", "--dir", str(tmp_path))
    assert r.code == 2, (line, r.out[:300])
    assert ".env:2" in r.err
    assert_no_secret(r.out + r.err, secrets=(PW,))


def test_bare_word_in_env_file_is_not_echoed(tmp_path):
    # A line without '=' is a variable taken from the environment (valid), not an error.
    write(tmp_path / "docker-compose.yml", "services:\n  api:\n    image: desterlib/api:1.0.0\n")
    write(tmp_path / ".env", f"PORT=3001\n{PW}\nNODE_ENV=production\n")
    for fmt in ("text", "json", "sarif"):
        r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path), "--format", fmt)
        assert r.code in (0, 1), r.err
        assert_no_secret(r.out + r.err, secrets=(PW,))


def test_env_file_naming_a_missing_compose_file_with_a_secret_elsewhere(tmp_path):
    write(tmp_path / "docker-compose.yml", "services:\n  api:\n    image: desterlib/api:1.0.0\n")
    write(tmp_path / ".env", f"POSTGRES_PASSWORD={PW}\nCOMPOSE_FILE=missing.yml\n")
    r = run("audit", "--dir", str(tmp_path))
    assert r.code == 2 and ".env:2" in r.err
    assert_no_secret(r.out + r.err, secrets=(PW,))


def test_unparseable_port_with_a_secret_is_not_echoed(tmp_path):
    write(tmp_path / "docker-compose.yml", f"""\
services:
  api:
    image: desterlib/api:1.0.0
    environment:
      POSTGRES_PASSWORD: {PW}
    ports:
      - "{PW}:3001"
""")
    r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path))
    assert r.code in (0, 1, 2)
    assert "Traceback" not in r.err
    assert_no_secret(r.out + r.err, secrets=(PW,))


# -- every form a secret is written in (issue 8, item 6) ------------------------------------

ESC_DQ = 'Ab"Cd_escdq_9981'          # YAML "Ab\"Cd_escdq_9981"
ESC_SQ = "Ef'Gh_escsq_7712"          # YAML 'Ef''Gh_escsq_7712'
ENV_ESC = "Gh\"Ij'Kl\nMn_envesc_6671"  # .env "Gh\"Ij\'Kl\nMn_envesc_6671" (python-dotenv's escapes)
FOLD_1, FOLD_2 = "Fold1_lnsecret_aa3", "Fold2_lnsecret_bb4"
BLOCK_1, BLOCK_2 = "Blk1_lnsecret_cc5", "Blk2_lnsecret_dd6"
SHORT = "Q§"                         # two characters
URL_TOKEN = "Tk9_urltoken_11x"
QUERY_TOKENS = ("Qy7_querytok_22x", "Ac3_accesstok_33x", "Ak4_apikeyq_44x")
BEARER = "Br5_bearertok_55x"
FORM_SECRETS = (ESC_DQ, ESC_SQ, ENV_ESC, "Mn_envesc_6671", FOLD_1, FOLD_2, BLOCK_1, BLOCK_2, SHORT, URL_TOKEN,
                *QUERY_TOKENS, BEARER)


def secret_forms(root: Path) -> None:
    """Each way a secret is written that a decoded-value match misses, under keys the heuristics miss too."""
    write(root / "docker-compose.yml", f"""\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: "Ab\\"Cd_escdq_9981"
      MYSQL_PASSWORD: 'Ef''Gh_escsq_7712'
      SIGNING_SECRET: >
        {FOLD_1}
        {FOLD_2}
      PRIVATE_KEY: |
        {BLOCK_1}
        {BLOCK_2}
    ports:
      - "5432:5432"
  redis:
    image: redis:7-alpine
    environment:
      REDIS_PASSWORD: {SHORT}
    healthcheck:
      test: ["CMD", "redis-cli", "-a", "{SHORT}", "ping"]
  api:
    image: desterlib/api:1.0.0
    environment:
      WEBHOOK: https://hook:{URL_TOKEN}@hooks.example.com/x
      CALLBACK: https://example.com/cb?token={QUERY_TOKENS[0]}&x=1
      FEED: https://example.com/feed?access_token={QUERY_TOKENS[1]}
      OTHER: "https://example.com/o?v=2&api_key={QUERY_TOKENS[2]}"
      UPSTREAM_HEADER: "Authorization: Bearer {BEARER}"
    ports:
      - "0.0.0.0:3001:3001"
""")
    write(root / ".env", 'APP_PASSWORD="Gh\\"Ij\\\'Kl\\nMn_envesc_6671"\nNODE_ENV=production\n')


def test_the_forms_install_is_what_it_says(tmp_path):
    """The fixture's secrets decode to the values the tests look for (else the tests below prove nothing)."""
    from checks.install.discovery import discover

    secret_forms(tmp_path)
    inst = discover(str(tmp_path))
    postgres, redis = inst.service("postgres"), inst.service("redis")
    app_password = inst.env_files[0].get("APP_PASSWORD")
    assert postgres is not None and redis is not None and app_password is not None
    pg = postgres.environment
    assert pg["POSTGRES_PASSWORD"].value == ESC_DQ and pg["MYSQL_PASSWORD"].value == ESC_SQ
    assert pg["SIGNING_SECRET"].value == f"{FOLD_1} {FOLD_2}\n" and pg["PRIVATE_KEY"].value == f"{BLOCK_1}\n{BLOCK_2}\n"
    assert redis.environment["REDIS_PASSWORD"].value == SHORT
    assert app_password.value == ENV_ESC


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_every_written_form_is_masked_in_the_audit(tmp_path, fmt):
    secret_forms(tmp_path)
    r = run("audit", "--dir", str(tmp_path), "--host-root", str(tmp_path), "--format", fmt, "--fail-on", "never")
    assert r.code == 0, r.err
    assert_no_secret(r.out + r.err, secrets=FORM_SECRETS, where=fmt)


def test_every_written_form_is_masked_in_the_plan_and_the_journal(tmp_path):
    root = tmp_path / "install"
    secret_forms(root)
    before = {p: p.read_bytes() for p in root.iterdir()}
    r = run("fix", "--dir", str(root), "--host-root", str(tmp_path), "--dry-run")
    assert r.code in (0, 1), r.err
    assert "@@ " in r.out  # a real diff was shown
    assert_no_secret(r.out + r.err, secrets=FORM_SECRETS, where="fix --dry-run")
    r = run("fix", "--dir", str(root), "--host-root", str(tmp_path), "--yes")
    assert r.code in (0, 1), r.err
    assert_no_secret(r.out + r.err, secrets=FORM_SECRETS, where="fix --yes")
    journal = [p for p in (root / ".dester-harden").rglob("*") if p.is_file()]
    assert any(p.name.startswith("b") for p in journal)
    for path in journal:
        assert_no_secret(path.read_bytes().decode("utf-8", "replace"), secrets=FORM_SECRETS, where=str(path))
    for cmd in (("history",), ("undo", "--dry-run")):
        r = run(*cmd, "--dir", str(root))
        assert r.code == 0, r.err
        assert_no_secret(r.out + r.err, secrets=FORM_SECRETS, where=" ".join(cmd))
    r = run("undo", "--dir", str(root), "--yes")
    assert r.code == 0, r.err
    assert_no_secret(r.out + r.err, secrets=FORM_SECRETS, where="undo")
    assert {p: p.read_bytes() for p in root.iterdir() if p.name != ".dester-harden"} == before


def test_the_assistant_masks_every_written_form(tmp_path):
    import asyncio

    from tests.apphelpers import make_app, screen_text, wait_screen

    secret_forms(tmp_path)
    seen: list[str] = []

    async def go():
        app = make_app(str(tmp_path), host_root=str(tmp_path))
        async with app.run_test(size=(120, 50)) as pilot:
            await wait_screen(app, pilot, "WelcomeScreen")
            await pilot.press("enter")
            from tests.apphelpers import STEP_SCREENS

            for name in STEP_SCREENS:
                await wait_screen(app, pilot, name)
                seen.append(screen_text(app))
                await pilot.press("n")
            await wait_screen(app, pilot, "PreviewModal")
            seen.append(screen_text(app))

    asyncio.run(go())
    text = "\n".join(seen)
    assert "@@" in text or "+ " in text  # a preview with diff lines was read
    assert_no_secret(text, secrets=FORM_SECRETS, where="assistant")


def test_short_secrets_are_masked_as_words_only():
    from checks.core.secrets import Masker

    m = Masker({"x7", "postgres"}, "****")
    assert m.text('test: ["CMD", "redis-cli", "-a", "x7", "ping"]') == (
        'test: ["CMD", "redis-cli", "-a", "****", "ping"]')

    assert m.text("KEY=x7 and x7") == "KEY=**** and ****"
    # Inside other words, hashes and numbers it is not the secret: those stay readable.
    assert m.text("image: 0x7f, xx7, x7y, sha256:ab0x7") == "image: 0x7f, xx7, x7y, sha256:ab0x7"
    assert m.text("image: postgres:15") == "image: postgres:15"  # common values: structural masking only
    assert m.line("POSTGRES_PASSWORD: postgres") == "POSTGRES_PASSWORD: ****"


@pytest.mark.parametrize("line, shown", [
    ('PASSWORD: "ab\\"cd"  # note', 'PASSWORD: "****"  # note'),
    ("PASSWORD: 'ab''cd'", "PASSWORD: '****'"),
    ('PASSWORD="ab\\"cd\\\'ef"', 'PASSWORD="****"'),
    ('PASSWORD: "starts here', 'PASSWORD: "****'),
    ("SECRET: >-", "SECRET: >-"),
    ("URL: https://x.org/a?b=1&access_token=abcdef&c=2", "URL: https://x.org/a?b=1&access_token=****&c=2"),
    ("H: Bearer abc.def-ghi", "H: Bearer ****"),
    ("URL: https://x.org/?token=${TOKEN}", "URL: https://x.org/?token=${TOKEN}"),
])
def test_structural_masking_of_escaped_and_positional_secrets(line, shown):
    from checks.core.secrets import Masker

    assert Masker((), "****").line(line) == shown


@pytest.mark.parametrize("line", ["Bearer tokens expire", "Basic Authentication at the proxy",
                                  "1 failed, 42 passed, 3 skipped", "docker-compose.yml:42 [api]  PORT: 42"])
def test_positional_and_short_masking_leaves_prose_and_numbers_readable(line):
    """A short numeric secret is masked at its key only: as a word it is every count and line number."""
    from checks.core.secrets import Masker

    assert Masker({"42", "x7"}, "****").text(line) == line
