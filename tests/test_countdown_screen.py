"""The assistant's side of confirm-or-revert: the countdown modal, and the session's keep and revert."""

from __future__ import annotations

import pytest
from textual.app import App

from checks.assistant import usecases
from checks.assistant.session import Session
from checks.firewall import confirm as fc
from screens.countdown import CountdownModal
from tests.test_confirm_revert import AFTER_STATE, BEFORE_STATE, setup, state
from tests.trialdriver import build


class Host(App[None]):
    CSS = ""

    def __init__(self, modal: CountdownModal) -> None:
        super().__init__()
        self.modal = modal
        self.answer: str | None = None

    def on_mount(self) -> None:
        def done(answer: str | None) -> None:
            self.answer = answer

        self.push_screen(self.modal, done)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("key", "answer"), [("k", "keep"), ("enter", "keep"), ("r", "revert"),
                                             ("escape", "revert")])
async def test_the_countdown_says_the_seconds_left_and_answers_the_key(key, answer):
    clock = Clock(1000.0)
    host = Host(CountdownModal(1042.0, clock, ["check that you can still log in"]))
    async with host.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        left = str(host.modal.query_one("#countdown-left").render())
        assert "Reverting by themselves in 42 s" in left
        clock.now = 1030.2
        host.modal.tick()
        assert "in 12 s" in str(host.modal.query_one("#countdown-left").render())
        await pilot.press(key)
        await pilot.pause()
    assert host.answer == answer


async def test_the_countdown_running_out_answers_expired_without_a_key():
    clock = Clock(1000.0)
    host = Host(CountdownModal(1001.0, clock))
    async with host.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert host.answer is None
        clock.now = 1001.0
        for _ in range(40):  # the modal ticks every 0.5 s by itself
            if host.answer is not None:
                break
            await pilot.pause(0.1)
    assert host.answer == "expired"


@pytest.fixture
def trial(tmp_path, monkeypatch):
    monkeypatch.setattr(fc, "start_watcher", lambda root, pending, host_root="/": "none (test)")
    install, sysroot = setup(tmp_path)
    done = usecases.apply(str(install), build(str(install), str(sysroot), 600), command="fix", profile="local",
                          host_root=str(sysroot))
    assert done.trial is not None and state(install, sysroot) == AFTER_STATE
    return install, sysroot


def test_keeping_at_the_countdown_confirms_it(trial):
    install, sysroot = trial
    message = Session(str(install), hostname="h", host_root=str(sysroot)).keep_trial()
    assert message.startswith("Confirmed: transaction ")
    assert fc.load(str(install)).state == fc.CONFIRMED  # type: ignore[union-attr]
    assert state(install, sysroot) == AFTER_STATE


def test_not_keeping_reverts_at_once_and_the_session_audits_again(trial):
    install, sysroot = trial
    session = Session(str(install), hostname="h", host_root=str(sysroot))
    message = session.revert_trial("not kept at the countdown")
    assert message.startswith("Reverted: ") and state(install, sysroot) == BEFORE_STATE
    assert session.report is not None
    assert session.revert_trial() == "Nothing was on trial any more."
