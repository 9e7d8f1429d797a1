"""The assistant shows and drives the live system: Pilot tests with fake live states and a fake apply.

No Docker here: the live state is a fixed :func:`tests.apphelpers.demo_live`, and the
apply that would recreate services is replaced by one that reports progress, raises
an auto-revert (the use case's ``Applied.reverted``), or blocks until released.
The real stack is exercised by the live lab tests of the other parts.
"""

from __future__ import annotations

import threading

import pytest

from checks.assistant.stackrun import Recreated, Reverted
from checks.assistant.usecases import Applied
from checks.change.plan import Login, Recreate
from checks.core.secrets import MASK
from checks.demo import materialize
from screens import _live
from tests.apphelpers import (
    ENGINE_VERSION,
    demo_live,
    make_app,
    screen_text,
    settle,
    wait_in_stack,
    wait_screen,
    wait_until,
    walk_to_review,
)

SECRET = "Sup3r-S3cret-Passw0rd-from-the-plan-xyz"


@pytest.fixture
def install(tmp_path):
    return materialize(str(tmp_path))


def _text(app) -> str:
    """What the screen says, whitespace collapsed (long lines wrap under their first one)."""
    return " ".join(screen_text(app).split())


# -- the live state on the screens ---------------------------------------------------------


async def test_worker_posts_the_live_state_to_welcome_network_password(install):
    calls = []

    def provider(root):
        calls.append(root)
        return demo_live(root)

    app = make_app(install, live_state=provider)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await settle(app, pilot)
        assert f"Docker Engine {ENGINE_VERSION}: 3 containers running" in _text(app)
        await pilot.press("enter")
        await wait_screen(app, pilot, "NetworkScreen")
        text = _text(app)
        assert "postgres: listening now on 0.0.0.0:5432 and [::]:5432" in text
        assert "redis: listening now on 0.0.0.0:6379 and [::]:6379" in text
        await pilot.press("n")
        await wait_screen(app, pilot, "PasswordScreen")
        how = str(app.screen.query_one("#password-live").render())  # the plan's own notes are the fixers'
        assert "ALTER ROLE" in how  # Docker reachable: the running database is rotated too
        assert "psql" not in how and "F1 says how" not in how
        assert "use the password the files give them" in _text(app)
    assert len(calls) == 1, "the live state is gathered once"


async def test_unreachable_docker_says_why_and_keeps_the_psql_instruction(install):
    app = make_app(install, live_state=lambda root: demo_live(root, reachable=False))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await settle(app, pilot)
        assert "Docker not reachable: permission denied on /var/run/docker.sock (run with sudo)" in _text(app)
        await pilot.press("enter")
        await wait_screen(app, pilot, "NetworkScreen")
        text = _text(app)
        assert "Docker not reachable" in text
        # /proc/net is read without Docker: the exposure is still shown.
        assert "postgres: listening now on 0.0.0.0:5432 and [::]:5432" in text
        await pilot.press("n")
        await wait_screen(app, pilot, "PasswordScreen")
        how = str(app.screen.query_one("#password-live").render())
        assert "changes the files only" in how and "ALTER ROLE" not in how


async def test_root_is_not_told_to_use_sudo(install):
    app = make_app(install, live_state=lambda root: demo_live(root, reachable=False), euid=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await settle(app, pilot)
        text = _text(app)
        assert "Docker not reachable: permission denied" in text and "sudo" not in text


async def test_the_first_frame_does_not_wait_for_docker(install):
    release = threading.Event()

    def slow(root):
        release.wait(30)
        return demo_live(root)

    app = make_app(install, live_state=slow)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: type(app.screen).__name__ == "WelcomeScreen", what="the welcome")
        await wait_until(pilot, lambda: "Score" in _text(app) and "/100" in _text(app), what="the audit")
        text = _text(app)
        assert _live.CHECKING in text, "the live line says it is still checking"
        assert "Docker Engine" not in text
        release.set()
        await wait_until(pilot, lambda: f"Docker Engine {ENGINE_VERSION}" in _text(app), what="the live line")
        assert _live.CHECKING not in _text(app)


