"""The TLS fixer as a plan: refusals that say what to do, a broken configuration never planned, the
login generated once and kept on a re-run, the rebinding recreated behind the health gate, and the
password nowhere in the files or the journal. The validator is the real installed Caddy or nginx."""

from __future__ import annotations

import os
from pathlib import Path

import bcrypt
import pytest

from checks.assistant import usecases
from checks.change.plan import Command, FileEdit, Link, Recreate
from checks.demo import materialize
from checks.fix import tls
from checks.proxy import generate
from checks.proxy.model import Choice
from tests.proxylab import ProxyLab
from tests.test_fix_live import live

DOMAIN = "media.example.com"
ONLY = {"TLS-001", "TLS-002", "TLS-003"}
DEBIAN_CADDYFILE = ("# The Caddyfile is an easy way to configure your Caddy web server.\n\n:80 {\n"
                    "\t# Set this path to your site's directory.\n\troot * /usr/share/caddy\n\n"
                    "\t# Enable the static file server.\n\tfile_server\n}\n")


def fixed_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), b"$2b$04$abcdefghijklmnopqrstuu").decode()


@pytest.fixture
def caddy_root(tmp_path: Path) -> str:
    ProxyLab.require("caddy")
    root = tmp_path / "root"
    (root / "etc" / "caddy").mkdir(parents=True)
    (root / "etc" / "caddy" / "Caddyfile").write_text(DEBIAN_CADDYFILE)
    (root / "etc" / "group").write_text("root:x:0:\ncaddy:x:995:\n")
    return str(root)


CADDY = Choice(DOMAIN, "caddy")


def _plan(install: str, root: str, choice: Choice | None = CADDY, **kw):
    return usecases.plan(install, kw.pop("profile", "internet"), only=ONLY, host_root=root, front_door=choice,
                         hasher=fixed_hash, **kw).plan


def test_without_a_choice_each_failing_tls_check_says_how_to_give_one(tmp_path, caddy_root):
    plan = _plan(materialize(str(tmp_path / "srv")), caddy_root, None)
    assert not plan.system and not plan.changes
    assert plan.refusals and all("--domain D --proxy caddy" in r.reason for r in plan.refusals)


