"""The assistant's first run against the lab's real stack, then everything undone.

Driven through :class:`checks.assistant.session.Session` without Textual, as tests/apphelpers.py
``harden()`` does, with the live state the session gathers before each step: the network step
rebinds PostgreSQL to loopback (recreated), the password step rotates the database password live
(ALTER ROLE, files, the API recreated and verified), the permissions step tightens the modes.
After it the LAN namespace cannot reach 5432, the API is healthy with the new password and the old
one is refused; undoing every transaction, newest first, brings back the old state: the files
byte for byte, the old password accepted, 5432 reachable again.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from checks.assistant.session import Session
from tests.apphelpers import seeded_secrets
from tests.test_rotation_live import OLD, api_health, files_of, lab_env

pytestmark = pytest.mark.live

STEPS = ("network", "password", "permissions")


def test_first_run_rebind_rotate_permissions_then_undo_everything(live_lab, live_install, monkeypatch):
    lab_env(live_lab, monkeypatch)
    install = live_install("cli", hc_interval="2s")
    root = Path(install)
    before = files_of(root)
    assert live_lab.lan_tcp(live_lab.server_ip, 5432) == "open"

    s = Session(str(root), hostname="h", new_secret=seeded_secrets())
    s.audit()
    new = s.generate_password()
    applied = []
    for step in STEPS:
        s.gather_live()
        s.choices.selected[step] = s.default_selection(step)
        done = s.apply(s.plan(step))
        assert done.reverted is None, (step, done.reverted)
        if done.txn_id:
            applied.append(done.txn_id)
    assert len(applied) == len(STEPS)

    assert live_lab.lan_tcp(live_lab.server_ip, 5432) != "open"
    assert api_health(live_lab, install) == "healthy 0"
    assert live_lab.pg_login(install, "desterlib", "desterlib", new)
    assert not live_lab.pg_login(install, "desterlib", "desterlib", OLD)

    for txn_id in reversed(applied):
        done = s.undo(s.undo_preview(txn_id))
        assert done.reverted is None, (txn_id, done.reverted)
    assert files_of(root) == before
    assert api_health(live_lab, install) == "healthy 0"
    assert live_lab.pg_login(install, "desterlib", "desterlib", OLD)
    assert not live_lab.pg_login(install, "desterlib", "desterlib", new)
    assert live_lab.lan_tcp(live_lab.server_ip, 5432) == "open"
