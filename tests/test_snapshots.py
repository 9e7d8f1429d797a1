"""Snapshot tests of every screen: 80x24, the main ones also at 120x40 and under NO_COLOR.

The SVGs live in snapshots/test_snapshots/ (see conftest). Everything that
could change between runs is fixed: the install path as shown (each test
installs into its own temporary directory), the host name, the
clock, the time zone, the generated password (masked anyway: no secret is
ever in a snapshot), transaction ids, cursor blink.
Review a failure with the HTML report pytest prints, then run
``pytest tests/test_snapshots.py --snapshot-update`` in a clean environment.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest

from checks.demo import materialize
from tests.apphelpers import (
    STEP_SCREENS,
    answer_previews,
    demo_live,
    harden,
    make_app,
    settle,
    ufw_bypassed,
    ufw_sysroot,
    wait_in_stack,
    wait_screen,
    wait_until,
    walk_to_review,
)

#: How the screens name the install directory: each test has its own temporary
#: one, shown as this fixed path (as the host name and the clock are fixed).
SHOWN_ROOT = "/tmp/dester-harden-snapshot/.desterlib"

MAIN = (80, 24)
BIG = (120, 40)


@pytest.fixture
def install(tmp_path, monkeypatch):
    root = materialize(str(tmp_path))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    counter = itertools.count(1)
    # Transaction ids carry the wall clock and random digits: fixed here.
    monkeypatch.setattr("checks.change.engine.new_txn_id",
                        lambda: f"20261118T12{next(counter):02d}00-00000{next(counter) % 10}")
    yield root
    monkeypatch.delenv("TZ")
    time.tzset()


def _harden(root: str, regress: bool = True) -> None:
    harden(root, now=lambda: 1_795_000_000.0)
    if regress:
        os.chmod(os.path.join(root, ".env"), 0o644)


def _keys_to(*names):
    """run_before: from the welcome screen, Enter, then n until each named screen (the last one stays)."""
    async def run(pilot):
        app = pilot.app
        await wait_screen(app, pilot, "WelcomeScreen")
        await pilot.press("enter")
        for i, name in enumerate(names):
            await wait_screen(app, pilot, name)
            if i < len(names) - 1:
                await pilot.press("n")
        await settle(app, pilot)
    return run


STEPS = STEP_SCREENS


async def _on_welcome(pilot):
    await wait_screen(pilot.app, pilot, "WelcomeScreen")


async def _first_preview(pilot):
    await _keys_to(*STEPS)(pilot)
    await pilot.press("n")
    await wait_screen(pilot.app, pilot, "PreviewModal")


async def _review_done(pilot):
    await walk_to_review(pilot.app, pilot)
    await answer_previews(pilot.app, pilot, "a")
    await settle(pilot.app, pilot)


async def _summary(pilot):
    await _review_done(pilot)
    await pilot.press("n")
    await wait_screen(pilot.app, pilot, "SummaryScreen")


async def _reaudit(pilot):
    await wait_screen(pilot.app, pilot, "ReauditScreen")


async def _history(pilot):
    await wait_screen(pilot.app, pilot, "ReauditScreen")
    await pilot.press("h")
    await wait_screen(pilot.app, pilot, "HistoryScreen")


async def _undo_modal(pilot):
    await _history(pilot)
    await pilot.press("u")
    await wait_screen(pilot.app, pilot, "UndoModal")


async def _help(pilot):
    await _keys_to("NetworkScreen")(pilot)
    await pilot.press("f1")
    await wait_screen(pilot.app, pilot, "HelpScreen")


# name -> (run_before, needs a hardened install, profile, main screen)
SCREENS = {
    "welcome": (_on_welcome, False, None, True),
    "network": (_keys_to("NetworkScreen"), False, None, True),
    "password": (_keys_to("NetworkScreen", "PasswordScreen"), False, None, True),
    "permissions": (_keys_to("NetworkScreen", "PasswordScreen", "PermissionsScreen"), False, None, False),
    "containers": (_keys_to(*STEPS[:4]), False, None, False),
    "firewall": (_keys_to(*STEPS[:5]), False, None, False),
    "backups": (_keys_to(*STEPS), False, None, False),
    "preview": (_first_preview, False, None, True),
    "review": (_review_done, False, None, False),
    "summary": (_summary, False, None, True),
    "reaudit": (_reaudit, True, None, True),
    "history": (_history, True, None, False),
    "undo": (_undo_modal, True, None, False),
    "help": (_help, False, None, False),
}

CASES = [(name, MAIN, False) for name in SCREENS]
CASES += [(name, BIG, False) for name, spec in SCREENS.items() if spec[3]]
CASES += [(name, MAIN, True) for name, spec in SCREENS.items() if spec[3]]


@pytest.mark.parametrize(("name", "size", "no_color"), CASES,
                         ids=[f"{n}-{w}x{h}{'-nocolor' if nc else ''}" for n, (w, h), nc in CASES])
def test_screen(name, size, no_color, install, snap_compare, monkeypatch):
    run_before, hardened, profile, _ = SCREENS[name]
    if hardened:
        _harden(install)
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    app = make_app(install, profile=profile, shown_root=SHOWN_ROOT)
    assert snap_compare(app, terminal_size=size, run_before=_without_toasts(run_before))


def _without_toasts(run_before):
    """Toasts vanish on a timer: a snapshot must not depend on how fast the machine is."""
    async def run(pilot):
        await run_before(pilot)
        pilot.app.clear_notifications()
        await pilot.pause()
    return run


def test_too_small_notice(install, snap_compare):
    assert snap_compare(make_app(install, shown_root=SHOWN_ROOT), terminal_size=(70, 20), run_before=_on_welcome)


# -- the live system (a fixed fake LiveState: no Docker, no clock) -----------------------------

LIVE_STATES = {
    "docker": lambda root: demo_live(root),
    "nodocker": lambda root: demo_live(root, reachable=False),
    "ufw": lambda root: demo_live(root, firewall=ufw_bypassed()),
}


def _live(run_before):
    """run_before, once the live state has arrived and what it set off (the welcome's re-audit) is done."""
    async def run(pilot):
        await wait_until(pilot, lambda: pilot.app.live_ready, what="the live state")
        await settle(pilot.app, pilot)
        await run_before(pilot)
    return run


LIVE_SCREENS = {"welcome": _on_welcome, "network": _keys_to("NetworkScreen"), "firewall": SCREENS["firewall"][0],
                "password": _keys_to("NetworkScreen", "PasswordScreen")}
LIVE_CASES = [(name, state, MAIN, False) for name in LIVE_SCREENS for state in LIVE_STATES]
LIVE_CASES = [c for c in LIVE_CASES if "ufw" not in c[:2] and "firewall" not in c[:2]]
LIVE_CASES += [("welcome", "nodocker", MAIN, True), ("network", "docker", MAIN, True), ("firewall", "ufw", MAIN, False)]


@pytest.mark.parametrize(("name", "state", "size", "no_color"), LIVE_CASES,
                         ids=[f"{n}-{s}-{w}x{h}{'-nocolor' if nc else ''}" for n, s, (w, h), nc in LIVE_CASES])
def test_live_screen(name, state, size, no_color, install, snap_compare, monkeypatch, tmp_path):
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    # the firewall's plan reads /etc/ufw: a fixed copy under --root, not this machine's
    host_root = ufw_sysroot(tmp_path) if state == "ufw" else "/"
    app = make_app(install, shown_root=SHOWN_ROOT, live_state=LIVE_STATES[state], host_root=host_root)
    assert snap_compare(app, terminal_size=size, run_before=_without_toasts(_live(LIVE_SCREENS[name])))


def test_progress_mid_apply(install, snap_compare, monkeypatch):
    """The review while the first step recreates a service: the reporter's last words and elapsed time."""
    app = make_app(install, shown_root=SHOWN_ROOT)
    release = threading.Event()

    def apply(step_plan, report=None):
        report("recreating api", 0.4)
        report("waiting for api to be healthy", 3.1)
        release.wait(60)  # until the snapshot is taken (the app's exit releases it)
        raise RuntimeError("stopped by the test")

    monkeypatch.setattr(app.session, "apply", apply)
    exit_app = app.exit

    def exit_and_release(*args, **kwargs):
        release.set()
        return exit_app(*args, **kwargs)

    monkeypatch.setattr(app, "exit", exit_and_release)

    async def run(pilot):
        await walk_to_review(pilot.app, pilot)
        review = await wait_in_stack(pilot.app, pilot, "ReviewScreen")
        await wait_screen(pilot.app, pilot, "PreviewModal")
        await pilot.press("a")
        progress = review.query_one("#review-progress")
        await wait_until(pilot, lambda: "waiting for api" in str(progress.render()), what="the progress line")
        await pilot.pause()

    assert snap_compare(app, terminal_size=MAIN, run_before=_without_toasts(run))


def test_confirm_modal(install, snap_compare, monkeypatch):
    """A plan's confirmation before it recreates the API (the stack part's prisma question), No focused."""
    app = make_app(install, shown_root=SHOWN_ROOT)
    real_plan = app.session.plan

    def plan(step, checks=None, profile=None, preview=False):
        sp = real_plan(step, checks, profile, preview)
        if not preview and not sp.plan.empty:
            sp.plan.confirm = ["recreating api runs `prisma db push --accept-data-loss` at start; no backup "
                               "younger than 24 h was found (OPS-001 looks for them); go on?"]
        return sp

    monkeypatch.setattr(app.session, "plan", plan)

    async def run(pilot):
        await walk_to_review(pilot.app, pilot)
        await wait_screen(pilot.app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_screen(pilot.app, pilot, "ConfirmModal")

    assert snap_compare(app, terminal_size=MAIN, run_before=_without_toasts(run))


# -- the TLS step: a real front door planned for a domain ------------------------------------------------

#: The TLS snapshots plan a real Caddy site, whose text names the install and the system root: both at
#: fixed paths (as the shown root is fixed elsewhere), made afresh for each test.
TLS_TOP = "/tmp/dester-harden-snapshot-tls"
#: bcrypt with a fixed salt: the hash in the previewed site is the same on every run.
TLS_SALT = b"$2b$12$DesterHardenSnapshot.e"


def _fixed_hasher(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), TLS_SALT).decode()


@pytest.fixture
def tls_install(monkeypatch):
    import shutil
    import subprocess

    from checks.assistant import frontdoor
    from checks.proxy.servers import Server

    caddy = shutil.which("caddy")
    version = subprocess.run([caddy, "version"], capture_output=True, text=True).stdout if caddy else ""
    if not version.lstrip("v").startswith("2.6.") or not os.path.isfile("/etc/caddy/Caddyfile"):
        if os.environ.get("CI") == "true":
            pytest.fail("the TLS snapshots validate with Debian's caddy 2.6 (apt install caddy)")
        pytest.skip(f"the TLS snapshots validate with Debian's caddy 2.6; found: {version.strip() or 'none'}")
    shutil.rmtree(TLS_TOP, ignore_errors=True)
    os.makedirs(os.path.join(TLS_TOP, "root", "etc"))
    shutil.copytree("/etc/caddy", os.path.join(TLS_TOP, "root", "etc", "caddy"), symlinks=True)
    root = materialize(os.path.join(TLS_TOP, "srv"))
    # What this machine has installed is no input of a snapshot: the servers shown are fixed.
    servers = {"caddy": Server("caddy", caddy, "2.6.2", False), "nginx": Server("nginx", None, None, False)}
    monkeypatch.setattr(frontdoor, "options", lambda r, *, host_root="/": frontdoor.Options(
        servers, "caddy", None, (), 3001))
    yield root
    shutil.rmtree(TLS_TOP, ignore_errors=True)


async def _tls_with_domain(pilot):
    app = pilot.app
    await wait_screen(app, pilot, "WelcomeScreen")
    app.fix_one("tls")
    screen = await wait_screen(app, pilot, "TLSScreen")
    for ch in "media.example.com":
        await pilot.press(ch)
    await settle(app, pilot)
    await wait_until(pilot, lambda: screen.login is not None, what="the plan of media.example.com")
    await settle(app, pilot)
    pilot.app.clear_notifications()
    await pilot.pause()


@pytest.mark.parametrize("size", [MAIN, BIG], ids=["80x24", "120x40"])
def test_tls_screen(size, tls_install, snap_compare):
    """The TLS step with a domain entered: the proxy choice, the login masked, the generated site."""
    app = make_app(tls_install, profile="internet", shown_root=SHOWN_ROOT,
                   host_root=os.path.join(TLS_TOP, "root"), hasher=_fixed_hasher)
    assert snap_compare(app, terminal_size=size, run_before=_tls_with_domain)