def test_a_missing_server_is_a_refusal_with_the_install_command(tmp_path, caddy_root, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    plan = _plan(materialize(str(tmp_path / "srv")), caddy_root, Choice(DOMAIN, "nginx"))
    assert not plan.system
    assert any("apt install nginx" in r.reason for r in plan.refusals)


def test_a_configuration_the_server_rejects_is_never_planned(tmp_path, caddy_root, monkeypatch):
    real = generate.caddy_site
    monkeypatch.setattr(generate, "caddy_site", lambda req: real(req).replace("reverse_proxy", "reverse_prxy", 1))
    plan = _plan(materialize(str(tmp_path / "srv")), caddy_root)
    assert not plan.system and not [c for c in plan.changes if isinstance(c, Command)]
    assert any("does not validate" in r.reason and "reverse_prxy" in r.reason for r in plan.refusals)


def test_the_plan_holds_the_site_the_validation_and_the_login_once(tmp_path, caddy_root):
    install = materialize(str(tmp_path / "srv"))
    plan = _plan(install, caddy_root)
    assert plan.system == [os.path.join(caddy_root, "etc/caddy")]
    (password,) = plan.shown_secrets.values()
    site = next(c for c in plan.changes if isinstance(c, FileEdit) and c.path.endswith("Caddyfile"))
    text = site.after.decode()
    found = tls._HASH.search(text)
    assert found is not None and password not in text
    assert bcrypt.checkpw(password.encode(), found.group(0).encode())
    assert "respond @blocked 403" in text and "basicauth" in text
    assert password in plan.secrets
    commands = [c for c in plan.changes if isinstance(c, Command)]
    assert commands[-1].description.startswith("validate")  # the server is not running: no reload
    assert any("not running" in n for n in plan.notes)


def test_a_rerun_keeps_the_login_and_changes_nothing(tmp_path, caddy_root):
    install = materialize(str(tmp_path / "srv"))
    choice = Choice(DOMAIN, "caddy")
    planned = _plan(install, caddy_root, choice)
    usecases.apply(install, planned, command="fix", profile="internet", host_root=caddy_root, front_door=choice)
    again = usecases.plan(install, "internet", only=ONLY, host_root=caddy_root, hasher=fixed_hash).plan  # saved
    assert not again.shown_secrets and not again.system and not again.refusals  # nothing fails any more
    named = _plan(install, caddy_root, choice)  # named again: set up again, found in place
    assert not named.shown_secrets and not named.system
    assert any("already in place" in n for n in named.notes)
    opened = _plan(install, caddy_root, Choice(DOMAIN, "caddy", frozenset({"docs"})))
    assert not opened.shown_secrets  # other opt-ins: the site changes, the login stays
    edit = next(c for c in opened.changes if isinstance(c, FileEdit) and c.path.endswith("Caddyfile"))
    assert "/api/docs" not in edit.after.decode().split("@blocked path", 1)[1].split("\n", 1)[0]


def test_the_password_is_in_no_file_and_no_journal(tmp_path, caddy_root):
    install = materialize(str(tmp_path / "srv"))
    choice = Choice(DOMAIN, "caddy")
    planned = _plan(install, caddy_root, choice)
    (password,) = planned.shown_secrets.values()
    usecases.apply(install, planned, command="fix", profile="internet", host_root=caddy_root, front_door=choice)
    state = os.environ["DESTER_HARDEN_STATE_DIR"]
    for top in (install, caddy_root, state):
        for dirpath, _, files in os.walk(top):
            for name in files:
                with open(os.path.join(dirpath, name), "rb") as fh:
                    assert password.encode() not in fh.read(), os.path.join(dirpath, name)


def test_a_running_api_is_rebound_and_recreated_around_the_front_door(tmp_path, caddy_root):
    install = materialize(str(tmp_path / "srv"))
    plan = _plan(install, caddy_root, live=live("postgres", "redis", "api"))
    kinds = [type(c).__name__ for c in plan.changes]
    assert isinstance(plan.changes[0], Recreate) and plan.changes[0].when == "rollback"
    assert isinstance(plan.changes[-1], Recreate) and plan.changes[-1].when == "apply"
    assert "api" in plan.changes[-1].services
    # The compose edit, then the front door's files, then its validation: all inside the pair.
    first_system = next(i for i, c in enumerate(plan.changes) if isinstance(c, FileEdit) and "etc/caddy" in c.path)
    compose = next(i for i, c in enumerate(plan.changes) if isinstance(c, FileEdit) and c.path.endswith(".yml"))
    assert compose < first_system < kinds.index("Command") < len(kinds) - 1


def test_a_public_front_door_needs_the_internet_profile(tmp_path, caddy_root):
    plan = _plan(materialize(str(tmp_path / "srv")), caddy_root, profile="local")
    assert not plan.system
    assert any("internet profile" in r.reason for r in plan.refusals)


def test_nginx_plans_the_enabled_link_and_a_placeholder_certificate(tmp_path):
    ProxyLab.require("nginx")
    root = tmp_path / "root"
    conf = root / "etc" / "nginx"
    (conf / "sites-available").mkdir(parents=True)
    (conf / "sites-enabled").mkdir()
    (conf / "nginx.conf").write_text("events {}\nhttp {\n\tinclude /etc/nginx/sites-enabled/*;\n}\n")
    (root / "etc" / "group").write_text("root:x:0:\nwww-data:x:33:\n")
    plan = _plan(materialize(str(tmp_path / "srv")), str(root), Choice(DOMAIN, "nginx"))
    assert not plan.refusals, plan.refusals
    (link,) = [c for c in plan.changes if isinstance(c, Link)]
    assert link.target == "../sites-available/desterlib"
    files = {os.path.basename(c.path): c for c in plan.changes if isinstance(c, FileEdit)}
    assert (files["desterlib.htpasswd"].mode, files["desterlib.htpasswd"].owner) == (0o640, (0, 33))
    assert (files["desterlib-selfsigned.key"].mode, files["desterlib-selfsigned.key"].owner) == (0o600, (0, 0))
    key = files["desterlib-selfsigned.key"].after.decode()
    assert any(s in key for s in plan.secrets if "PRIVATE KEY" in s)  # masked in previews, not in the journal
    assert any("certbot certonly --webroot -w /var/www/html -d " + DOMAIN in n for n in plan.notes)


def test_a_path_opened_behind_the_login_passes_tls_003_as_the_users_choice(tmp_path, caddy_root):
    from checks.audit.run import run_audit
    from checks.install.discovery import discover

    install = materialize(str(tmp_path / "srv"))
    choice = Choice(DOMAIN, "caddy", frozenset({"docs"}))
    planned = _plan(install, caddy_root, choice)
    usecases.apply(install, planned, command="fix", profile="internet", host_root=caddy_root, front_door=choice)
    report = run_audit(discover(install, host_root=caddy_root), "internet")
    tls_003 = next(f for f in report.findings if f.id == "TLS-003")
    assert tls_003.status == "pass"
    assert "behind the login, as you chose" in (tls_003.evidence[0].note or "")
    # The same words in a site dester-harden did not write are no choice of the user's.
    site = Path(caddy_root, "etc/caddy/Caddyfile")
    site.write_text(site.read_text().replace("Generated by dester-harden", "Written by hand"))
    report = run_audit(discover(install, host_root=caddy_root), "internet")
    assert next(f for f in report.findings if f.id == "TLS-003").status == "fail"
