"""ComposeStack's gate on a fake docker CLI: what it runs (never a secret in argv), and how it judges.

The fake answers ``ps``, ``inspect``, ``exec`` and ``logs`` from a small scripted state; a fake
clock moves only when the stack sleeps, so no test waits. The real thing: tests/test_stack_real.py.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from checks.change.plan import Login, Recreate
from checks.live.stack import ComposeStack, Ran

NEW = "NEW-pw-1a2b3c4d5e6f"
OLD = "OLD-pw-9f8e7d6c5b4a"
STARTED = "2026-12-01T10:00:00.123456789Z"
T0 = 1_796_119_200.123  # STARTED as epoch seconds


class FakeDocker:
    """A docker CLI: containers per service, the database's accepted password, an API that may crash."""

    def __init__(self, api_status: str = "running", api_restarts: int = 0, accepted: str = NEW,
                 up_code: int = 0) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, str], bytes | None]] = []
        self.now = T0 + 10.0
        self.api_status, self.api_restarts, self.accepted, self.up_code = api_status, api_restarts, accepted, up_code
        self.api_id = "old-api"

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.api_status == "restarting":
            self.api_restarts += 1

    def container(self, cid: str) -> dict[str, object]:
        api = cid.startswith("api") or cid == "old-api"
        return {"Id": cid, "RestartCount": self.api_restarts if api else 0,
                "State": {"Status": self.api_status if api else "running", "ExitCode": 1 if api else 0,
                          "StartedAt": STARTED, **({} if api else {"Health": {"Status": "healthy"}})},
                "Config": {"Labels": {"com.docker.compose.service": "api" if api else "postgres"},
                           "Env": ["PORT=3001", f"DATABASE_URL=postgresql://u:{NEW}@postgres/d"]},
                "NetworkSettings": {"Networks": {"desterlib_default": {"IPAddress": "172.18.0.2" if api
                                                                       else "172.18.0.3"}}}}

    def __call__(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes | None, timeout: float) -> Ran:
        argv = tuple(argv)
        self.calls.append((argv, dict(env), stdin))
        if argv[1:3] == ("compose", "-p"):
            self.api_id = "api-new"
            return Ran(self.up_code, "", "container desterlib-api exited (1)" if self.up_code else "")
        if argv[1] == "ps":
            service = argv[-1].rsplit("=", 1)[1]
            return Ran(0, (self.api_id if service == "api" else "pg1") + "\n")
        if argv[1] == "inspect":
            return Ran(0, json.dumps([self.container(c) for c in argv[2:]]))
        if argv[1] == "exec" and "wget" in argv:
            return Ran(0, '{"status":"OK"}')
        if argv[1] == "exec" and "psql" in argv:
            ok = env.get("PGPASSWORD") == self.accepted
            return Ran(0 if ok else 2, "1" if ok else "",
                       "" if ok else 'psql: error: FATAL:  password authentication failed for user "desterlib"')
        if argv[1] == "logs":
            return Ran(0, "\n".join(f"line {i} postgresql://desterlib:{NEW}@postgres:5432/x" for i in range(30)))
        raise AssertionError(f"unexpected docker call {argv}")


def change(timeout: float = 120.0) -> Recreate:
    return Recreate("desterlib", "/srv/desterlib", ("/srv/desterlib/docker-compose.yml",), ("api",), "apply",
                    timeout, ("api",), (Login("postgres", "desterlib", "desterlib", "new", True),
                                        Login("postgres", "desterlib", "desterlib", "old", False)))


def stack(fake: FakeDocker) -> ComposeStack:
    return ComposeStack(run=fake, clock=fake.clock, wall=fake.clock, sleep=fake.sleep)


SECRETS = {"new": NEW, "old": OLD}


def test_a_healthy_recreate_runs_up_with_no_deps_then_health_and_both_logins():
    fake = FakeDocker()
    heard: list[tuple[str, float | None]] = []
    result = stack(fake).recreate(change(), SECRETS, lambda what, elapsed: heard.append((what, elapsed)))
    assert result.ok and result.recreated == ("api",)
    argvs = [c[0] for c in fake.calls]
    assert ("docker", "compose", "-p", "desterlib", "--project-directory", "/srv/desterlib", "-f",
            "/srv/desterlib/docker-compose.yml", "up", "-d", "--no-deps", "--wait", "--wait-timeout", "120",
            "api") in argvs
    assert ("docker", "exec", "api-new", "wget", "-q", "-O", "-", "http://localhost:3001/health") in argvs
    logins = [c for c in fake.calls if "psql" in c[0]]
    assert [c[1] for c in logins] == [{"PGPASSWORD": NEW}, {"PGPASSWORD": OLD}]  # in the CLI's environment
    for argv, _, _ in logins:
        assert argv[:6] == ("docker", "exec", "-i", "-e", "PGPASSWORD", "pg1")  # -e without a value
        assert argv[argv.index("-h") + 1] == "172.18.0.3"  # the container's own address: loopback is trust
    assert all(NEW not in a and OLD not in a for c in fake.calls for a in c[0])
    assert heard[0] == ("recreating api", 0.0) and heard[1][0] == "waiting for api to be healthy"


def test_the_gate_fails_when_the_old_password_is_still_accepted():
    fake = FakeDocker(accepted=OLD)
    result = stack(fake).recreate(change(timeout=5), SECRETS)
    assert not result.ok and result.reason == "postgres refused the new password of desterlib"


def test_a_restart_loop_fails_the_gate_with_the_count_and_masked_logs():
    fake = FakeDocker(api_status="restarting")
    result = stack(fake).recreate(change(timeout=10), SECRETS)
    assert not result.ok and result.service == "api"
    assert result.reason.startswith("restarted ") and result.reason.endswith(" times")
    assert len(result.last_logs) == 20 and all(NEW not in ln for ln in result.last_logs)
    assert not any("psql" in c[0] for c in fake.calls)  # never asked the database while the API was down


def test_an_exited_container_fails_at_once():
    fake = FakeDocker(api_status="exited", up_code=1)
    result = stack(fake).recreate(change(), SECRETS)
    assert not result.ok and result.reason == "exited with code 1"
    assert fake.now < T0 + 11  # no waiting for the timeout: it will not come back


def test_a_container_just_started_is_not_healthy_until_the_settle_window_passed():
    fake = FakeDocker()
    fake.now = T0 + 0.2  # started 0.2 s ago
    result = stack(fake).recreate(change(), SECRETS)
    assert result.ok and fake.now >= T0 + 1.5


def test_a_secret_in_an_argument_is_refused_before_docker_runs():
    import pytest

    from checks.core.errors import EngineError

    fake = FakeDocker()
    bad = Recreate("desterlib", f"/srv/{NEW}", (), ("api",))
    with pytest.raises(EngineError, match="secret in its arguments"):
        stack(fake).recreate(bad, SECRETS)
    assert not any(c[0][1] == "compose" for c in fake.calls)


def test_a_failing_up_says_compose_s_own_last_line():
    fake = FakeDocker(up_code=1)
    fake.now = T0 + 0.2  # the container has only just started: compose's line says more
    result = stack(fake).recreate(change(), SECRETS)
    assert not result.ok and result.reason == "docker compose up exited 1: container desterlib-api exited (1)"
