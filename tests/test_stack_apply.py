"""Recreate changes in the engine, on a fake Stack: the health gate, the auto-revert, undo, recovery.

The fake stack "runs" the services with whatever the install's .env says at the moment it is
asked to recreate them, so each test can tell which files the running stack ended up with.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from checks.assistant import usecases
from checks.change.engine import Engine, EngineError, recover_install
from checks.change.handlers import files as files_handler
from checks.change.intent import BadJournal
from checks.change.journal import list_txns
from checks.change.plan import FileEdit, Login, Plan, Recreate
from checks.change.preview import render
from checks.change.stack import GateFailed, GateResult, Reporter

OLD = "OLD-pw-9f8e7d6c5b4a"
NEW = "NEW-pw-1a2b3c4d5e6f"


class FakeStack:
    """Recreates by reading .env; ``fail_apply`` makes the gate fail on apply recreates."""

    def __init__(self, root: Path, fail_apply: bool = False, kill_on_apply: bool = False) -> None:
        self.root = root
        self.fail_apply = fail_apply
        self.kill_on_apply = kill_on_apply
        self.calls: list[tuple[str, tuple[str, ...], tuple[bool, ...], bytes]] = []
        self.running = (root / ".env").read_bytes()
        """The .env the running stack was last recreated with."""

    def recreate(self, change: Recreate, secrets: Mapping[str, str], report: Reporter | None = None) -> GateResult:
        env = (self.root / ".env").read_bytes()
        self.calls.append((change.when, change.services, tuple(lg.accept for lg in change.logins), env))
        if report is not None:
            report(f"recreating {', '.join(change.services)}", 0.0)
        if self.kill_on_apply and change.when == "apply":
            raise KeyboardInterrupt  # killed while the containers were being replaced
        self.running = env
        if self.fail_apply and change.when == "apply":
            return GateResult(False, "restarted 3 times", change.services,
                              (f"Database: postgresql://desterlib:{NEW}@postgres:5432/desterlib", "exiting"), 9.0,
                              "api")
        return GateResult(True, "", change.services, (), 2.4)


def install(tmp_path: Path) -> Path:
    root = tmp_path / "desterlib"
    root.mkdir()
    (root / "docker-compose.yml").write_bytes(b"services:\n  api:\n    image: desterlib/api:latest\n")
    (root / ".env").write_bytes(f"POSTGRES_PASSWORD={OLD}\n".encode())
    return root


def recreate(root: Path, when: str, logins: tuple[Login, ...] = ()) -> Recreate:
    return Recreate("desterlib", str(root), (str(root / "docker-compose.yml"),), ("api",), when, 120.0, ("api",),
                    logins, "run with the new password")


def rotation(root: Path) -> Plan:
    logins = (Login("postgres", "desterlib", "desterlib", "new", True),
              Login("postgres", "desterlib", "desterlib", "old", False))
    env = str(root / ".env")
    plan = Plan(checks=["SEC-001"], changes=[
        recreate(root, "rollback", logins),
        FileEdit(env, f"POSTGRES_PASSWORD={OLD}\n".encode(), f"POSTGRES_PASSWORD={NEW}\n".encode()),
        recreate(root, "apply", logins)])
    plan.secrets = {OLD, NEW}
    plan.named_secrets = {"new": NEW, "old": OLD}
    return plan


def test_apply_recreates_once_with_the_new_files_after_them(tmp_path):
    root = install(tmp_path)
    stack = FakeStack(root)
    Engine(str(root), stack=stack).apply(rotation(root))
    assert [(c[0], c[3]) for c in stack.calls] == [("apply", f"POSTGRES_PASSWORD={NEW}\n".encode())]
    assert stack.calls[0][2] == (True, False)  # new accepted, old refused
    assert [t.state for t in list_txns(str(root))] == ["applied"]


def test_a_failing_gate_rolls_everything_back_and_recreates_with_the_old_files(tmp_path):
    root = install(tmp_path)
    before = (root / ".env").read_bytes()
    stack = FakeStack(root, fail_apply=True)
    with pytest.raises(GateFailed) as caught:
        Engine(str(root), stack=stack).apply(rotation(root))
    assert str(caught.value) == "api did not become healthy within 120 s (restarted 3 times)"
    assert (root / ".env").read_bytes() == before
    # the apply recreate, then the rollback recreate after the files were back, its gate without logins
    new = f"POSTGRES_PASSWORD={NEW}\n".encode()
    assert [(c[0], c[2], c[3]) for c in stack.calls] == [("apply", (True, False), new), ("rollback", (), before)]
    assert stack.running == before
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]
    assert all(NEW not in line for line in caught.value.result.last_logs)  # masked before anyone sees them
    assert caught.value.rollback_problems == []


def test_undo_swaps_the_pair_and_flips_the_logins(tmp_path):
    root = install(tmp_path)
    stack = FakeStack(root)
    done = Engine(str(root), stack=stack).apply(rotation(root))
    engine = Engine(str(root), "undo", stack=stack)
    undo, conflicts = engine.undo_plan(done.txn)
    assert not conflicts
    first, last = undo.changes[0], undo.changes[-1]
    assert isinstance(first, Recreate) and first.when == "rollback"
    assert isinstance(last, Recreate) and last.when == "apply"
    assert [lg.accept for lg in last.logins] == [False, True]  # the old password accepted again, the new refused
    assert undo.named_secrets == {"new": NEW, "old": OLD}
    engine.apply(undo, kind="undo", undoes=done.txn.id)
    assert stack.calls[-1][0] == "apply" and stack.calls[-1][3] == f"POSTGRES_PASSWORD={OLD}\n".encode()
    assert stack.running == (root / ".env").read_bytes() == f"POSTGRES_PASSWORD={OLD}\n".encode()


@pytest.mark.parametrize("at", [0, 1, 2])
@pytest.mark.parametrize("after", [False, True])
def test_recovery_after_a_kill_at_each_entry_puts_files_and_stack_back(tmp_path, monkeypatch, at, after):
    root = install(tmp_path)
    before = (root / ".env").read_bytes()
    stack = FakeStack(root)
    engine = Engine(str(root), stack=stack)
    real = engine._apply_entry
    seen: list[object] = []

    def killed(entry, txn, redactor, ctx):
        seen.append(entry)
        if len(seen) - 1 == at and not after:
            raise KeyboardInterrupt  # killed as the entry started
        real(entry, txn, redactor, ctx)
        if len(seen) - 1 == at:
            raise KeyboardInterrupt  # killed right after its work, before "done" was written

    monkeypatch.setattr(engine, "_apply_entry", killed)
    monkeypatch.setattr(engine, "_rollback_after", lambda *a: None)  # a kill: no rollback in this process
    with pytest.raises(KeyboardInterrupt):
        engine.apply(rotation(root))
    assert [t.state for t in list_txns(str(root))] == ["prepared"]
    calls = len(stack.calls)
    messages = recover_install(str(root), stack=stack)
    assert messages and "rolled back" in messages[0] and "(" not in messages[0]  # no problems
    assert (root / ".env").read_bytes() == before
    assert stack.running == before
    assert [c[0] for c in stack.calls[calls:]] == ["rollback"]  # recreated once, with the old files
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]


def test_a_kill_mid_recreate_is_recovered(tmp_path, monkeypatch):
    root = install(tmp_path)
    before = (root / ".env").read_bytes()
    stack = FakeStack(root, kill_on_apply=True)
    engine = Engine(str(root), stack=stack)
    monkeypatch.setattr(engine, "_rollback_after", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        engine.apply(rotation(root))
    stack.kill_on_apply = False
    recover_install(str(root), stack=stack)
    assert (root / ".env").read_bytes() == before and stack.running == before


def test_recovery_without_docker_says_what_to_recreate_by_hand(tmp_path, monkeypatch):
    root = install(tmp_path)
    engine = Engine(str(root), stack=FakeStack(root, kill_on_apply=True))
    monkeypatch.setattr(engine, "_rollback_after", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        engine.apply(rotation(root))
    messages = recover_install(str(root))  # no stack here
    assert "recreate api by hand: docker compose up -d --no-deps api" in messages[0]
    assert (root / ".env").read_bytes() == f"POSTGRES_PASSWORD={OLD}\n".encode()


def test_a_stack_that_cannot_recreate_during_recovery_says_what_to_do_by_hand(tmp_path, monkeypatch):
    root = install(tmp_path)
    engine = Engine(str(root), stack=FakeStack(root, kill_on_apply=True))
    monkeypatch.setattr(engine, "_rollback_after", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        engine.apply(rotation(root))

    class Down:
        def recreate(self, change, secrets, report=None):
            return GateResult(False, "docker compose up exited 1: Cannot connect to the Docker daemon")

    messages = recover_install(str(root), stack=Down())
    assert "recreate api by hand: docker compose up -d --no-deps api" in messages[0]
    assert "Cannot connect to the Docker daemon" in messages[0]
    assert (root / ".env").read_bytes() == f"POSTGRES_PASSWORD={OLD}\n".encode()


def test_without_a_stack_the_recreate_is_refused_and_nothing_stays_changed(tmp_path):
    root = install(tmp_path)
    with pytest.raises(EngineError, match="the Docker Engine is needed to recreate api"):
        Engine(str(root)).apply(rotation(root))
    assert (root / ".env").read_bytes() == f"POSTGRES_PASSWORD={OLD}\n".encode()


def test_the_preview_shows_the_exact_command_and_the_gate(tmp_path):
    root = install(tmp_path)
    text = render(rotation(root), str(root))
    assert (f"docker compose -p desterlib --project-directory {root} -f {root}/docker-compose.yml up -d --no-deps "
            "--wait --wait-timeout 120 api") in text
    assert ("then wait until healthy: healthcheck, no restart, GET /health 200, the database accepts the new "
            "password and refuses the old one") in text
    assert text.splitlines()[0] == "Plan for SEC-001: 1 file edit(s), 0 mode change(s), recreate api."
    assert NEW not in text and OLD not in text


def test_the_journal_holds_no_secret_and_a_tampered_entry_is_refused(tmp_path, monkeypatch):
    root = install(tmp_path)
    engine = Engine(str(root), stack=FakeStack(root, kill_on_apply=True))
    monkeypatch.setattr(engine, "_rollback_after", lambda *a: None)
    with pytest.raises(KeyboardInterrupt):
        engine.apply(rotation(root))
    txn = list_txns(str(root))[0]
    raw = (Path(txn.dir) / "intent.json").read_text()
    assert NEW not in raw and OLD not in raw
    intent = json.loads(raw)
    recreates = [e for e in intent["entries"] if e["type"] == "recreate"]
    assert [e["when"] for e in recreates] == ["rollback", "apply"]
    assert recreates[1]["logins"][0] == {"service": "postgres", "user": "desterlib", "database": "desterlib",
                                         "secret": "new", "accept": True}
    recreates[1]["when"] = "sometimes"
    os.chmod(Path(txn.dir) / "intent.json", 0o600)
    (Path(txn.dir) / "intent.json").write_text(json.dumps(intent))
    with pytest.raises(BadJournal):
        recover_install(str(root), stack=FakeStack(root))


def test_a_login_whose_secret_the_plan_lacks_is_refused_before_anything_runs(tmp_path):
    root = install(tmp_path)
    plan = rotation(root)
    plan.named_secrets = {"new": NEW}
    with pytest.raises(EngineError, match="no secret named old"):
        Engine(str(root), stack=FakeStack(root)).apply(plan)
    assert list_txns(str(root)) == []


def test_usecases_tell_the_revert_with_masked_log_lines(tmp_path):
    root = install(tmp_path)
    before = (root / ".env").read_bytes()
    done = usecases.apply(str(root), rotation(root), command="fix", profile="local",
                          stack=FakeStack(root, fail_apply=True))
    assert done.reverted is not None and done.txn_id == ""
    assert done.reverted.message == ("api did not become healthy within 120 s (restarted 3 times): the files were "
                                     "restored and api recreated with them; its last log lines:")
    assert len(done.reverted.last_logs) == 2 and all(NEW not in ln for ln in done.reverted.last_logs)
    assert (root / ".env").read_bytes() == before


def test_usecases_say_what_was_recreated_and_in_how_long(tmp_path):
    root = install(tmp_path)
    heard: list[str] = []
    done = usecases.apply(str(root), rotation(root), command="fix", profile="local", stack=FakeStack(root),
                          report=lambda what, elapsed: heard.append(what))
    assert done.reverted is None and [r.text() for r in done.recreated] == ["recreated api (healthy in 2.4 s)"]
    assert heard == ["recreating api"]
    preview = usecases.undo_preview(str(root), None, stack=FakeStack(root))
    undone = usecases.undo(str(root), preview, stack=FakeStack(root))
    assert [r.text() for r in undone.recreated] == ["recreated api (healthy in 2.4 s)"]


def test_files_handler_untouched(tmp_path):
    # the Recreate kind is registered beside the others, after them in the preview
    from checks.change.handlers import handlers

    kinds = [h.entry_type for h in handlers()]
    assert kinds.index("recreate") > kinds.index(files_handler.FILES.entry_type)


def test_a_common_word_password_is_no_secret_in_a_container_name(tmp_path):
    from checks.change.plan import Command

    root = install(tmp_path)
    argv = ("docker", "exec", "-i", "desterlib-postgres", "psql", "-U", "desterlib")
    plan = Plan(checks=["SEC-001"], changes=[Command(argv, argv, "ALTER ROLE", stdin_secret="sql")])
    plan.named_secrets = {"sql": "ALTER ROLE ...", "old": "postgres"}

    class Ok:
        def run(self, argv, stdin=None, env=None):
            from checks.change.executor import Ran

            return Ran(0)

    Engine(str(root), executor=Ok()).apply(plan)  # "postgres", the demo's password, is also the container's name
    plan.named_secrets["old"] = "desterlib-postgres-Zq9x"
    bad = Plan(checks=["SEC-001"], changes=[Command((*argv, "desterlib-postgres-Zq9x"), argv, "leaky")],
               named_secrets=plan.named_secrets)
    with pytest.raises(EngineError, match="a secret in its arguments"):
        Engine(str(root), executor=Ok()).apply(bad)