async def test_password_step_says_the_containers_run_with_the_old_password(install):
    app = make_app(install, live_state=lambda root: demo_live(root, stale=("postgres", "api")))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await pilot.press("enter")
        await wait_screen(app, pilot, "NetworkScreen")
        await pilot.press("n")
        await wait_screen(app, pilot, "PasswordScreen")
        assert "running with the old password: postgres, api" in _text(app)


async def test_without_a_live_state_nothing_live_is_shown(install):
    app = make_app(install)  # the tests' default: live not checked
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await settle(app, pilot)
        assert app.live_ready and app.live is None
        text = _text(app)
        assert "Docker" not in text.replace("docker compose", "") and _live.CHECKING not in text


# -- applying to the running stack ---------------------------------------------------------


def _with_recreate(app, monkeypatch, confirm=()):
    """Every step's plan also recreates the API (as the stack part's planner does when Docker runs)."""
    session = app.session
    real_plan = session.plan

    def plan(step, checks=None, profile=None, preview=False):
        sp = real_plan(step, checks, profile, preview)
        if not preview and not sp.plan.empty:
            sp.plan.changes.append(Recreate("desterlib", session.root, ("docker-compose.yml",), ("api",),
                                            http=("api",), logins=(Login("postgres", "desterlib", "desterlib",
                                                                         "new", True),)))
            sp.plan.named_secrets["new"] = SECRET
            sp.plan.secrets.add(SECRET)
            sp.plan.confirm = list(confirm)
        return sp

    monkeypatch.setattr(session, "plan", plan)


def _applied() -> Applied:
    return Applied("20261118T120000-000001", [], [], None, None)


def _recording(applied: list):
    """A stand-in for Session.apply that only records what it was asked to apply."""
    def apply(sp, report=None):
        applied.append(sp)
        return _applied()

    return apply


async def _to_first_preview(app, pilot):
    await walk_to_review(app, pilot)
    return await wait_in_stack(app, pilot, "ReviewScreen")


async def test_the_confirmation_blocks_apply_on_no(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch, confirm=["recreating api runs prisma db push --accept-data-loss; go on?"])
    applied: list[object] = []
    monkeypatch.setattr(app.session, "apply", _recording(applied))
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        first = review.steps[0]
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_screen(app, pilot, "ConfirmModal")
        assert "prisma db push --accept-data-loss" in _text(app)
        await pilot.press("enter")  # the focus is on No: Enter alone never says yes
        await wait_until(pilot, lambda: review.state[first] == "declined", what="the step declined")
        assert applied == []
        # The next step: yes this time.
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_screen(app, pilot, "ConfirmModal")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(applied) == 1, what="the apply")


async def test_escape_on_the_confirmation_is_no(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch, confirm=["go on?"])
    applied: list[object] = []
    monkeypatch.setattr(app.session, "apply", _recording(applied))
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_screen(app, pilot, "ConfirmModal")
        await pilot.press("escape")
        await wait_until(pilot, lambda: review.state[review.steps[0]] == "declined", what="declined")
        assert applied == []


async def test_the_progress_line_follows_the_reporter_then_tells_what_was_recreated(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch)
    step_a, step_b, done = threading.Event(), threading.Event(), threading.Event()

    def apply(sp, report=None):
        assert report is not None, "a plan that recreates gets the reporter"
        report("recreating api", 0.2)
        step_a.wait(30)
        report("waiting for api to be healthy", 5.4)
        step_b.wait(30)
        done.set()
        return Applied("20261118T120000-000001", [], [], None, None, recreated=[Recreated(("api",), 5.4)])

    monkeypatch.setattr(app.session, "apply", apply)
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        progress = review.query_one("#review-progress")
        await wait_until(pilot, lambda: "recreating api… 0.2 s" in str(progress.render()), what="recreating")
        assert progress.display
        step_a.set()
        await wait_until(pilot, lambda: "waiting for api to be healthy… 5.4 s" in str(progress.render()),
                         what="waiting")
        step_b.set()
        await wait_until(pilot, lambda: review.state[review.steps[0]] == "applied", what="applied")
        assert not progress.has_class("-active")
        assert "Recreated api (healthy in 5.4 s)" in str(review.query_one("#review-outcome").render())
        for _ in review.steps[1:]:
            await wait_screen(app, pilot, "PreviewModal")
            await pilot.press("s")


