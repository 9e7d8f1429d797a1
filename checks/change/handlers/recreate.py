"""Recreating services of the running stack, with the health gate: the handler of :class:`Recreate`.

A plan that changes what services run with holds two entries (docs/adr/0007-health-gate.md):

* ``when="rollback"`` first: nothing on apply; when the transaction is rolled back
  (a later entry failed, the gate failed, recovery after a kill) or undone, it runs
  after every other entry is taken back, so it recreates the services with the
  files as they were before (the gate then without logins: problems are returned,
  the rollback goes on);
* ``when="apply"`` last: recreates the services with the new files and waits for the
  gate; a failing gate raises :class:`checks.change.stack.GateFailed`, and the engine
  rolls the whole transaction back: that is the auto-revert.

The work is the injected :class:`checks.change.stack.Stack`'s (``ctx.stack``): the engine
imports no Docker code. Undo swaps the two entries' ``when`` and flips each login's
``accept`` (the old password must be accepted again, the new one refused).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.change.handlers import Context, Entry, Prepared, UndoConflict
from checks.change.plan import Login, Recreate
from checks.change.stack import GateFailed, GateResult
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.intent import Loader
    from checks.core.secrets import Masker

WHEN = ("apply", "rollback")
_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,127}$")
"""A compose project name as Compose normalises it."""
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
"""A database user or name, a secret's name: nothing an argument could be mistaken for."""
MAX_TIMEOUT = 3600.0


def up_argv(change: Recreate, docker: str = "docker") -> list[str]:
    """The exact ``docker compose up`` that recreates ``change.services``, never their dependencies.

    ``--no-deps``: a plain ``up -d api`` recreates PostgreSQL too when its interpolated
    environment changed (seen in the lab). ``--wait`` waits for healthchecks where there are some.
    """
    argv = [docker, "compose", "-p", change.project, "--project-directory", change.directory]
    for f in change.files:
        argv += ["-f", f]
    return [*argv, "up", "-d", "--no-deps", "--wait", "--wait-timeout", f"{change.timeout:g}", *change.services]


def by_hand(change: Recreate) -> str:
    """What to type when the stack could not be recreated by the tool."""
    names = " ".join(change.services)
    return f"recreate {names} by hand: docker compose up -d --no-deps {names}"


def gate_text(change: Recreate, logins: bool = True) -> str:
    """The gate in words, as the preview shows it."""
    parts = ["healthcheck", "no restart"]
    if change.http:
        parts.append("GET /health 200" + ("" if change.http == change.services else f" ({', '.join(change.http)})"))
    text = "then wait until healthy: " + ", ".join(parts)
    if logins and change.logins:
        said = []
        if any(lg.accept for lg in change.logins):
            said.append("accepts the new password")
        if any(not lg.accept for lg in change.logins):
            said.append("refuses the old one")
        text += ", the database " + " and ".join(said)
    return text


def failure(change: Recreate, result: GateResult) -> str:
    """One line: which service did not come up, within how long, and why."""
    who = result.service or ", ".join(change.services)
    return f"{who} did not become healthy within {change.timeout:g} s ({result.reason or 'no reason given'})"


@dataclass(frozen=True, slots=True)
class RecreateEntry(Entry):
    """A :class:`Recreate` as journaled (the logins name their secrets, never hold them)."""

    TYPE = "recreate"
    index: int
    project: str
    directory: str
    files: tuple[str, ...]
    services: tuple[str, ...]
    when: str
    timeout: float
    http: tuple[str, ...] = ()
    logins: tuple[Login, ...] = ()
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        out = Entry.to_json(self)
        out["logins"] = [{"service": lg.service, "user": lg.user, "database": lg.database, "secret": lg.secret,
                          "accept": lg.accept} for lg in self.logins]
        return out

    def change(self, logins: bool = True) -> Recreate:
        """The plan change again (``logins=False``: the gate without them, as a rollback asks it)."""
        return Recreate(self.project, self.directory, self.files, self.services, self.when, self.timeout,
                        self.http, self.logins if logins else (), self.description)


def _masked(lines: Sequence[str], ctx: Context) -> tuple[str, ...]:
    from checks.core.secrets import Masker

    values = list(ctx.secrets.values()) + (list(ctx.redactor.by_token.values()) if ctx.redactor else [])
    masker = Masker(values)
    return tuple(masker.text(line) for line in lines)


def _need_stack(ctx: Context, change: Recreate) -> Any:
    if ctx.stack is None:
        raise EngineError(f"the Docker Engine is needed to recreate {', '.join(change.services)}, and none is "
                          "reachable here; run again where docker works, or with --files-only")
    return ctx.stack


