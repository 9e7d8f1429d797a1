"""Live password rotation against the lab's real dockerd, PostgreSQL and API stand-in (tests/livelab).

Through the use cases the faces call (``usecases.plan`` / ``apply`` / ``undo``), with the live state
read by :func:`checks.live.gather.gather`: the API healthy with the new password, the database
taking the new one over TCP and refusing the old; the password in no output, no argv of any program
started (every ``subprocess.Popen`` of this process is recorded), and not in the journal's
plaintext; undo: the old password accepted again, the new refused, the files byte for byte.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from checks.assistant import usecases
from checks.install.discovery import discover
from checks.live.gather import gather
from tests.apphelpers import seeded_secrets

pytestmark = pytest.mark.live

OLD = "postgres"  # the demo install's password
#: A chosen password with a quote, a backslash and a colon: the statement on psql's stdin must quote it.
NEW = "Quote'd\\and:long-enough-passw0rd-7Hq2Zt8Wm1Kc6Vx9"


class Spy:
    """Records the argv and environment names of every program this process starts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.argvs: list[list[str]] = []
        real = subprocess.Popen
        spy = self

        class Recording(real):  # type: ignore[misc, valid-type]
            def __init__(self, args, *a, **kw):  # noqa: ANN001 - Popen's own signature
                spy.argvs.append([str(x) for x in (args if isinstance(args, (list, tuple)) else [args])])
                super().__init__(args, *a, **kw)

        monkeypatch.setattr(subprocess, "Popen", Recording)

    def holding(self, *secrets: str) -> list[list[str]]:
        return [a for a in self.argvs if any(s in x for s in secrets for x in a)]


def lab_env(live_lab, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in live_lab.env.items():
        monkeypatch.setenv(key, value)


def live_state(root: Path, **kw):
    return gather(discover(str(root)), probe=False, **kw)


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
            if p.is_file() and ".dester-harden" not in p.parts and "media" not in p.parts}


def api_health(live_lab, install) -> str:
    name = live_lab.container(install, "api")
    return live_lab.docker("inspect", "-f", "{{.State.Health.Status}} {{.RestartCount}}", name).stdout.strip()


def journal_bytes(root: Path) -> bytes:
    """Every file of every transaction's journal (the secrets live in the secret store, elsewhere)."""
    from checks.change.journal import txn_root

    out = b""
    for dirpath, _dirs, names in os.walk(txn_root(str(root))):
        for name in names:
            out += Path(dirpath, name).read_bytes()
    return out


def test_rotation_through_the_use_cases_then_undo(live_lab, live_install, monkeypatch):
    lab_env(live_lab, monkeypatch)
    install = live_install("cli", hc_interval="2s")  # a loaded machine: initdb may take more than 5 s
    root = Path(install)
    before = files_of(root)
    assert live_lab.pg_login(install, "desterlib", "desterlib", OLD)

    state = live_state(root, logs=False)
    assert state.docker_reachable, state.engine_error
    planned = usecases.plan(str(root), "local", only={"SEC-001"}, live=state, db_password=NEW,
                            new_secret=seeded_secrets())
    shown = "\n".join(planned.plan.notes + planned.plan.confirm)
    assert "psql -U" not in shown and NEW not in shown
    spy = Spy(monkeypatch)
    applied = usecases.apply(str(root), planned.plan, command="fix", profile="local")
    assert applied.reverted is None, applied.reverted
    assert [r.services for r in applied.recreated] == [("api",)]
    assert api_health(live_lab, install) == "healthy 0"
    assert live_lab.pg_login(install, "desterlib", "desterlib", NEW)
    assert not live_lab.pg_login(install, "desterlib", "desterlib", OLD)
    assert spy.argvs and not spy.holding(NEW), "a password in some program's argv"
    assert any(a[:3] == ["docker", "exec", "-i"] and "psql" in a for a in spy.argvs)
    journal = journal_bytes(root)
    assert NEW.encode() not in journal and b"postgres@postgres" not in journal
    for notice in applied.notices:
        assert NEW not in str(notice)

    preview = usecases.undo_preview(str(root), None)
    undone = usecases.undo(str(root), preview, profile="local")
    assert undone.reverted is None, undone.reverted
    assert files_of(root) == before
    assert api_health(live_lab, install) == "healthy 0"
    assert live_lab.pg_login(install, "desterlib", "desterlib", OLD)
    assert not live_lab.pg_login(install, "desterlib", "desterlib", NEW)
    assert not spy.holding(NEW)
    assert NEW.encode() not in journal_bytes(root)
