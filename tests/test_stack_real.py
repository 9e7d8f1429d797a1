"""The running stack for real: the lab's dockerd (tests/livelab), the demo stack, a LAN client.

* NET-001's fix on the demo stack recreates exactly the services whose ports it rebinds
  (postgres, and redis, published on all interfaces in the demo too), with ``--no-deps``: the
  API container is the same one after. The LAN can no longer reach 5432; undo makes it
  reachable again and leaves the files byte-identical.
* A change that makes the API unhealthy (DATABASE_URL's host broken) is taken back by itself:
  files byte-identical, the API healthy again, the outcome names the reason and shows the
  container's last log lines, masked.

Marked ``live``: without a dockerd that can start they skip with the reason (fail under CI=true).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from checks.assistant import usecases
from checks.change.plan import FileEdit, Plan, Recreate
from checks.install.discovery import discover
from checks.live.stack import ComposeStack, Ran, subprocess_runner

pytestmark = pytest.mark.live


class Recorder:
    """The real runner, recording every argv (to check --no-deps and that no secret is in one)."""

    def __init__(self) -> None:
        self.argvs: list[tuple[str, ...]] = []

    def __call__(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes | None, timeout: float) -> Ran:
        self.argvs.append(tuple(argv))
        return subprocess_runner(argv, env, stdin, timeout)


def _files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".dester-harden" not in p.parts}


def _live(root: Path):
    from checks.live.gather import gather

    return gather(discover(str(root)), probe=False, logs=False)


def _container_id(lab, inst, service: str) -> str:
    return lab.docker("inspect", "-f", "{{.Id}}", lab.container(inst, service)).stdout.strip()


def _api_healthy(lab, inst) -> bool:
    name = lab.container(inst, "api")
    state = json.loads(lab.docker("inspect", "-f", "{{json .State}}", name).stdout)
    ok = lab.docker("exec", name, "wget", "-q", "-O", "-", "http://localhost:3001/health").returncode == 0
    return state.get("Status") == "running" and ok


@pytest.fixture
def lab_env(live_lab, monkeypatch):
    for key, value in live_lab.env.items():
        monkeypatch.setenv(key, value)
    return live_lab


def test_net_001_recreates_exactly_postgres_and_closes_5432_to_the_lan_then_undo_opens_it(lab_env, live_install):
    lab = lab_env
    inst = live_install("cli")
    before = _files(inst)
    assert lab.lan_tcp(lab.server_ip, 5432) == "open"
    api_before = _container_id(lab, inst, "api")
    pg_before = _container_id(lab, inst, "postgres")

    planned = usecases.plan(str(inst), "local", only={"NET-001"}, live=_live(inst))
    recreates = [c for c in planned.plan.changes if isinstance(c, Recreate)]
    assert [(c.when, c.services) for c in recreates] == [("rollback", ("postgres", "redis")),
                                                         ("apply", ("postgres", "redis"))]
    runner = Recorder()
    heard: list[str] = []
    done = usecases.apply(str(inst), planned.plan, command="fix", profile="local", stack=ComposeStack(run=runner),
                          report=lambda what, elapsed: heard.append(what))
    assert done.reverted is None, done.reverted
    assert [r.services for r in done.recreated] == [("postgres", "redis")]
    ups = [a for a in runner.argvs if "up" in a]
    assert len(ups) == 1 and "--no-deps" in ups[0] and ups[0][-2:] == ("postgres", "redis")
    assert _container_id(lab, inst, "api") == api_before  # not recreated
    assert _container_id(lab, inst, "postgres") != pg_before
    assert "recreating postgres, redis" in heard and "waiting for postgres, redis to be healthy" in heard
    assert lab.lan_tcp(lab.server_ip, 5432) != "open"

    preview = usecases.undo_preview(str(inst), None)
    undone = usecases.undo(str(inst), preview, stack=ComposeStack())
    assert undone.reverted is None and [r.services for r in undone.recreated] == [("postgres", "redis")]
    assert _files(inst) == before
    assert lab.lan_tcp(lab.server_ip, 5432) == "open"


def test_a_change_that_makes_the_api_unhealthy_is_reverted_by_itself(lab_env, live_install):
    lab = lab_env
    inst = live_install("cli")
    before = _files(inst)
    compose = inst.compose
    text = compose.read_bytes()
    assert b"@postgres:5432" in text
    broken = text.replace(b"@postgres:5432", b"@nowhere-db:5432")
    live = _live(inst)
    model = discover(str(inst))
    files = tuple(s.path for s in model.command_line_files)

    def recreate(when: str) -> Recreate:
        return Recreate(live.project, model.project_dir, files, ("api",), when, 20.0, ("api",))

    plan = Plan(checks=["TEST"], changes=[recreate("rollback"), FileEdit(str(compose), text, broken),
                                          recreate("apply")])
    plan.secrets = set(model.secrets)
    runner = Recorder()
    done = usecases.apply(str(inst), plan, command="fix", profile="local", stack=ComposeStack(run=runner))
    assert done.reverted is not None
    told = done.reverted.message
    assert told.startswith("api did not become healthy within 20 s (")
    assert "the files were restored and api recreated with them" in told
    assert done.reverted.last_logs, told
    shown = "\n".join([told, *done.reverted.last_logs])
    assert "desterlib:postgres@" not in shown  # the database URL's password is masked in the log lines
    assert _files(inst) == before
    assert _api_healthy(lab, inst)
    ups = [a for a in runner.argvs if "up" in a]
    assert len(ups) == 2 and all("--no-deps" in a and a[-1] == "api" for a in ups)