class RecreateHandler:
    """:class:`Recreate`: recreate and gate on apply (``when="apply"``) or on rollback (``when="rollback"``)."""

    entry_type = "recreate"
    changes: tuple[type, ...] = (Recreate,)

    def prepare(self, change: Recreate, index: int, ctx: Context) -> Prepared:
        if change.when not in WHEN:
            raise EngineError(f"recreating {change.services}: 'when' must be apply or rollback, not {change.when!r}")
        if not change.services:
            raise EngineError("a recreate without services")
        if not _PROJECT.match(change.project) or not all(_SERVICE.match(s) for s in change.services + change.http):
            raise EngineError("a recreate names a project or a service Compose would not accept")
        if not 0 < change.timeout <= MAX_TIMEOUT:
            raise EngineError(f"a health timeout must be between 1 and {MAX_TIMEOUT:g} seconds")
        for lg in change.logins:
            if lg.secret not in ctx.secrets:
                raise EngineError(f"recreating {', '.join(change.services)}: the plan has no secret named "
                                  f"{lg.secret}")
        from checks.core.secrets import Masker

        if any(v in a for a in up_argv(change) for v in Masker(ctx.secrets.values()).values):
            raise EngineError("a secret in a compose command's arguments would be visible to every user of the host")
        return Prepared(RecreateEntry(index, change.project, change.directory, tuple(change.files),
                                      tuple(change.services), change.when, float(change.timeout), tuple(change.http),
                                      tuple(change.logins), change.description))

    def load(self, raw: dict[str, Any], loader: Loader) -> RecreateEntry:
        index = raw.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise loader.bad("a recreate's index is not a number")
        project = raw.get("project")
        if not isinstance(project, str) or not _PROJECT.match(project):
            raise loader.bad("a recreate's project is not a compose project name")
        services = self._names(raw.get("services"), loader, "services", empty=False)
        http = self._names(raw.get("http", []), loader, "http services", empty=True)
        when = raw.get("when")
        if when not in WHEN:
            raise loader.bad("a recreate's 'when' is neither apply nor rollback")
        timeout = raw.get("timeout")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= MAX_TIMEOUT:
            raise loader.bad("a recreate's timeout is not a number of seconds")
        files = raw.get("files")
        if not isinstance(files, list):
            raise loader.bad("a recreate's compose files are not a list")
        logins = raw.get("logins", [])
        if not isinstance(logins, list):
            raise loader.bad("a recreate's logins are not a list")
        return RecreateEntry(index, project, loader.absolute(raw.get("directory"), "a recreate's directory"),
                             tuple(loader.absolute(f, "a compose file") for f in files), services, str(when),
                             float(timeout), http, tuple(self._login(lg, loader) for lg in logins),
                             loader.text(raw.get("description", ""), "a recreate's description"))

    @staticmethod
    def _names(value: object, loader: Loader, what: str, empty: bool) -> tuple[str, ...]:
        if (not isinstance(value, list) or (not value and not empty)
                or not all(isinstance(s, str) and _SERVICE.match(s) for s in value)):
            raise loader.bad(f"a recreate's {what} are not service names")
        return tuple(value)

    @staticmethod
    def _login(raw: object, loader: Loader) -> Login:
        if not isinstance(raw, dict):
            raise loader.bad("a gate login is not an object")
        parts = [raw.get(k) for k in ("service", "user", "database", "secret")]
        if not all(isinstance(p, str) and _NAME.match(p) for p in parts) or not isinstance(raw.get("accept"), bool):
            raise loader.bad("a gate login is not a service, user, database, secret name and accept flag")
        service, user, database, secret = (str(p) for p in parts)
        return Login(service, user, database, secret, bool(raw["accept"]))

    def apply(self, entry: RecreateEntry, ctx: Context) -> None:
        if entry.when != "apply":
            return  # the other half of the pair: it acts on rollback only
        change = entry.change()
        result = _need_stack(ctx, change).recreate(change, ctx.secrets, ctx.report)
        if not result.ok:
            masked = GateResult(result.ok, _masked([result.reason], ctx)[0], result.recreated,
                                _masked(result.last_logs, ctx), result.elapsed, result.service)
            raise GateFailed(failure(change, masked), masked)

    def rollback(self, entry: RecreateEntry, ctx: Context) -> list[str]:
        if entry.when == "apply":
            return []  # the when="rollback" entry recreates, once the files are back
        change = entry.change(logins=False)
        if ctx.stack is None:
            return [f"no Docker Engine to put the running stack back: {by_hand(change)}"]
        try:
            result = ctx.stack.recreate(change, ctx.secrets, ctx.report)
        except (OSError, EngineError) as exc:
            return [f"{_masked([str(exc)], ctx)[0]}; {by_hand(change)}"]
        if not result.ok:
            return [f"after the files were restored, {_masked([failure(change, result)], ctx)[0]}; "
                    f"{by_hand(change)}, then look at 'docker compose logs {' '.join(change.services)}'"]
        return []

    def undo(self, entry: RecreateEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        swapped = "rollback" if entry.when == "apply" else "apply"
        logins = tuple(Login(lg.service, lg.user, lg.database, lg.secret, not lg.accept) for lg in entry.logins)
        return [Recreate(entry.project, entry.directory, entry.files, entry.services, swapped, entry.timeout,
                         entry.http, logins, f"undo: {entry.description}" if entry.description else "")], []

    def headline(self, changes: Sequence[Recreate]) -> str | None:
        names = sorted({s for c in changes if c.when == "apply" for s in c.services})
        return f"recreate {', '.join(names)}" if names else None

    def describe(self, changes: Sequence[Recreate], root: str, masker: Masker | None) -> list[str]:
        from checks.core.textio import shown

        out: list[str] = []
        for c in changes:
            names = ", ".join(c.services)
            cmd = shown(" ".join(up_argv(c)))
            if c.when == "apply":
                out += ["", f"recreate the running {names}" + (f": {shown(c.description)}" if c.description else ""),
                        f"  {cmd}", f"  {gate_text(c)}",
                        f"  not healthy within {c.timeout:g} s: every change above is taken back and {names} "
                        "recreated with the files as they were"]
            else:
                out += ["", f"if this is rolled back or undone: recreate {names} with the files as they were",
                        f"  {cmd}"]
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return [], []


RECREATES = RecreateHandler()
