"""The planner's hook for the running stack: which services a plan changes, and the Recreate pair.

A fake :class:`LiveState` stands for what runs; the real recreate is tests/test_stack_real.py's.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from checks.assistant import usecases
from checks.change.plan import Recreate
from checks.fix.live import affected
from checks.fix.planner import plan_fixes
from checks.install.discovery import discover
from checks.live.model import Container, EngineInfo, LiveState
from tests.installs import cli_install

ENGINE = EngineInfo("20.10.24", "1.41", "unix:///var/run/docker.sock")


def container(service: str) -> Container:
    return Container(id=f"id-{service}", name=f"desterlib-{service}", service=service, status="running", health=None,
                     restart_count=0, started_at="", image="x", image_id="x", image_created=None)


def live(*services: str) -> LiveState:
    return LiveState(project="desterlib", engine=ENGINE, containers=tuple(container(s) for s in services))


def recreates(plan) -> list[Recreate]:
    return [c for c in plan.changes if isinstance(c, Recreate)]


def test_net_001_recreates_exactly_postgres_first_and_last(tmp_path):
    root = cli_install(tmp_path)
    plan, _ = plan_fixes(str(root), only={"NET-001"}, live=live("postgres", "redis", "api"),
                         validate_with_compose=False)
    first, last = plan.changes[0], plan.changes[-1]
    assert isinstance(first, Recreate) and first.when == "rollback" and first.services == ("postgres",)
    assert isinstance(last, Recreate) and last.when == "apply" and last.services == ("postgres",)
    assert len(recreates(plan)) == 2 and last.http == () and plan.confirm == []
    assert last.project == "desterlib" and last.directory == str(root)
    assert last.files == (str(root / "docker-compose.yml"),) and last.timeout == 120


def test_a_password_rotation_recreates_the_api_not_the_database_and_asks_first(tmp_path):
    root = cli_install(tmp_path)
    plan, _ = plan_fixes(str(root), only={"SEC-001"}, live=live("postgres", "redis", "api"),
                         validate_with_compose=False)
    last = recreates(plan)[-1]
    # POSTGRES_PASSWORD is read only when the data directory is empty: recreating postgres changes nothing
    assert last.services == ("api",) and last.http == ("api",)
    assert plan.confirm == ["recreating api runs `prisma db push --accept-data-loss` at start; no backup younger "
                            "than 24 h was found (OPS-001 looks for them); go on?"]


def test_a_recent_backup_means_no_question(tmp_path):
    root = cli_install(tmp_path)
    dump = root / "desterlib-backup.sql"
    dump.write_text("-- PostgreSQL database dump\n")
    now = time.time()
    os.utime(dump, (now - 3600, now - 3600))
    plan, _ = plan_fixes(str(root), only={"SEC-001"}, live=live("postgres", "api"), now=now,
                         validate_with_compose=False)
    assert recreates(plan)[-1].services == ("api",) and plan.confirm == []


def test_files_only_and_an_unreachable_engine_plan_no_recreate(tmp_path):
    root = cli_install(tmp_path)
    planned = usecases.plan(str(root), "local", only={"NET-001"}, live=live("postgres"), files_only=True,
                            validate_with_compose=False)
    assert recreates(planned.plan) == [] and planned.plan.files()
    down = LiveState(project="desterlib", engine_error="the Docker Engine is not reachable at unix:///x")
    plan, _ = plan_fixes(str(root), only={"NET-001"}, live=down, validate_with_compose=False)
    assert recreates(plan) == [] and plan.files()


def test_a_service_that_is_not_running_is_not_recreated_and_the_plan_says_so(tmp_path):
    root = cli_install(tmp_path)
    plan, _ = plan_fixes(str(root), live=live("postgres"), validate_with_compose=False)
    assert recreates(plan)[-1].services == ("postgres",) and plan.confirm == []
    assert any(n.startswith("Not running now, so not recreated: api") for n in plan.notes)


def test_the_health_timeout_reaches_the_plan(tmp_path):
    root = cli_install(tmp_path)
    planned = usecases.plan(str(root), "local", only={"NET-001"}, live=live("postgres"), health_timeout=15,
                            validate_with_compose=False)
    assert {c.timeout for c in recreates(planned.plan)} == {15}


def _two(tmp_path: Path, env_before: str, env_after: str, compose: str):
    root = tmp_path / "inst"
    root.mkdir(exist_ok=True)
    (root / "docker-compose.yml").write_text(compose)
    (root / ".env").write_text(env_before)
    before = discover(str(root))
    (root / ".env").write_text(env_after)
    return before, discover(str(root))


COMPOSE = """services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
  api:
    image: desterlib/api:${API_TAG:-latest}
    environment:
      DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib
  redis:
    image: redis:7-alpine
    command: redis-server --requirepass ${REDIS_PASSWORD}
