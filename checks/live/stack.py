"""The running stack through the docker CLI: recreate services, then the health gate.

:class:`ComposeStack` is the real :class:`checks.change.stack.Stack`. It runs
``docker compose -p P --project-directory D -f F... up -d --no-deps --wait --wait-timeout T
SERVICES`` (no shell; the caller's environment, so ``DOCKER_HOST`` and ``DOCKER_CONFIG``
apply) and then judges the gate within what is left of the timeout
(docs/adr/0007-health-gate.md):

* every recreated container running, its compose healthcheck ``healthy`` where it has one,
  and up for a settle window since it last started (DesterLib's API exits when Prisma
  cannot reach the database at start, and its ``/health`` answers 200 even then: a restart
  count that rises is the only sign);
* ``GET /health`` 200 for ``change.http``, asked from inside the container with busybox
  ``wget`` (whatever network namespace this process is in);
* each :class:`checks.change.plan.Login` tried over TCP from inside the database container to
  its own bridge address (loopback is ``trust`` in the PostgreSQL image: it would accept any
  password), the password in the docker CLI's environment (``-e PGPASSWORD`` without a value).

No secret is ever in an argument of a program started here (checked before each run, an
:class:`checks.core.errors.EngineError` otherwise). Output is read only to judge and to report
a failure, masked. On failure ``last_logs`` are the failing container's last 20 log lines.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from checks.change.handlers.recreate import up_argv
from checks.change.plan import Login, Recreate
from checks.change.stack import GateResult, Reporter
from checks.core.errors import EngineError
from checks.core.secrets import Masker

LOG_LINES = 20
SETTLE = 1.5
"""Seconds a container must have been up, unrestarted, before it counts as healthy."""
POLL = 0.25
DEFAULT_PORT = 3001
JUST_STARTED = "it has only just started"


@dataclass(frozen=True, slots=True)
class Ran:
    """A docker CLI run: its exit status and output (kept only to judge and to report)."""

    code: int
    out: str = ""
    err: str = ""


#: ``run(argv, env, stdin, timeout)``: the program runner (tests pass a fake that records argv).
Runner = Callable[[Sequence[str], Mapping[str, str], bytes | None, float], Ran]


def subprocess_runner(argv: Sequence[str], env: Mapping[str, str], stdin: bytes | None, timeout: float) -> Ran:
    """Run ``argv`` without a shell, the caller's environment plus ``env``."""
    full = dict(os.environ)
    full.update(env)
    try:
        proc = subprocess.run(list(argv), input=stdin if stdin is not None else b"", env=full, capture_output=True,
                              timeout=max(timeout, 1.0), check=False)
    except subprocess.TimeoutExpired:
        return Ran(124, "", f"{argv[0]} did not answer within {max(timeout, 1.0):.0f} s")
    except OSError as exc:
        return Ran(127, "", f"{argv[0]}: {exc.strerror or type(exc).__name__}")
    return Ran(proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))


@dataclass(frozen=True, slots=True)
class _Seen:
    """One container as ``docker inspect`` showed it (nothing of its environment but PORT)."""

    id: str
    service: str
    status: str
    exit_code: int
    health: str | None
    restarts: int
    started: float | None
    ips: tuple[str, ...]
    port: int


def _epoch(text: object) -> float | None:
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    head, _, frac = text.rstrip("Z").partition(".")
    zone = ""
    for sign in ("+", "-"):
        if sign in frac:
            frac, zone = frac.split(sign, 1)[0], sign + frac.split(sign, 1)[1]
    try:
        when = _dt.datetime.fromisoformat(head + (zone or "+00:00"))
    except ValueError:
        return None
    return when.timestamp() + (float("0." + frac) if frac.isdigit() else 0.0)