async def test_an_auto_revert_shows_the_masked_log_lines_and_never_the_secret(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch)
    logs = (f"Database: postgresql://desterlib:{SECRET}@postgres:5432/desterlib?schema=public",
            f"Error: P1000: Authentication failed against database server (password {SECRET})",
            "\x1b[31mexiting\x1b[0m")

    def apply(sp, report=None):
        report("recreating api", 0.1)
        # Unmasked on purpose: the face masks again whatever the use case hands it.
        return Applied("", [], [], None, None, reverted=Reverted(
            "api did not become healthy within 120 s (restarted 3 times): the files were restored and api "
            "recreated with them; its last log lines:", logs))

    monkeypatch.setattr(app.session, "apply", apply)
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_until(pilot, lambda: review.state[review.steps[0]] == "reverted", what="reverted")
        outcome = str(review.query_one("#review-outcome").render())
        assert "did not become healthy within 120 s" in outcome and "the files were restored" in outcome
        assert "Database: postgresql://desterlib:" + MASK + "@postgres" in outcome
        assert "\x1b" not in outcome and "\\x1b" in outcome, "control characters are escaped"
        assert SECRET not in outcome
        for _ in review.steps[1:]:
            await wait_screen(app, pilot, "PreviewModal")
            await pilot.press("s")
        await wait_until(pilot, lambda: review.done, what="the review")
        assert SECRET not in _text(app)
        assert not review.query_one("#review-progress").has_class("-active")


async def test_a_files_only_apply_tells_no_recreate(install, monkeypatch):
    """Nothing recreated (Docker not reachable, or nothing running changed): no outcome line."""
    app = make_app(install)
    seen = []
    real = app.session.apply

    def apply(sp, *args, **kwargs):
        seen.append((args, kwargs))
        return real(sp, *args, **kwargs)

    monkeypatch.setattr(app.session, "apply", apply)
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press("a")
        await wait_until(pilot, lambda: review.state[review.steps[0]] == "applied", what="applied")
        assert len(seen) == 1 and callable(seen[0][0][0])  # the reporter, heard only by recreates
        assert not review.query_one("#review-outcome").display


# -- the texts, at 80 columns --------------------------------------------------------------


def test_engine_line():
    from checks.live.model import LiveState

    live = LiveState(project="p", engine_error="connection refused at unix:///run/docker.sock\n(is it running?)")
    assert _live.engine_line(live, 1000) == ("Docker not reachable: connection refused at unix:///run/docker.sock "
                                             "(is it running?)")
    denied = LiveState(project="p", engine_error="permission denied on /var/run/docker.sock")
    assert _live.engine_line(denied, 1000).endswith("(run with sudo)")
    assert "sudo" not in _live.engine_line(denied, 0)
    layer = LiveState(project="p", engine_error="the Docker Engine is not reachable at unix:///var/run/docker.sock: "
                                                "permission denied (run with sudo or join the docker group)")
    assert _live.engine_line(layer, 1000) == ("Docker not reachable at unix:///var/run/docker.sock: permission "
                                              "denied (run with sudo or join the docker group)")


