"""The assistant's suppression key: the re-audit's `s` asks for a reason, then writes the settings file."""

from __future__ import annotations

import os

from checks.audit.settings import load_settings
from checks.demo import materialize
from tests.apphelpers import harden, make_app, screen_text, settle, wait_screen, wait_until


async def test_s_on_a_reaudit_row_adds_a_suppression_with_its_reason(tmp_path):
    root = materialize(str(tmp_path))
    harden(root)
    os.chmod(os.path.join(root, ".env"), 0o644)  # FS-001 regresses
    app = make_app(root)
    async with app.run_test(size=(80, 24)) as pilot:
        reaudit = await wait_screen(app, pilot, "ReauditScreen")
        from textual.widgets import DataTable

        table = reaudit.query_one(DataTable)
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == "regression:FS-001"
        await pilot.press("s")
        modal = await wait_screen(app, pilot, "SuppressModal")
        await pilot.press("enter", "enter")  # no reason: refused on the modal, nothing written
        await settle(app, pilot)
        assert app.screen is modal and "reason" in screen_text(app)
        assert load_settings(root).suppressions == []  # (the hardening saved the profile there)
        await pilot.click("#suppress-reason")
        await pilot.press(*"shared box", "enter", *"2099-01-31", "enter")
        await wait_screen(app, pilot, "ReauditScreen")
        await wait_until(pilot, lambda: "suppressed  FS-001" in screen_text(app), what="the row shown as suppressed")
    sups = load_settings(root).suppressions
    assert [(s.check, s.reason, str(s.until)) for s in sups] == [("FS-001", "shared box", "2099-01-31")]