def _seen(raw: dict[str, Any]) -> _Seen:
    state = raw.get("State") or {}
    config = raw.get("Config") or {}
    labels = config.get("Labels") or {}
    health = (state.get("Health") or {}).get("Status") or None
    nets = ((raw.get("NetworkSettings") or {}).get("Networks") or {}).values()
    port = DEFAULT_PORT
    for item in config.get("Env") or []:
        name, _, value = str(item).partition("=")
        if name == "PORT" and value.isdigit():
            port = int(value)
    return _Seen(str(raw.get("Id", "")), str(labels.get("com.docker.compose.service", "")),
                 str(state.get("Status", "")), int(state.get("ExitCode") or 0), health,
                 int(raw.get("RestartCount") or 0), _epoch(state.get("StartedAt")),
                 tuple(str(n.get("IPAddress")) for n in nets if isinstance(n, dict) and n.get("IPAddress")), port)


class ComposeStack:
    """Recreates services with the docker CLI and judges the health gate (see the module docstring)."""

    def __init__(self, docker: str = "docker", run: Runner | None = None, settle: float = SETTLE,
                 poll: float = POLL, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self.docker = docker
        self.run = run or subprocess_runner
        self.settle = settle
        self.poll = poll
        self.clock, self.wall, self.sleep = clock, wall, sleep
        self._masker = Masker(())

    # -- running the CLI ---------------------------------------------------------
    def _docker(self, argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None,
                stdin: bytes | None = None) -> Ran:
        # The masker's values: each secret as it could be written, without common words such as "postgres"
        # that name services and containers too (a name in an argument, not the secret leaking).
        if any(v in a for a in argv for v in self._masker.values):
            raise EngineError("refused to run docker with a secret in its arguments (every user of the host "
                              "could read it); this is a dester-harden bug, please report it")
        return self.run(list(argv), dict(env or {}), stdin, timeout)

    def _ids(self, change: Recreate, service: str, timeout: float) -> list[str]:
        ran = self._docker([self.docker, "ps", "-a", "-q", "--no-trunc", "--filter",
                            f"label=com.docker.compose.project={change.project}", "--filter",
                            f"label=com.docker.compose.service={service}"], timeout)
        return ran.out.split() if ran.code == 0 else []

    def _inspect(self, ids: Sequence[str], timeout: float) -> list[_Seen]:
        if not ids:
            return []
        ran = self._docker([self.docker, "inspect", *ids], timeout)
        try:
            raw = json.loads(ran.out) if ran.code == 0 else []
        except ValueError:
            raw = []
        return [_seen(r) for r in raw if isinstance(r, dict)]

    # -- the gate ----------------------------------------------------------------
    def recreate(self, change: Recreate, secrets: Mapping[str, str], report: Reporter | None = None) -> GateResult:
        """``up -d --no-deps --wait`` exactly ``change.services``, then the gate, within ``change.timeout``."""
        self._masker = Masker(v for v in secrets.values() if v)
        start = self.clock()
        deadline = start + change.timeout
        names = ", ".join(change.services)

        def say(what: str) -> None:
            if report is not None:
                report(what, self.clock() - start)

        def left() -> float:
            return max(deadline - self.clock(), 0.5)

        say(f"recreating {names}")
        before = {s: self._ids(change, s, left()) for s in change.services}
        up = self._docker(up_argv(change, self.docker), left() + 10)
        ids = {s: self._ids(change, s, left()) for s in change.services}
        recreated = tuple(s for s in change.services if ids[s] and ids[s] != before[s])
        last: tuple[str, str, str | None] = ("", "", None)  # (service, reason, container id)
        while True:
            say(f"waiting for {names} to be healthy")
            seen = self._inspect([i for s in change.services for i in ids[s]], left())
            problem = self._judge(change, ids, seen)
            if problem is None and up.code == 0:
                problem = self._probes(change, seen, secrets, left())
                if problem is None:
                    return GateResult(True, "", recreated, (), self.clock() - start)
            elif up.code != 0 and (problem is None or problem[1] == JUST_STARTED):
                # compose's own line says more than "just started" (a port in use, a missing image...)
                problem = (problem[0] if problem else "", self._up_failed(up), problem[2] if problem else None)
            assert problem is not None  # every branch above that leaves it None returned
            last = problem
            fatal = up.code != 0 or problem[1].startswith("exited")
            if fatal or self.clock() + self.poll >= deadline:
                break
            self.sleep(self.poll)
        service, reason, cid = last
        return GateResult(False, self._mask(reason), recreated, self._logs(cid, left()), self.clock() - start,
                          service)

    def _judge(self, change: Recreate, ids: Mapping[str, list[str]],
               seen: Sequence[_Seen]) -> tuple[str, str, str | None] | None:
        """The first container problem: (service, reason, container id); None when all are up and settled."""
        by_id = {c.id: c for c in seen}
        for service in change.services:
            found = [by_id[i] for i in ids[service] if i in by_id]
            if not found:
                return service, "no container was created", None
            for c in found:
                again = f", restarted {c.restarts} time{'s' if c.restarts != 1 else ''}" if c.restarts else ""
                if c.status == "exited" or c.status == "dead":
                    return service, f"exited with code {c.exit_code}{again}", c.id
                if c.status != "running":
                    return service, f"{c.status}{again}" if c.restarts == 0 else again[2:], c.id
                if c.health not in (None, "healthy"):
                    return service, f"its healthcheck says {c.health}{again}", c.id
                up_for = self.wall() - c.started if c.started is not None else self.settle
                if up_for < self.settle:
                    return service, again[2:] or JUST_STARTED, c.id
        return None

    def _probes(self, change: Recreate, seen: Sequence[_Seen], secrets: Mapping[str, str],
                timeout: float) -> tuple[str, str, str | None] | None:
        """``GET /health`` for ``change.http`` and the logins; the first that fails."""
        for c in seen:
            if c.service in change.http:
                ran = self._docker([self.docker, "exec", c.id, "wget", "-q", "-O", "-",
                                    f"http://localhost:{c.port}/health"], timeout)
                if ran.code != 0:
                    return c.service, "GET /health did not answer 200", c.id
        for login in change.logins:
            problem = self._login(change, login, secrets, timeout)
            if problem is not None:
                return login.service, problem, None
        return None

    def _login(self, change: Recreate, login: Login, secrets: Mapping[str, str], timeout: float) -> str | None:
        if login.secret not in secrets:
            return f"the password for {login.user} is not in this transaction's secrets"
        seen = self._inspect(self._ids(change, login.service, timeout), timeout)
        db = next((c for c in seen if c.status == "running" and c.ips), None)
        if db is None:
            return f"{login.service} is not running on a network, so the login cannot be tried"
        ran = self._docker([self.docker, "exec", "-i", "-e", "PGPASSWORD", db.id, "psql", "-w", "-X", "-A", "-t",
                            "-h", db.ips[0], "-U", login.user, "-d", login.database, "-c", "select 1"], timeout,
                           env={"PGPASSWORD": secrets[login.secret]})
        if login.accept and ran.code != 0:
            return f"{login.service} refused the new password of {login.user}"
        if not login.accept:
            if ran.code == 0:
                return f"{login.service} still accepts the old password of {login.user}"
            if "authentication failed" not in ran.err:
                return f"{login.service} could not be asked whether it refuses the old password"
        return None

    def _up_failed(self, up: Ran) -> str:
        lines = [ln.strip() for ln in (up.err + "\n" + up.out).splitlines() if ln.strip()]
        return f"docker compose up exited {up.code}" + (f": {lines[-1]}" if lines else "")

    def _logs(self, cid: str | None, timeout: float) -> tuple[str, ...]:
        if not cid:
            return ()
        ran = self._docker([self.docker, "logs", "--tail", str(LOG_LINES), cid], timeout)
        lines = (ran.out + ran.err).splitlines()[-LOG_LINES:]
        return tuple(self._mask(ln) for ln in lines)

    def _mask(self, text: str) -> str:
        return self._masker.text(text)