def test_listening_from_bindings_when_proc_was_not_read(install):
    from checks.install.discovery import discover

    live = demo_live(install)
    live.listeners = None
    live.listeners_error = "permission denied on /proc/net/tcp"
    lines = _live.listening_lines(discover(install, None, "/", 0), live)
    assert "postgres: listening now on 0.0.0.0:5432 and [::]:5432" in lines
    assert all(len(line) <= 76 for line in lines)
    nothing = demo_live(install, reachable=False)
    nothing.listeners = ()
    assert _live.listening_lines(discover(install, None, "/", 0), nothing) == [
        "postgres: nothing listens on 5432 now", "redis: nothing listens on 6379 now"]


def test_drift_lines_come_from_the_dkr009_findings():
    from types import SimpleNamespace as NS

    from checks.audit.findings import FAIL, PASS

    ev = NS(text="fixed on disk, not applied: service postgres runs with the old ports and must be recreated",
            note="5432/tcp published on all interfaces:5432; the files say 127.0.0.1:5432")
    report = NS(findings=[NS(id="DKR-009", status=FAIL, evidence=[ev, ev]), NS(id="NET-001", status=FAIL,
                                                                               evidence=[ev]),
                          NS(id="DKR-009", status=PASS, evidence=[NS(note="other", text="")])])
    assert _live.drift_lines(report) == [ev.text]  # type: ignore[arg-type]


def test_reverted_outcome_masks_by_value_and_by_url():
    out = _live.reverted_outcome(f"gate failed for {SECRET}", [f"redis://:{SECRET}@redis:6379",
                                                              "DATABASE_URL=postgresql://u:pw-not-in-plan@db/x"],
                                 [SECRET])
    assert SECRET not in out.headline and all(SECRET not in line for line in out.lines)
    assert "pw-not-in-plan" not in out.lines[1]


def test_a_report_after_the_terminal_went_away_is_dropped():
    """The reporter runs in the apply's thread: a UI that is gone must not fail the transaction."""
    from screens.review import make_reporter

    class Gone:
        def call_from_thread(self, *a, **k):
            raise RuntimeError("app not running")

    class Live:
        def __init__(self):
            self.calls = []

        def call_from_thread(self, fn, *args):
            self.calls.append(args)

    from types import SimpleNamespace

    progress = SimpleNamespace(report=lambda what, elapsed: None)
    make_reporter(Gone(), progress)("recreating api", 1.0)
    app = Live()
    make_reporter(app, progress)("waiting for api to be healthy", 2.5)
    assert app.calls == [("waiting for api to be healthy", 2.5)]


# -- the installed assistant in a real terminal, with the real live layer --------------------------


@pytest.mark.parametrize("flag", ["none", "16", "256", "truecolor"])
def test_the_live_line_in_each_colour_system(tmp_path, flag):
    """The installed assistant asks the real live layer (here: a DOCKER_HOST that is not there) and
    draws its line in the colour system asked for: greys only under ``none`` (as NO_COLOR)."""
    import os
    import re
    import sys

    from tests.termharness import Tmux, term_env
    from tests.test_e2e_assistant import _colour_kinds, _only_grey

    root = materialize(str(tmp_path / "srv"))
    home = tmp_path / "home"
    home.mkdir()
    dester = os.path.join(sys.prefix, "bin", "dester-harden")
    env = term_env(home, COLORTERM="truecolor", DOCKER_HOST=f"unix://{tmp_path}/no-such-docker.sock")
    with Tmux([dester, "--dir", root, "--color-system", flag], env=env) as t:
        t.wait_for(re.compile(r"Score \d+/100"), timeout=30)
        t.wait_for("Docker not reachable", timeout=30)
        screen = t.capture(escapes=True)
        t.send("C-q")
        t.wait_exit()
    kinds = _colour_kinds(screen)
    if flag == "none":
        assert not kinds["indexed"] and not kinds["basic"] and _only_grey(screen), kinds
    elif flag == "16":
        assert kinds["basic"] and not kinds["rgb"] and not kinds["indexed"], kinds
    elif flag == "256":
        assert kinds["indexed"] and not kinds["rgb"], kinds
    else:
        assert kinds["rgb"], kinds


