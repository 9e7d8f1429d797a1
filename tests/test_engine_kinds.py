"""Commands with their inverse on a fake executor, tentative transactions, and stale plans refused.

Nothing here needs root: the engine's own behaviour, on files of the user running the tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from checks.change import engine as engine_mod
from checks.change.engine import TENTATIVE, Engine, EngineError, StaleError, recover_install
from checks.change.executor import Ran
from checks.change.journal import history, list_txns
from checks.change.plan import Command, FileEdit, ModeChange, Plan
from tests.conftest import run_cli

SECRET = "s3cr3t-Pa55word-xyz"


class FakeExecutor:
    """Records every run; ``fail`` is a set of programs (argv[0]) that exit 1."""

    def __init__(self, fail: Sequence[str] = (), kill_at: str | None = None) -> None:
        self.runs: list[tuple[tuple[str, ...], bytes | None, dict[str, str]]] = []
        self.fail = set(fail)
        self.kill_at = kill_at
        self.effects: list[str] = []

    def run(self, argv: Sequence[str], stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> Ran:
        self.runs.append((tuple(argv), stdin, dict(env or {})))
        if argv[0] == self.kill_at:
            raise KeyboardInterrupt  # as a kill midway: the engine is stopped while the program runs
        if argv[0] in self.fail:
            return Ran(1)
        if argv[0] == "check":
            return Ran(0 if argv[1] in self.effects else 1)
        if argv[0] == "on":
            self.effects.append(argv[1])
        elif argv[0] == "off" and argv[1] in self.effects:
            self.effects.remove(argv[1])
        return Ran(0)


def install(tmp_path: Path) -> Path:
    root = tmp_path / "desterlib"
    root.mkdir()
    (root / "docker-compose.yml").write_bytes(b"services: {}\n")
    (root / ".env").write_bytes(b"A=1\n")
    return root


def cmd(name: str, **kw) -> Command:
    return Command(("on", name), ("off", name), f"turn {name} on", **kw)


def test_a_command_runs_and_its_undo_runs_the_inverse(tmp_path):
    root = install(tmp_path)
    fake = FakeExecutor()
    plan = Plan(checks=["LIVE-1"], changes=[cmd("a")])
    result = Engine(str(root), executor=fake).apply(plan)
    assert fake.effects == ["a"]
    engine = Engine(str(root), "undo", executor=fake)
    undo, conflicts = engine.undo_plan(result.txn)
    assert not conflicts and undo.changes == [Command(("off", "a"), ("on", "a"), "undo: turn a on")]
    engine.apply(undo, kind="undo", undoes=result.txn.id)
    assert fake.effects == []


def test_a_failing_command_rolls_back_the_earlier_entries(tmp_path):
    root = install(tmp_path)
    fake = FakeExecutor(fail=["bad"])
    plan = Plan(checks=["LIVE-1"], changes=[FileEdit(str(root / ".env"), b"A=1\n", b"A=2\n"), cmd("a"),
                                            Command(("bad",), ("off", "bad"), "a failing step")])
    with pytest.raises(EngineError, match="a failing step failed"):
        Engine(str(root), executor=fake).apply(plan)
    assert fake.effects == [] and (root / ".env").read_bytes() == b"A=1\n"
    assert ("off", "bad") not in [r[0] for r in fake.runs]  # it failed: nothing of it to take back
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]


def test_a_kill_mid_command_is_recovered_by_its_check(tmp_path):
    root = install(tmp_path)
    fake = FakeExecutor(kill_at="slow")
    plan = Plan(checks=["LIVE-1"], changes=[cmd("a"), Command(("slow", "b"), ("off", "b"), "b", check=("check", "b"))])
    engine = Engine(str(root), executor=fake)
    engine._rollback_after = lambda *a: None  # type: ignore[method-assign]  # killed: no in-process rollback
    with pytest.raises(KeyboardInterrupt):
        engine.apply(plan)
    assert [t.state for t in list_txns(str(root))] == ["prepared"]
    fake.kill_at = None
    monkey = Engine(str(root), "recover", executor=fake)
    with monkey.locked():
        messages = monkey.recover()
    assert messages and "rolled back" in messages[0]
    assert fake.effects == []
    ran = [r[0] for r in fake.runs]
    assert ("check", "b") in ran and ("off", "b") not in ran  # b never took effect: its inverse is not run
    assert ran[-1] == ("off", "a")
    actions = history(str(root))[-1].actions
    assert [(a.what, a.argv[0]) for a in actions] == [("apply", "on"), ("check", "check"), ("rollback", "off")]
    assert all(a.start and a.end for a in actions)


def test_a_command_without_an_inverse_is_refused(tmp_path):
    root = install(tmp_path)
    plan = Plan(checks=["LIVE-1"], changes=[Command(("on", "a"), (), "no way back")])
    with pytest.raises(EngineError, match="without an inverse"):
        Engine(str(root), executor=FakeExecutor()).apply(plan)
    assert list_txns(str(root)) == []


def test_secrets_reach_a_command_on_stdin_and_in_its_env_only(tmp_path):
    root = install(tmp_path)
    fake = FakeExecutor()
    plan = Plan(checks=["LIVE-1"], changes=[cmd("a", stdin_secret="db", env_secrets=(("PGPASSWORD", "db"),))])
    plan.named_secrets = {"db": SECRET}
    plan.secrets = {SECRET}
    result = Engine(str(root), executor=fake).apply(plan)
    argv, stdin, env = fake.runs[0]
    assert stdin == SECRET.encode() and env == {"PGPASSWORD": SECRET} and SECRET not in " ".join(argv)
    for path in Path(result.txn.dir).iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
    # The undo gets the secret back from the store, not from the journal.
    engine = Engine(str(root), "undo", executor=fake)
    undo, _ = engine.undo_plan(result.txn)
    engine.apply(undo, kind="undo", undoes=result.txn.id)
    assert fake.runs[-1][1] == SECRET.encode()


def test_a_secret_in_a_commands_argv_is_refused_and_the_log_is_masked(tmp_path):
    root = install(tmp_path)
    plan = Plan(checks=["LIVE-1"], changes=[Command(("on", SECRET), ("off", "x"), "leaky")])
    plan.named_secrets = {"db": SECRET}
    with pytest.raises(EngineError, match="secret in its arguments"):
        Engine(str(root), executor=FakeExecutor()).apply(plan)
    assert list_txns(str(root)) == []
    # Behind that refusal, the action log masks a known secret anyway.
    from checks.change.executor import ActionLog, read_actions

    log = ActionLog(str(tmp_path), [SECRET])
    assert log.run(FakeExecutor(), 0, "apply", ["on", f"--password={SECRET}"]) == 0
    raw = (tmp_path / "actions").read_bytes()
    assert SECRET.encode() not in raw and read_actions(raw)[0].argv[0] == "on"


# -- tentative transactions ------------------------------------------------------------


def tentative_fix(root: Path, seconds: float) -> str:
    plan = Plan(checks=["FW-1"], changes=[FileEdit(str(root / ".env"), b"A=1\n", b"A=2\n")])
    result = Engine(str(root)).apply(plan, tentative=seconds)
    assert result.txn.state == TENTATIVE
    return result.txn.id


def test_a_tentative_transaction_past_its_deadline_is_rolled_back_by_recover(tmp_path, monkeypatch):
    root = install(tmp_path)
    tentative_fix(root, 60)
    assert recover_install(str(root)) == []  # before the deadline it stays
    assert (root / ".env").read_bytes() == b"A=2\n"
    now = engine_mod._now()
    monkeypatch.setattr(engine_mod, "_now", lambda: now + 61)
    messages = recover_install(str(root))
    assert messages and "not confirmed before its deadline" in messages[0]
    assert (root / ".env").read_bytes() == b"A=1\n"
    assert [t.state for t in list_txns(str(root))] == ["rolled-back"]


@pytest.mark.parametrize("command", [["fix", "--dry-run"], ["history"]])
def test_a_tentative_transaction_past_its_deadline_is_rolled_back_by_the_next_command(tmp_path, command):
    root = install(tmp_path)
    txn = tentative_fix(root, 0)
    res = run_cli(*command, "--dir", str(root))
    assert res.code in (0, 1), res.err
    assert (root / ".env").read_bytes() == b"A=1\n"
    assert [t.state for t in list_txns(str(root)) if t.id == txn] == ["rolled-back"]


def test_confirm_makes_a_tentative_transaction_permanent(tmp_path, monkeypatch):
    root = install(tmp_path)
    txn = tentative_fix(root, 60)
    with pytest.raises(EngineError, match="nothing to undo"):
        Engine(str(root)).find(None)  # not undoable while tentative
    [tentative] = list_txns(str(root))
    assert tentative.intent["deadline"] > engine_mod._now()
    Engine(str(root)).confirm(txn)
    now = engine_mod._now()
    monkeypatch.setattr(engine_mod, "_now", lambda: now + 3600)
    assert recover_install(str(root)) == []
    assert (root / ".env").read_bytes() == b"A=2\n"
    assert Engine(str(root)).find(None).id == txn


def test_confirm_after_the_deadline_is_refused_and_the_change_rolled_back(tmp_path):
    root = install(tmp_path)
    txn = tentative_fix(root, 0)
    with pytest.raises(EngineError, match="rolled-back"):
        Engine(str(root)).confirm(txn)
    assert (root / ".env").read_bytes() == b"A=1\n"


# -- what was previewed is what is applied -----------------------------------------------


def test_a_file_changed_after_the_preview_is_refused_and_nothing_written(tmp_path):
    root = install(tmp_path)
    env, compose = root / ".env", root / "docker-compose.yml"
    plan = Plan(checks=["SEC-1"], changes=[ModeChange(str(compose), compose.stat().st_mode & 0o7777, 0o600),
                                           FileEdit(str(env), b"A=1\n", b"A=2\n")])
    env.write_bytes(b"A=9\n")  # edited between the preview and the yes
    mode = compose.stat().st_mode & 0o7777
    with pytest.raises(StaleError, match="changed since the preview"):
        Engine(str(root)).apply(plan)
    assert env.read_bytes() == b"A=9\n" and compose.stat().st_mode & 0o7777 == mode
    assert list_txns(str(root)) == []


def test_a_mode_changed_after_the_preview_is_refused_and_nothing_written(tmp_path):
    root = install(tmp_path)
    env, compose = root / ".env", root / "docker-compose.yml"
    os.chmod(compose, 0o644)
    plan = Plan(checks=["SEC-1"], changes=[FileEdit(str(env), b"A=1\n", b"A=2\n"),
                                           ModeChange(str(compose), 0o644, 0o600)])
    os.chmod(compose, 0o664)
    with pytest.raises(StaleError, match="mode changed since the preview"):
        Engine(str(root)).apply(plan)
    assert env.read_bytes() == b"A=1\n" and compose.stat().st_mode & 0o7777 == 0o664
    assert list_txns(str(root)) == []


# -- the host journal ---------------------------------------------------------------------


def host_plan() -> Plan:
    return Plan(checks=["FW-1"], changes=[cmd("fw", host=True)])


def test_host_changes_take_the_host_lock_and_are_recorded_there(tmp_path):
    from checks.change.hostjournal import host_dir, host_locked, records
    from checks.change.lock import LockedError

    root = install(tmp_path)
    fake = FakeExecutor()
    result = Engine(str(root), executor=fake).apply(host_plan())
    assert fake.effects == ["fw"]
    [rec] = records()
    assert rec["id"] == result.txn.id and rec["install"] == str(root) and rec["entries"][0]["argv"] == ["on", "fw"]
    assert host_dir().startswith(os.environ["DESTER_HARDEN_STATE_DIR"])
    with host_locked("firewall"), pytest.raises(LockedError, match="changing this host"):
        Engine(str(root), executor=fake).apply(Plan(checks=["FW-1"], changes=[cmd("other", host=True)]))
    assert fake.effects == ["fw"]


def _untrusted(kind: str, d: Path) -> None:
    if kind == "symlink":
        elsewhere = d.parent / "elsewhere"
        elsewhere.mkdir(mode=0o700)
        d.symlink_to(elsewhere)
    elif kind == "group-writable":
        d.mkdir(mode=0o700)
        os.chmod(d, 0o770)
    elif kind == "other-uid":
        d.mkdir(mode=0o700)
        os.chown(d, 65534, 65534)
    elif kind == "lock-of-other-uid":
        d.mkdir(mode=0o700)
        (d / "lock").write_text("{}")
        os.chmod(d / "lock", 0o600)
        os.chown(d / "lock", 65534, 65534)


@pytest.mark.parametrize("kind", ["symlink", "group-writable", "other-uid", "lock-of-other-uid"])
def test_an_untrusted_host_journal_is_refused_with_one_line_and_nothing_runs(tmp_path, kind):
    from checks.change.hostjournal import host_dir
    from checks.change.trust import UntrustedJournal

    if kind.endswith("other-uid") and os.geteuid() != 0:
        pytest.skip("needs root to give the host journal to another user")
    root = install(tmp_path)
    d = Path(host_dir())
    d.parent.mkdir(parents=True, exist_ok=True)
    _untrusted(kind, d)
    fake = FakeExecutor()
    with pytest.raises(UntrustedJournal) as err:
        Engine(str(root), executor=fake).apply(host_plan())
    assert len(str(err.value).splitlines()) == 1 and "not used" in str(err.value)
    assert fake.runs == [] and list_txns(str(root)) == []
