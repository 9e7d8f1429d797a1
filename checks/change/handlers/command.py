"""Commands with their inverse: a program run for a change, and the program that takes it back.

A :class:`checks.change.plan.Command` is run by the injected executor
(:mod:`checks.change.executor`), its argv a list and never a shell string.
Secrets reach it on stdin or in its environment only, by name: the values
live in the transaction's secret store, never in argv or the journal's
plaintext (an argv that holds a secret is refused). Whether it ran is known
from the progress log (:mod:`checks.change.progress`); a command killed
midway is asked its ``check`` (exit 0: its effect is in place), and without
one its inverse runs (an inverse must accept a command that did not finish).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.change.handlers import Context, Entry, Prepared, UndoConflict
from checks.change.plan import Command
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.intent import Loader
    from checks.core.secrets import Masker


@dataclass(frozen=True, slots=True)
class CommandEntry(Entry):
    """A command, its inverse, its check, and the names of the secrets it gets."""

    TYPE = "command"
    index: int
    argv: tuple[str, ...]
    inverse: tuple[str, ...]
    description: str
    check: tuple[str, ...] | None = None
    stdin_secret: str | None = None
    env_secrets: tuple[tuple[str, str], ...] = ()
    host: bool = False

    def to_json(self) -> dict[str, Any]:
        out = Entry.to_json(self)
        out["env_secrets"] = [list(p) for p in self.env_secrets]
        if self.check is not None:
            out["check"] = list(self.check)
        return out


def _inputs(entry: CommandEntry, ctx: Context) -> tuple[bytes | None, dict[str, str]]:
    def secret(name: str) -> str:
        if name not in ctx.secrets:
            raise EngineError(f"{entry.description}: the secret {name} is not in this transaction's secret store")
        return ctx.secrets[name]

    stdin = secret(entry.stdin_secret).encode() if entry.stdin_secret else None
    return stdin, {var: secret(name) for var, name in entry.env_secrets}


def _run(entry: CommandEntry, ctx: Context, what: str, argv: Sequence[str]) -> int:
    assert ctx.log is not None
    stdin, env = _inputs(entry, ctx)
    return ctx.log.run(ctx.executor, entry.index, what, argv, stdin=stdin, env=env)


class CommandHandler:
    """:class:`Command`: run it; roll back or undo by running its inverse."""

    entry_type = "command"
    changes: tuple[type, ...] = (Command,)

    def prepare(self, change: Command, index: int, ctx: Context) -> Prepared:
        if not change.argv or not change.inverse:
            raise EngineError(f"{change.description}: a command without an inverse cannot be undone; not run")
        from checks.core.secrets import Masker

        # Each secret as it could be written, less the common words ("postgres") that also name the
        # containers and services in an argument: those a substring test cannot tell from a leak.
        values = Masker(ctx.secrets.values()).values
        for argv in (change.argv, change.inverse, change.check or ()):
            if any(not isinstance(a, str) for a in argv):
                raise EngineError(f"{change.description}: its arguments must be a list of strings")
            if any(v in a for a in argv for v in values):
                raise EngineError(f"{change.description}: a secret in its arguments would be visible to every "
                                  "user of the host; pass it on stdin or in the environment")
        for name in [change.stdin_secret or "", *(n for _, n in change.env_secrets)]:
            if name and name not in ctx.secrets:
                raise EngineError(f"{change.description}: the plan has no secret named {name}")
        return Prepared(CommandEntry(index, tuple(change.argv), tuple(change.inverse), change.description,
                                     tuple(change.check) if change.check else None, change.stdin_secret,
                                     tuple(change.env_secrets), change.host))

    def load(self, raw: dict[str, Any], loader: Loader) -> CommandEntry:
        index = raw.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise loader.bad("a command's index is not a number")
        argv, inverse = loader.argv(raw.get("argv"), "a command"), loader.argv(raw.get("inverse"), "an inverse")
        assert argv is not None and inverse is not None
        env = raw.get("env_secrets", [])
        if not isinstance(env, list) or not all(isinstance(p, list) and len(p) == 2
                                                 and all(isinstance(x, str) for x in p) for p in env):
            raise loader.bad("a command's environment secrets are not name pairs")
        stdin = raw.get("stdin_secret")
        if stdin is not None:
            loader.text(stdin, "a command's stdin secret")
        return CommandEntry(index, argv, inverse, loader.text(raw.get("description"), "a command's description"),
                            loader.argv(raw.get("check"), "a check", optional=True), stdin,
                            tuple((p[0], p[1]) for p in env), bool(raw.get("host")))

    def apply(self, entry: CommandEntry, ctx: Context) -> None:
        code = _run(entry, ctx, "apply", entry.argv)
        if code != 0:
            raise EngineError(f"{entry.description} failed (exit {code})")

    def rollback(self, entry: CommandEntry, ctx: Context) -> list[str]:
        if ctx.progress == "failed":
            return []  # it said it did nothing
        if ctx.progress == "started" and entry.check is not None and _run(entry, ctx, "check", entry.check) != 0:
            return []  # killed before it took effect
        code = _run(entry, ctx, "rollback", entry.inverse)
        if code != 0:
            return [f"{entry.description} could not be taken back (its inverse exited {code}); do it by hand"]
        return []

    def undo(self, entry: CommandEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        return [Command(entry.inverse, entry.argv, f"undo: {entry.description}", None, entry.stdin_secret,
                        entry.env_secrets, entry.host)], []

    def headline(self, changes: Sequence[Command]) -> str | None:
        return f"{len(changes)} command(s)" if changes else None

    def describe(self, changes: Sequence[Command], root: str, masker: Masker | None) -> list[str]:
        from checks.core.textio import shown

        out: list[str] = []
        for c in changes:
            out += ["", f"run: {shown(c.description)}", f"  {shown(' '.join(c.argv))}",
                    f"  undone by: {shown(' '.join(c.inverse))}"]
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return [], []


COMMANDS = CommandHandler()
