"""The TLS step in the assistant: domain checked inline, proxy and paths chosen, the generated site
previewed with its login masked (reveal, copy), then review and apply through the session.

The front door's use cases are replaced by recording fakes (the generator and the servers are tested
beside them); the plan a fake builds is a real one, applied by the real engine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from checks.assistant import frontdoor, usecases
from checks.change.plan import FileEdit
from checks.demo import materialize
from checks.proxy.model import Choice, FrontDoor
from checks.proxy.servers import Server

from .apphelpers import make_app, screen_text, settle, wait_in_stack, wait_screen, wait_until

TLS = {"TLS-001", "TLS-002", "TLS-003"}
FAKE_HASH = "$2b$12$abcdefghijklmnopqrstuuPxBDHvz4EdWs5Yi0nEJ6Qb1FqJ2uWdC"


class Fakes:
    """The TLS use cases, recording what the screen asked of them."""

    def __init__(self, monkeypatch, caddy: bool = True, existing: tuple[FrontDoor, ...] = ()) -> None:
        self.plans: list[Choice] = []
        self.kept: list[tuple[Choice, str]] = []
        self.saved: list[Choice | None] = []
        """The front door each apply was asked to record (the use case saves it in the settings)."""
        real_plan = usecases.plan

        def plan(root, profile, **kw):
            choice = kw.pop("front_door", None)
            if choice is None:
                return real_plan(root, profile, **kw)
            self.plans.append(choice)
            planned = real_plan(root, profile, **{**kw, "only": {"TLS-001"}})  # the audits around it
            pw = kw["new_secret"](32)
            site = (f"{choice.domain} {{\n\tbasicauth {{\n\t\tdesterlib {FAKE_HASH}\n\t}}\n"
                    f"\treverse_proxy 127.0.0.1:3001\n}}\n")
            p = planned.plan
            p.refusals.clear()
            p.checks = sorted(TLS)
            p.changes.append(FileEdit(os.path.join(root, "desterlib.caddy"), None, site.encode()))
            p.shown_secrets = {"login": pw}
            p.secrets.add(pw)
            return planned

        servers = {"caddy": Server("caddy", "/usr/bin/caddy" if caddy else None, "2.6.2" if caddy else None, False),
                   "nginx": Server("nginx", "/usr/sbin/nginx", "1.22.1", False)}

        def options(root, *, host_root="/"):
            return frontdoor.Options(servers, "caddy" if caddy else "nginx", None, existing, 3001)

        def keep_password(choice, password):
            self.kept.append((choice, password))
            return frontdoor.Kept(f"the system keyring (dester-harden / proxy:{choice.domain})", True)

        monkeypatch.setattr(usecases, "plan", plan)
        monkeypatch.setattr(frontdoor, "options", options)
        monkeypatch.setattr(frontdoor, "keep_password", keep_password)
        real_apply = usecases.apply

        def apply(root, plan, **kw):
            self.saved.append(kw.get("front_door"))
            return real_apply(root, plan, **kw)

        monkeypatch.setattr(usecases, "apply", apply)


async def open_tls(app, pilot):
    await wait_screen(app, pilot, "WelcomeScreen")
    app.fix_one("tls")
    return await wait_screen(app, pilot, "TLSScreen")


async def type_domain(pilot, app, text: str) -> None:
    for ch in text:
        await pilot.press(ch)
    await settle(app, pilot)


@pytest.fixture
def root(tmp_path) -> str:
    return materialize(str(tmp_path / "inst"))


async def test_the_domain_is_checked_inline_and_nothing_is_planned_until_it_is_valid(root, monkeypatch):
    fakes = Fakes(monkeypatch)
    app = make_app(root, profile="internet")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tls(app, pilot)
        await type_domain(pilot, app, "not_a domain")
        error = screen.query_one("#tls-domain-error")
        assert error.display and "has no dot: give a full host name" in str(error.render())
        assert fakes.plans == [] and app.session.choices.front_door is None
        assert "tls" not in app.session.choices.selected
        for _ in range(len("not_a domain")):
            await pilot.press("backspace")
        await type_domain(pilot, app, "Media.Example.com")
        assert not error.display and str(error.render()) == ""
        assert fakes.plans[-1] == Choice("media.example.com", "caddy")
        assert app.session.choices.selected["tls"] == TLS


async def test_servers_say_installed_or_how_to_install_and_caddy_is_preselected(root, monkeypatch):
    door = FrontDoor("nginx", "/etc/nginx/sites-enabled/default", 3, ("media.example.com",), https=True)
    Fakes(monkeypatch, existing=(door,))
    app = make_app(root, profile="internet")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tls(app, pilot)
        text = screen_text(app)
        assert "Front doors already here" in text and "no login" in text and "serves /api/v1/logs" in text
        caddy = screen.query_one("#tls-proxy-caddy")
        assert caddy.value and "installed 2.6.2" in str(caddy.label)
        assert "installed 1.22.1" in str(screen.query_one("#tls-proxy-nginx").label)


async def test_without_caddy_it_says_how_to_install_it_and_nginx_is_preselected(root, monkeypatch):
    Fakes(monkeypatch, caddy=False)
    app = make_app(root, profile="internet")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tls(app, pilot)
        assert "not installed: apt install caddy" in str(screen.query_one("#tls-proxy-caddy").label)
        assert screen.query_one("#tls-proxy-nginx").value


async def test_proxy_and_paths_reach_the_plan(root, monkeypatch):
    fakes = Fakes(monkeypatch)
    app = make_app(root, profile="internet")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_tls(app, pilot)
        await type_domain(pilot, app, "a.example.org")
        screen.query_one("#tls-proxy-nginx").value = True
        await settle(app, pilot)
        screen.query_one("#tls-open-docs").value = True
        await settle(app, pilot)
        assert fakes.plans[-1] == Choice("a.example.org", "nginx", frozenset({"docs"}))
        # the paths are off by default, each says what it exposes
        assert not screen.query_one("#tls-open-logs").value and not screen.query_one("#tls-open-settings").value
        assert "database password" in str(screen.query_one("#tls-open-logs").label)


async def test_the_login_is_masked_revealed_with_v_copied_with_c(root, monkeypatch):
    Fakes(monkeypatch)
    app = make_app(root, profile="internet")
    copied: list[str] = []
    monkeypatch.setattr(type(app), "copy_to_clipboard", lambda self, text: copied.append(text))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tls(app, pilot)
        await type_domain(pilot, app, "media.example.com")
        pw = app.session.choices.proxy_password
        assert pw and len(pw) >= 43
        text = screen_text(app)
        assert pw not in text and "•" * len(pw) in text and "desterlib /" in text
        assert "basicauth" in text  # the generated configuration as a diff
        assert not any(c.title == "Screenshot" for c in app.get_system_commands(screen))
        screen.query_one("#tls-proxy").focus()  # v and c are typed into the domain field there
        await pilot.press("v")
        assert pw in screen_text(app)
        await pilot.press("c")
        await pilot.press("v")
        assert pw not in screen_text(app)
        assert copied == [pw]
        assert all(pw not in n.message for n in app._notifications)


async def test_review_then_apply_installs_the_planned_front_door_and_keeps_its_login(root, monkeypatch):
    fakes = Fakes(monkeypatch)
    app = make_app(root, profile="internet")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_tls(app, pilot)
        await type_domain(pilot, app, "media.example.com")
        pw = app.session.choices.proxy_password
        screen.query_one("#tls-proxy").focus()
        await pilot.press("n")
        review = await wait_in_stack(app, pilot, "ReviewScreen")
        assert review.steps == ["tls"]
        await wait_screen(app, pilot, "PreviewModal")
        assert pw not in screen_text(app)
        await pilot.press("a")
        await wait_until(pilot, lambda: review.state["tls"] not in ("pending", "applying"), what="applied")
        assert review.state["tls"] == "applied"
        # the review built the plan again: the same choice, the same login
        assert fakes.plans[-1] == Choice("media.example.com", "caddy")
        assert fakes.kept == [(Choice("media.example.com", "caddy"), pw)]
        assert fakes.saved == [Choice("media.example.com", "caddy")]  # recorded by the apply use case
        assert app.session.kept is not None
        await wait_until(pilot, lambda: any("kept in the system keyring" in str(n.message)
                                            for n in app._notifications), what="where the login is kept")
        assert all(pw not in str(n.message) for n in app._notifications)
    assert FAKE_HASH in Path(root, "desterlib.caddy").read_text()


async def test_a_plan_for_a_domain_since_changed_is_not_shown(root, monkeypatch):
    """Typing starts one plan per key; an older one that finishes last must not replace the current one."""
    Fakes(monkeypatch)
    app = make_app(root, profile="internet")
    async with app.run_test(size=(100, 40)) as pilot:
        screen = await open_tls(app, pilot)
        await type_domain(pilot, app, "media.example.com")
        login = screen.login
        screen._show_plan(Choice("media.example.co", "caddy"), "STALE PLAN", "stale-login")
        await pilot.pause()
        assert "STALE PLAN" not in screen_text(app) and screen.login == login
        screen._show_plan(Choice("media.example.com", "caddy"), "CURRENT PLAN", login)
        await pilot.pause()
        assert "CURRENT PLAN" in screen_text(app)