async def test_network_step_says_whole_what_must_be_recreated(install, monkeypatch):
    """DKR-009's headline (the live checks' finding) wraps at 80 columns instead of being cut."""
    line = "fixed on disk, not applied: service postgres runs with the old ports and must be recreated"
    monkeypatch.setattr(_live, "drift_lines", lambda report: [line])
    app = make_app(install, live_state=lambda root: demo_live(root))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await pilot.press("enter")
        await wait_screen(app, pilot, "NetworkScreen")
        shown = str(app.screen.query_one("#network-live").render())
        assert " ".join(shown.split()).endswith(line.replace("  ", " ")), shown
        assert all(len(row) <= 76 for row in shown.splitlines()), shown
        assert "must be recreated" in shown and "…" not in shown.splitlines()[-1]


async def test_the_summary_asks_nothing_by_hand_for_a_step_applied_to_the_running_stack(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch)
    real_apply = app.session.apply

    def apply(sp, report=None):
        # The files for real; the recreate as the stack would report it (no Docker here).
        sp.plan.changes = [c for c in sp.plan.changes if not isinstance(c, Recreate)]
        done = real_apply(sp)
        assert done.reverted is None
        done.recreated = [Recreated(("api",), 1.0)]
        return done

    monkeypatch.setattr(app.session, "apply", apply)
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        for _ in review.steps:
            await wait_screen(app, pilot, "PreviewModal")
            await pilot.press("a")
        await wait_until(pilot, lambda: review.done, what="the review")
        assert set(review.state.values()) == {"applied"}
        assert app.applied_notes == []
        await pilot.press("n")
        await wait_screen(app, pilot, "SummaryScreen")
        text = _text(app)
        assert "Before `docker compose up -d`" not in text and "psql" not in text


async def test_a_reverted_step_leaves_no_note_for_the_summary(install, monkeypatch):
    app = make_app(install)
    _with_recreate(app, monkeypatch)
    monkeypatch.setattr(app.session, "apply", lambda sp, report=None: Applied(
        "", [], [], None, None, reverted=Reverted("api did not become healthy within 120 s")))
    async with app.run_test(size=(80, 24)) as pilot:
        review = await _to_first_preview(app, pilot)
        for _ in review.steps:
            await wait_screen(app, pilot, "PreviewModal")
            await pilot.press("a")
        await wait_until(pilot, lambda: review.done, what="the review")
        assert set(review.state.values()) == {"reverted"}
        assert app.applied_notes == []


async def test_undo_from_history_shows_progress_and_what_it_recreated(install, monkeypatch):
    from tests.apphelpers import harden

    harden(install, now=lambda: 1_795_000_000.0)
    app = make_app(install)
    gate = threading.Event()

    def undo(preview, force=False, report=None):
        assert report is not None
        report("recreating postgres", 0.3)
        gate.wait(30)
        return Applied("20261118T130000-000001", [], [], None, None, recreated=[Recreated(("postgres",), 2.0)])

    monkeypatch.setattr(app.session, "undo", undo)
    said: list[str] = []
    real_notify = app.notify

    def notify(message, *args, **kwargs):
        said.append(str(message))
        return real_notify(message, *args, **kwargs)

    monkeypatch.setattr(app, "notify", notify)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "ReauditScreen")
        await pilot.press("h")
        history = await wait_screen(app, pilot, "HistoryScreen")
        await pilot.press("u")
        await wait_screen(app, pilot, "UndoModal")
        await pilot.press("u")
        progress = history.query_one("#history-progress")
        await wait_until(pilot, lambda: "recreating postgres… 0.3 s" in str(progress.render()), what="progress")
        gate.set()
        await wait_until(pilot, lambda: any("Recreated postgres (healthy in 2.0 s)" in m for m in said),
                         what="the outcome")
        assert not progress.has_class("-active")