"""


def test_interpolation_changes_count(tmp_path):
    base = "POSTGRES_PASSWORD=a\nAPI_TAG=1\nREDIS_PASSWORD=r\n"
    before, after = _two(tmp_path, base, base.replace("POSTGRES_PASSWORD=a", "POSTGRES_PASSWORD=b"), COMPOSE)
    assert affected(before, after) == ["api"]  # its DATABASE_URL; postgres's init-only variable does not count
    before, after = _two(tmp_path, base, base.replace("API_TAG=1", "API_TAG=2"), COMPOSE)
    assert affected(before, after) == ["api"]
    before, after = _two(tmp_path, base, base.replace("REDIS_PASSWORD=r", "REDIS_PASSWORD=s"), COMPOSE)
    assert affected(before, after) == ["redis"]  # an interpolated command
    before, after = _two(tmp_path, base, base, COMPOSE)
    assert affected(before, after) == []


# -- DKR-009 and NET-006: what runs differs from the files ------------------------------------------------


def running_as_files(root: Path, **bindings: tuple) -> LiveState:
    """Every service of ``root`` running as its files say, but with the port bindings given (service=...)."""
    from checks.live.model import Binding, LiveMount, value_digest

    inst = discover(str(root))
    out = []
    for svc in inst.services:
        ports = bindings.get(svc.name)
        if ports is None:
            ports = tuple(Binding(p.host_ip or "", int(p.published or 0), int(p.target)) for p in svc.ports)
        mounts = tuple(LiveMount(m.kind, (m.host_path or "") if m.kind == "bind" else f"desterlib_{m.source}",
                                 m.target or "", not m.read_only) for m in svc.mounts if m.target)
        out.append(Container(id=f"id-{svc.name}", name=f"desterlib-{svc.name}", service=svc.name, status="running",
                             health=None, restart_count=0, started_at="", image=svc.image_name, image_id="x",
                             image_created=None, bindings=ports, mounts=mounts,
                             env={k: value_digest(v.value or "") for k, v in svc.environment.items()}))
    return LiveState(project="desterlib", engine=ENGINE, containers=tuple(out))


def bind_postgres_locally(root: Path) -> None:
    compose = root / "docker-compose.yml"
    text = compose.read_text()
    assert '"5432:5432"' in text
    compose.write_text(text.replace('"5432:5432"', '"127.0.0.1:5432:5432"'))


def test_dkr_009_recreates_what_runs_with_old_ports_and_changes_no_file(tmp_path):
    from checks.live.model import Binding

    root = cli_install(tmp_path)
    bind_postgres_locally(root)  # fixed on disk; the container still publishes on every interface
    state = running_as_files(root, postgres=(Binding("", 5432, 5432),))
    plan, _ = plan_fixes(str(root), only={"DKR-009"}, live=state, validate_with_compose=False)
    assert plan.files() == []
    first, last = recreates(plan)
    assert (first.when, last.when) == ("rollback", "apply")
    assert last.services == ("postgres",)


def test_dkr_009_plans_nothing_when_what_runs_is_what_the_files_say(tmp_path):
    root = cli_install(tmp_path)
    bind_postgres_locally(root)
    plan, _ = plan_fixes(str(root), only={"DKR-009"}, live=running_as_files(root), validate_with_compose=False)
    assert plan.empty


def test_net_006_binds_the_port_in_the_files_and_recreates_the_database(tmp_path):
    root = cli_install(tmp_path)
    state = running_as_files(root)  # 5432:5432 in the files and in what runs: listening on every interface
    plan, _ = plan_fixes(str(root), only={"NET-006"}, live=state, validate_with_compose=False)
    compose = str(root / "docker-compose.yml")
    assert compose in plan.files()
    from checks.change.plan import FileEdit

    edit = next(c for c in plan.changes if isinstance(c, FileEdit) and c.path == compose)
    assert edit.after is not None and b"127.0.0.1:5432:5432" in edit.after
    assert "postgres" in recreates(plan)[-1].services


def test_net_006_with_the_files_fixed_already_only_recreates(tmp_path):
    from checks.live.model import Binding

    root = cli_install(tmp_path)
    bind_postgres_locally(root)
    state = running_as_files(root, postgres=(Binding("", 5432, 5432),))
    plan, _ = plan_fixes(str(root), only={"NET-006"}, live=state, validate_with_compose=False)
    assert plan.files() == []
    assert recreates(plan)[-1].services == ("postgres",)
