"""The assistant against a real Docker Engine: the lab's dockerd (tests/livelab) and the demo stack.

The live state is the live layer's own (:func:`checks.live.gather.gather`), read from the lab's
Engine and from the server namespace's /proc/net; the apply goes through the use cases to the
docker CLI. What is checked is what the faces add: the welcome and network lines from a real
state, and a real recreate driving the progress line to its outcome, after which the LAN can no
longer reach 5432 nor 6379.

Marked ``live``: without a dockerd that can start they skip with the reason (fail under CI=true).
"""

from __future__ import annotations

import pytest

from tests.apphelpers import make_app, screen_text, settle, wait_in_stack, wait_screen, wait_until

pytestmark = pytest.mark.live


@pytest.fixture
def lab_env(live_lab, monkeypatch):
    for key, value in live_lab.env.items():
        monkeypatch.setenv(key, value)
    return live_lab


def _provider(lab):
    def live_state(root):
        from checks.install.discovery import discover
        from checks.live.gather import gather

        # The server's sockets are in its own network namespace: read them there.
        return gather(discover(root), proc_net=f"/proc/{lab.server_pid}/net", probe=False, logs=False)

    return live_state


async def test_the_assistant_shows_the_real_stack_and_recreates_with_progress(lab_env, live_install, monkeypatch):
    from tui.widgets import ProgressLine

    lab = lab_env
    inst = live_install("cli")
    assert lab.lan_tcp(lab.server_ip, 5432) == "open"
    heard: list[tuple[str, float | None]] = []
    real_report = ProgressLine.report

    def report(self, what, elapsed):
        heard.append((what, elapsed))
        real_report(self, what, elapsed)

    monkeypatch.setattr(ProgressLine, "report", report)
    app = make_app(str(inst), live_state=_provider(lab))
    app.session.choices.selected["network"] = {"NET-001"}
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_screen(app, pilot, "WelcomeScreen")
        await wait_until(pilot, lambda: app.live_ready, what="the live state")
        await settle(app, pilot)
        text = screen_text(app)
        assert app.live is not None and app.live.docker_reachable, app.live and app.live.engine_error
        assert f"Docker Engine {app.live.engine.version}: 3 containers running" in text
        assert app.live.engine.version.startswith("20.10")
        app.fix_one("network")
        await wait_screen(app, pilot, "NetworkScreen")
        assert "postgres: listening now on 0.0.0.0:5432 and [::]:5432" in screen_text(app)
        await pilot.press("n")
        review = await wait_in_stack(app, pilot, "ReviewScreen")
        await wait_screen(app, pilot, "PreviewModal", timeout=120)
        await pilot.press("a")
        await wait_until(pilot, lambda: review.state["network"] not in ("pending", "applying")
                         or type(app.screen).__name__ == "ConfirmModal", timeout=240, what="the apply")
        if type(app.screen).__name__ == "ConfirmModal":
            await pilot.press("y")
            await wait_until(pilot, lambda: review.state["network"] not in ("pending", "applying"), timeout=240,
                             what="the apply")
        assert review.state["network"] == "applied", screen_text(app)
        outcome = str(review.query_one("#review-outcome").render())
        assert "Recreated postgres, redis (healthy in" in outcome, outcome  # NET-001 rebinds both
        assert any(what.startswith("recreating") for what, _ in heard), heard
        assert not review.query_one("#review-progress").has_class("-active")
    assert lab.lan_tcp(lab.server_ip, 5432) != "open"
    assert lab.lan_tcp(lab.server_ip, 6379) != "open"
