"""Live password rotation, OPS-002's and FS-007's fixes, Redis' gate logins: plans and the engine on fakes.

The real thing (a real PostgreSQL in a real dockerd) is tests/test_rotation_live.py; here a
:class:`LiveState` is data and the executor records what it was asked to run.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from checks.change.engine import Engine
from checks.change.executor import Ran
from checks.change.plan import Command, FileEdit, Plan, Recreate
from checks.change.stack import GateResult
from checks.fix import rotate
from checks.fix.planner import plan_fixes
from checks.live.model import Container, LiveState, LogFinding
from tests.apphelpers import seeded_secrets
from tests.installs import CLI_PASSWORD, cli_install, newer_install


class Recorder:
    """An executor that records (argv, stdin, env) and succeeds (or fails the programs in ``fail``)."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.runs: list[tuple[tuple[str, ...], bytes | None, dict[str, str]]] = []
        self.fail = set(fail)

    def run(self, argv: Sequence[str], stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> Ran:
        self.runs.append((tuple(argv), stdin, dict(env or {})))
        return Ran(1 if argv[0] in self.fail else 0)


class OkStack:
    """A stack whose every recreate comes up healthy; it remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[Recreate] = []

    def recreate(self, change: Recreate, secrets: Mapping[str, str], report=None) -> GateResult:
        self.asked.append(change)
        return GateResult(True, "", change.services)


def container(service: str, name: str, status: str = "running") -> Container:
    return Container(id="c0ffee" + service, name=name, service=service, status=status, health=None,
                     restart_count=0, started_at="", image="x", image_id="sha256:1", image_created=None)


def live(*containers: Container, logs: tuple[LogFinding, ...] = ()) -> LiveState:
    from checks.live.model import EngineInfo

    return LiveState(project="desterlib", engine=EngineInfo("28.2.2", "1.50", "unix:///x"),
                     containers=containers, logs=logs)


def demo_live(**kw) -> LiveState:
    return live(container("postgres", "desterlib-postgres"), container("api", "desterlib-api"),
                container("redis", "desterlib-redis"), **kw)


@pytest.fixture
def ops_002_fails(monkeypatch):
    """OPS-002 fails as its live rule (checks/audit/rules/live.py) says on a LiveState with a leak."""
    from checks.audit.catalog import BY_ID
    from checks.audit.findings import FAIL, Finding
    from checks.audit.run import run_audit as real
    from checks.fix import planner as planner_mod

    def audit(inst, profile="local", only=None, **kw):
        rep = real(inst, profile, only=only, **kw)
        if only is None or "OPS-002" in only:
            rep.findings = [f for f in rep.findings if f.id != "OPS-002"] + [Finding(BY_ID["OPS-002"], FAIL, "medium")]
        return rep

    monkeypatch.setattr(planner_mod, "run_audit", audit)


def named(plan: Plan, name: str | None) -> str:
    assert name is not None
    return plan.named_secrets[name]


def secrets_of(plan: Plan) -> set[str]:
    return {v for v in plan.named_secrets.values() if v} | plan.secrets


# -- the statement --------------------------------------------------------------


def test_identifiers_and_literals_are_quoted_so_any_password_works():
    assert rotate.alter_role("desterlib", "pw") == "ALTER ROLE \"desterlib\" WITH PASSWORD 'pw';\n"
    assert rotate.alter_role('we"ird', "it's") == "ALTER ROLE \"we\"\"ird\" WITH PASSWORD 'it''s';\n"
    # standard_conforming_strings (on since 9.1): a backslash is itself, ':' is no psql variable inside quotes
    assert rotate.alter_role("u", "a\\b:c") == "ALTER ROLE \"u\" WITH PASSWORD 'a\\b:c';\n"
    with pytest.raises(ValueError):
        rotate.quote_literal("nul\x00")


# -- plans --------------------------------------------------------------------------


def test_with_the_database_running_sec_001_plans_alter_role_before_the_files(tmp_path):
    root = cli_install(tmp_path)
    plan, planner = plan_fixes(str(root), only={"SEC-001"}, new_secret=seeded_secrets(), live=demo_live(),
                               validate_with_compose=False)
    kinds = [type(c).__name__ for c in plan.changes]
    # The order the module docstring of checks/fix/rotate.py explains.
    assert kinds[:2] == ["Recreate", "Command"] and kinds[-1] == "Recreate" and set(kinds[2:-1]) == {"FileEdit"}
    first, last = plan.changes[0], plan.changes[-1]
    assert isinstance(first, Recreate) and isinstance(last, Recreate)
    assert (first.when, last.when) == ("rollback", "apply")
    assert last.services == ("api",)  # POSTGRES_PASSWORD is read at initdb only: the database is not recreated
    assert last.logins == tuple(planner.logins) and last.http == ("api",)
    cmd = plan.changes[1]
    assert isinstance(cmd, Command)
    assert cmd.argv == ("docker", "exec", "-i", "desterlib-postgres", "psql", "-v", "ON_ERROR_STOP=1", "-q",
                        "-U", "desterlib", "-d", "desterlib")
    assert cmd.inverse == cmd.argv and cmd.check is None  # the inverse is idempotent: safe after any kill
    new = next(iter(planner.generated))
    assert named(plan, cmd.stdin_secret) == rotate.alter_role("desterlib", new)
    assert named(plan, cmd.stdin_for_inverse) == rotate.alter_role("desterlib", CLI_PASSWORD)
    for secret in secrets_of(plan):
        assert not any(secret in a for a in cmd.argv + cmd.inverse)
        assert not any(secret in n for n in plan.notes) and secret not in cmd.description
    assert not any("psql -U" in n for n in plan.notes)  # no manual step left
    logins = planner.logins
    assert [(x.user, x.database, plan.named_secrets[x.secret], x.accept) for x in logins] == [
        ("desterlib", "desterlib", new, True), ("desterlib", "desterlib", CLI_PASSWORD, False)]
    assert {x.service for x in logins} == {"postgres"} and {x.kind for x in logins} == {"postgres"}


@pytest.mark.parametrize("state", [None, "no-docker", "stopped"])
def test_without_a_running_database_the_rotation_is_files_only_and_says_how(tmp_path, state):
    root = cli_install(tmp_path)
    state_of = {None: None, "no-docker": LiveState(project="desterlib", engine_error="permission denied"),
                "stopped": live(container("postgres", "desterlib-postgres", "exited"))}
    from checks.fix.planner import Planner

    planner = Planner(str(root), new_secret=seeded_secrets(), live=state_of[state])
    planner.validate_with_compose = False
    plan = planner.build({"SEC-001"})
    assert not [c for c in plan.changes if isinstance(c, Command)] and plan.files()
    assert any("\\password desterlib" in n for n in plan.notes)
    assert planner.logins == []


def test_sec_001_and_sec_002_in_one_plan_change_the_role_once(tmp_path):
    root = cli_install(tmp_path)
    env = root / ".env"
    env.write_text(env.read_text().replace(CLI_PASSWORD, "OtherPassw0rd", 1))  # SEC-002 fails too
    plan, planner = plan_fixes(str(root), only={"SEC-001", "SEC-002"}, new_secret=seeded_secrets(),
                               live=demo_live(), validate_with_compose=False)
    cmds = [c for c in plan.changes if isinstance(c, Command)]
    assert len(cmds) == 1
    assert {r.new for r in planner.rotations.values()} <= planner.generated


def test_ops_002_rotates_a_strong_password_and_empties_the_leaked_log(tmp_path, ops_002_fails):
    root = newer_install(tmp_path, hardened=True)
    # The newer layout with PostgreSQL: a leaked URL in desterlib-data/logs/combined.log.
    strong = "Str0ngButLeakedPassw0rdStr0ngButLeaked12"
    compose = root / "docker" / "docker-compose.yml"
    text = compose.read_text()
    text = text.replace("services:\n", "services:\n  postgres:\n    image: postgres:15-alpine\n"
                        "    environment:\n      POSTGRES_USER: desterlib\n"
                        "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n      POSTGRES_DB: desterlib\n"
                        "    networks:\n      - desterlib-net\n    security_opt:\n"
                        "      - \"no-new-privileges:true\"\n    logging:\n      driver: json-file\n"
                        "      options:\n        max-size: \"10m\"\n        max-file: \"3\"\n", 1)
    text = text.replace("DATABASE_URL: file:/app/db/main.db",
                        "DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib")
    compose.write_text(text)
    with open(root / ".env", "a") as fh:
        fh.write(f"POSTGRES_PASSWORD={strong}\n")
    log = root / "desterlib-data" / "logs" / "combined.log"
    leaked = (f"info: Database: postgresql://desterlib:{strong}@postgres:5432/desterlib\n"
              "info: listening on 3001\n").encode()
    log.write_bytes(leaked)
    state = live(container("postgres", "p-1"), container("api", "desterlib-api"),
                 logs=(LogFinding("desterlib-data/logs/combined.log", leaked_lines=(1,), lines=2),))
    plan, planner = plan_fixes(str(root), only={"OPS-002"}, new_secret=seeded_secrets(), live=state,
                               validate_with_compose=False)
    assert "OPS-002" in plan.checks, plan.refusals
    assert isinstance(plan.changes[1], Command)
    truncate = [c for c in plan.changes if isinstance(c, FileEdit) and c.path == str(log)]
    assert truncate and truncate[0].after == b"" and truncate[0].before == leaked
    new = next(iter(planner.generated))
    assert new in (root / ".env").read_text() or any(
        isinstance(c, FileEdit) and new.encode() in c.after for c in plan.changes)
    assert strong in plan.secrets
    # Applied: the journal's plaintext never holds the leaked password; undo puts the log back byte for byte.
    rec = Recorder()
    result = Engine(str(root), executor=rec, stack=OkStack()).apply(plan)
    assert log.read_bytes() == b""
    for dirpath, _dirs, files in os.walk(result.txn.dir):
        for name in files:
            data = Path(dirpath, name).read_bytes()
            assert strong.encode() not in data and new.encode() not in data, name
    engine = Engine(str(root), "undo", executor=rec, stack=OkStack())
    undo, conflicts = engine.undo_plan(result.txn)
    assert not conflicts
    engine.apply(undo, kind="undo", undoes=result.txn.id)
    assert log.read_bytes() == leaked
    # The undo's ALTER ROLE put the old password back: its statement on stdin, never in argv.
    assert rec.runs[-1][1] == rotate.alter_role("desterlib", strong).encode()
    assert all(strong not in " ".join(argv) for argv, _, _ in rec.runs)


def test_ops_002_for_a_log_inside_the_container_says_the_recreate_discards_it(tmp_path, ops_002_fails):
    root = cli_install(tmp_path)
    state = demo_live(logs=(LogFinding("docker logs api", leaked_lines=(1, 4), lines=9),))
    plan, _ = plan_fixes(str(root), only={"OPS-002"}, new_secret=seeded_secrets(), live=state,
                         validate_with_compose=False)
    assert "OPS-002" in plan.checks
    assert any("discards its old log" in n for n in plan.notes)
    assert [c for c in plan.changes if isinstance(c, Command)]


def test_bursts_without_a_leak_are_refused_not_planned(tmp_path, ops_002_fails):
    root = cli_install(tmp_path)
    state = demo_live(logs=(LogFinding("docker logs api", too_many_requests={"2026-12-01T14": 300}, lines=400),))
    plan, _ = plan_fixes(str(root), only={"OPS-002"}, live=state, validate_with_compose=False)
    assert plan.empty and [r.check for r in plan.refusals] == ["OPS-002"]


# -- the engine on a fake executor ------------------------------------------------


def test_a_failed_apply_takes_the_role_back_with_the_old_statement(tmp_path):
    root = cli_install(tmp_path)
    plan, planner = plan_fixes(str(root), only={"SEC-001"}, new_secret=seeded_secrets(), live=demo_live(),
                               validate_with_compose=False)
    before = {p: Path(p).read_bytes() for p in plan.files()}
    # A command after the file edits that fails: the engine rolls everything back.
    plan.changes.append(Command(("boom",), ("true",), "fails"))
    rec = Recorder(fail=("boom",))
    with pytest.raises(Exception, match="fails failed"):
        Engine(str(root), executor=rec, stack=OkStack()).apply(plan)
    new = next(iter(planner.generated))
    stdins = [(argv[0], stdin) for argv, stdin, _ in rec.runs]
    assert stdins == [("docker", rotate.alter_role("desterlib", new).encode()), ("boom", None),
                      ("docker", rotate.alter_role("desterlib", CLI_PASSWORD).encode())]
    assert {p: Path(p).read_bytes() for p in plan.files()} == before


def test_undo_runs_the_old_statement_and_its_own_undo_the_new_one(tmp_path):
    root = cli_install(tmp_path)
    plan, planner = plan_fixes(str(root), only={"SEC-001"}, new_secret=seeded_secrets(), live=demo_live(),
                               validate_with_compose=False)
    new = next(iter(planner.generated))
    rec = Recorder()
    result = Engine(str(root), executor=rec, stack=OkStack()).apply(plan)
    engine = Engine(str(root), "undo", executor=rec, stack=OkStack())
    undo, _ = engine.undo_plan(result.txn)
    cmd = next(c for c in undo.changes if isinstance(c, Command))
    assert named(undo, cmd.stdin_secret) == rotate.alter_role("desterlib", CLI_PASSWORD)
    assert named(undo, cmd.stdin_for_inverse) == rotate.alter_role("desterlib", new)
    undone = engine.apply(undo, kind="undo", undoes=result.txn.id)
    assert rec.runs[-1][1] == rotate.alter_role("desterlib", CLI_PASSWORD).encode()
    # The undo undone (a redo): the new password again.
    again, _ = Engine(str(root), "undo", executor=rec, stack=OkStack()).undo_plan(undone.txn)
    cmd2 = next(c for c in again.changes if isinstance(c, Command))
    assert named(again, cmd2.stdin_secret) == rotate.alter_role("desterlib", new)


# -- SEC-005's gate logins and FS-007 ------------------------------------------------


def test_sec_005_with_redis_running_asks_the_gate_to_check_the_password(tmp_path):
    root = newer_install(tmp_path)
    state = live(container("redis", "desterlib-redis"), container("api", "desterlib-api"))
    plan, planner = plan_fixes(str(root), only={"SEC-005"}, new_secret=seeded_secrets(), live=state,
                               validate_with_compose=False)
    logins = planner.logins
    assert [(x.service, x.kind, x.accept) for x in logins] == [("redis", "redis", True), ("redis", "redis", False)]
    password = plan.named_secrets[logins[0].secret]
    assert password and password in planner.generated and plan.named_secrets[logins[1].secret] == ""
    assert not any("recreate it and the API with `docker compose up -d`" in n for n in plan.notes)
    env = next(c for c in plan.changes if isinstance(c, FileEdit) and c.path.endswith(".env"))
    assert f"REDIS_PASSWORD={password}".encode() in env.after


def test_sec_005_without_docker_keeps_the_manual_note(tmp_path):
    root = newer_install(tmp_path)
    plan, planner = plan_fixes(str(root), only={"SEC-005"}, new_secret=seeded_secrets(),
                               validate_with_compose=False)
    assert planner.logins == []
    assert any("`docker compose up -d`" in n for n in plan.notes)


def test_fs_007_makes_the_sqlite_database_and_its_directory_private(tmp_path, monkeypatch):
    root = newer_install(tmp_path)
    db = root / "desterlib-data" / "db"
    for name in ("main.db", "main.db-wal", "main.db-shm"):
        (db / name).write_bytes(b"x")
        os.chmod(db / name, 0o644)
    os.chmod(db, 0o755)
    from checks.fix.planner import Planner

    def targets(self, check_id, inst, kind):
        # What FS-007's evidence hands its fix: the database's host path.
        return [("api", str(db / "main.db"))] if check_id == "FS-007" else []

    monkeypatch.setattr(Planner, "targets", targets)
    planner = Planner(str(root))
    from checks.fix import fs

    fs.fix_fs_007(planner)
    assert {k: v for k, v in planner.overlay.modes.items()} == {
        str(db / "main.db"): 0o600, str(db / "main.db-wal"): 0o600, str(db / "main.db-shm"): 0o600, str(db): 0o700}
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o755  # planned, not written


class FakeRedisCli:
    """``docker exec ... redis-cli -h IP PING`` against a Redis with ``requirepass`` (or none)."""

    def __init__(self, requirepass: str | None) -> None:
        self.requirepass = requirepass
        self.calls: list[tuple[tuple[str, ...], dict[str, str]]] = []

    def __call__(self, argv, env, stdin, timeout):
        from checks.live.stack import Ran as StackRan

        self.calls.append((tuple(argv), dict(env)))
        # The container's environment has REDISCLI_AUTH (SEC-005 adds it for healthchecks): it counts
        # unless `-e REDISCLI_AUTH` replaces it or `env -u REDISCLI_AUTH` removes it.
        auth = self.requirepass
        if "-e" in argv:
            auth = env.get("REDISCLI_AUTH")
        elif "-u" in argv:
            auth = None
        err = ""
        if auth is not None and self.requirepass is None:
            err = "AUTH failed: ERR AUTH <password> called without any password configured for the default user.\n"
        if self.requirepass is not None and auth != self.requirepass:
            if auth is not None:
                err = "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\n"
            return StackRan(0, "NOAUTH Authentication required.\n", err)
        return StackRan(0, "PONG\n", err)


@pytest.mark.parametrize("requirepass", [None, "R3dis-Pa55word-long-enough"])
def test_the_redis_gate_login_judges_ping_and_never_puts_the_password_in_argv(requirepass):
    from checks.change.plan import Login
    from checks.live.stack import ComposeStack, _Seen

    fake = FakeRedisCli(requirepass)
    stack = ComposeStack(run=fake)
    from checks.core.secrets import Masker

    stack._masker = Masker(["R3dis-Pa55word-long-enough"])
    seen = _Seen("r1", "redis", "running", 0, None, 0, None, ("172.18.0.4",), 6379)

    def judge(password: str, accept: bool) -> str | None:
        return stack._redis_login(Login("redis", "default", "0", "x", accept, kind="redis"), seen, password, 5.0)

    with_pw, without = judge("R3dis-Pa55word-long-enough", True), judge("", False)
    if requirepass:  # after SEC-005: the password lets in, no password is refused
        assert with_pw is None and without is None
    else:  # before it (what an undo must find again): the flipped logins hold, the fix's fail
        assert with_pw == "redis refused its password" and without == "redis still lets in a client without a password"
        assert judge("R3dis-Pa55word-long-enough", False) is None and judge("", True) is None
    for argv, env in fake.calls:
        assert not any("R3dis" in a for a in argv) and "redis-cli" in argv and argv[-1] == "PING"
        assert ("-e" in argv) == bool(env) and env in ({}, {"REDISCLI_AUTH": "R3dis-Pa55word-long-enough"})


def test_redis_logins_keep_their_kind_through_the_journal_and_flip_on_undo(tmp_path):
    root = newer_install(tmp_path)
    state = live(container("redis", "desterlib-redis"), container("api", "desterlib-api"),
                 container("scanner-service", "desterlib-scanner"))
    plan, _ = plan_fixes(str(root), only={"SEC-005"}, new_secret=seeded_secrets(), live=state,
                         validate_with_compose=False)
    apply_ = [c for c in plan.changes if isinstance(c, Recreate) and c.when == "apply"]
    assert apply_ and "redis" in apply_[0].services and "api" in apply_[0].services
    stack = OkStack()
    result = Engine(str(root), executor=Recorder(), stack=stack).apply(plan)
    assert [(lg.kind, lg.accept) for lg in stack.asked[-1].logins] == [("redis", True), ("redis", False)]
    undo, _ = Engine(str(root), "undo", executor=Recorder(), stack=stack).undo_plan(result.txn)
    back = [c for c in undo.changes if isinstance(c, Recreate) and c.when == "apply"]
    assert [(lg.kind, lg.accept) for lg in back[0].logins] == [("redis", False), ("redis", True)]


def test_a_well_known_old_password_in_a_container_name_is_no_secret_in_argv(tmp_path):
    # The demo's password is "postgres", which is also in "desterlib-postgres": the rotation away
    # from it must run; a real secret in argv is still refused.
    from checks.core.errors import EngineError

    root = cli_install(tmp_path)
    argv = ("docker", "exec", "-i", "desterlib-postgres", "psql")
    ok = Plan(checks=["SEC-001"], changes=[Command(argv, argv, "alter", stdin_secret="new",
                                                   inverse_stdin_secret="old")])
    ok.named_secrets = {"new": "ALTER ...", "old": "postgres"}
    Engine(str(root), executor=Recorder()).apply(ok)
    bad = Plan(checks=["SEC-001"], changes=[Command(argv + ("Kx7pLm2Qw9",), argv, "leaky", stdin_secret="new")])
    bad.named_secrets = {"new": "Kx7pLm2Qw9"}
    with pytest.raises(EngineError, match="secret in its arguments"):
        Engine(str(root), executor=Recorder()).apply(bad)


def test_sec_002_live_gives_the_database_the_password_that_counts(tmp_path):
    # The compose file's POSTGRES_PASSWORD is the one that counts; the API runs with another one in
    # its DATABASE_URL, which is what the database takes now: that is the one the undo puts back.
    root = cli_install(tmp_path)
    counts, runs_with = "C0unts-" + "a" * 36, "Runs-w1th-" + "b" * 33
    compose = root / "docker-compose.yml"
    text = compose.read_text().replace(f"POSTGRES_PASSWORD: {CLI_PASSWORD}", f"POSTGRES_PASSWORD: {counts}")
    compose.write_text(text.replace(f"desterlib:{CLI_PASSWORD}@", f"desterlib:{runs_with}@"))
    env = root / ".env"
    env.write_text(env.read_text().replace(CLI_PASSWORD, runs_with))
    plan, planner = plan_fixes(str(root), only={"SEC-002"}, live=demo_live(), validate_with_compose=False)
    assert "SEC-002" in plan.checks, plan.refusals
    cmd = next(c for c in plan.changes if isinstance(c, Command))
    assert named(plan, cmd.stdin_secret) == rotate.alter_role("desterlib", counts)
    assert named(plan, cmd.stdin_for_inverse) == rotate.alter_role("desterlib", runs_with)
    assert [plan.named_secrets[x.secret] for x in planner.logins] == [counts, runs_with]
