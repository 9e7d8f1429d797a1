"""Bad input and contention in the assistant: one clear line, no traceback, no writes."""

from __future__ import annotations

import os

from checks.change.engine import Engine
from checks.demo import materialize
from tests.apphelpers import (
    make_app,
    screen_text,
    snapshot_tree,
    wait_in_stack,
    wait_screen,
    wait_until,
    walk_to_review,
)
from tests.conftest import run_cli


async def test_a_broken_compose_file_is_one_line_on_screen_and_nothing_is_written(tmp_path):
    root = materialize(str(tmp_path))
    with open(os.path.join(root, "docker-compose.yml"), "a", encoding="utf-8") as fh:
        fh.write("services: [\n")
    before = snapshot_tree(root)
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: "Cannot audit" in screen_text(app), what="the error")
        text = screen_text(app)
        assert "docker-compose.yml" in text and "Traceback" not in text
        await pilot.press("enter")  # the setup cannot start on files it cannot read
        await pilot.pause()
        assert type(app.screen).__name__ == "WelcomeScreen"
        assert any("could not be read" in n.message for n in app._notifications)
    assert snapshot_tree(root) == before


async def test_another_instance_holding_the_lock_changes_nothing_and_says_who(tmp_path):
    root = materialize(str(tmp_path))
    before = snapshot_tree(root)
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        await walk_to_review(app, pilot)
        review = await wait_in_stack(app, pilot, "ReviewScreen")
        await wait_screen(app, pilot, "PreviewModal")
        other = Engine(root, "fix")
        with other.locked():  # another dester-harden (or a `fix` in another session) is applying
            await pilot.press("a")
            await wait_until(pilot, lambda: review.state["network"] == "failed", what="the refusal")
        messages = [n.message for n in app._notifications]
        assert any("fix" in m and "pid" in m.lower() for m in messages), messages
    after = snapshot_tree(root)
    assert {k: v for k, v in after.items() if not k.startswith(".dester-harden")} == before


def test_assistant_usage_errors_are_one_line(tmp_path):
    r = run_cli("assistant", "--dir", str(tmp_path / "nope"))
    assert r.code == 2 and r.err.count("\n") == 1 and "install directory not found" in r.err
    root = materialize(str(tmp_path))
    r = run_cli("assistant", "--dir", root, "--theme", "no-such-theme")
    assert r.code == 2 and r.err.count("\n") == 1 and "unknown theme 'no-such-theme'" in r.err
    r = run_cli("assistant", "--dir", root, "--color-system", "99")
    assert r.code == 2 and "invalid choice" in r.err and r.err.count("\n") == 1
    r = run_cli("assistant", "--dir", root)  # no terminal here
    assert r.code == 2 and "needs a terminal" in r.err and r.err.count("\n") == 1
    # A bare command without a terminal is the audit (cron keeps working).
    r = run_cli("--dir", root)
    assert r.code == 1 and "NET-001" in r.out


async def test_theme_flag_sets_the_theme(tmp_path):
    root = materialize(str(tmp_path))
    app = make_app(root, theme="textual-light")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        assert app.theme == "textual-light"


async def test_a_bug_is_one_line_on_exit_without_traceback_or_locals(tmp_path, capsys, monkeypatch):
    import pytest

    root = materialize(str(tmp_path))
    app = make_app(root)

    def boom() -> None:
        secret_value = "hunter2-in-a-local"  # noqa: F841 - Textual's traceback would print this local
        raise ValueError("a message that could quote file content")

    monkeypatch.setattr(app, "action_history", boom)
    with pytest.raises(ValueError):
        async with app.run_test(size=(80, 24)) as pilot:
            await wait_screen(app, pilot, "WelcomeScreen")
            await pilot.press("h")
            await pilot.pause()
    assert app.return_code == 3
    app._print_error_renderables()
    err = capsys.readouterr().err
    assert "internal error (ValueError)" in err and err.count("\n") <= 2
    assert "Traceback" not in err and "hunter2" not in err and "could quote" not in err
