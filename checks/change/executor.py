"""Executors: how the engine runs a program, injected so that it imports nothing heavy.

The engine never imports :mod:`subprocess` (nor a Docker client) at import
time: it asks an :class:`Executor`, by default a :class:`SubprocessExecutor`
made when the first command runs. Tests pass a fake. What ran is kept in the
transaction's action log (:class:`ActionLog`), its argv masked.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from checks.core.secrets import Masker

ACTIONS = "actions"
"""The action log's name in the transaction's directory: one JSON object a line."""


@dataclass(frozen=True, slots=True)
class Ran:
    """One program's exit status."""

    code: int


class Executor(Protocol):
    """Runs one program: argv a list, never a shell; secrets only in ``stdin`` or ``env``."""

    def run(self, argv: Sequence[str], stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> Ran: ...


class SubprocessExecutor:
    """The real executor: no shell, the caller's environment plus ``env``, output not kept."""

    def run(self, argv: Sequence[str], stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> Ran:
        import subprocess

        full = dict(os.environ)
        full.update(env or {})
        try:
            proc = subprocess.run(list(argv), input=stdin, env=full, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, check=False)
        except OSError:
            return Ran(127)
        return Ran(proc.returncode)


@dataclass(frozen=True, slots=True)
class Action:
    """A program the transaction ran, as the history shows it."""

    entry: int
    what: str
    """apply, check, rollback or undo."""
    argv: tuple[str, ...]
    """Secrets masked."""
    code: int
    start: str
    end: str


class ActionLog:
    """Appends what ran to ``<txn>/actions`` (fsynced, 0600), argv masked by value."""

    def __init__(self, txn_dir: str, secrets: Sequence[str] = ()) -> None:
        self.path = os.path.join(txn_dir, ACTIONS)
        self.masker = Masker(secrets)

    def run(self, executor: Executor, entry: int, what: str, argv: Sequence[str],
            stdin: bytes | None = None, env: Mapping[str, str] | None = None) -> int:
        """Run ``argv`` through ``executor`` and record it; the exit status."""
        start = _now()
        code = executor.run(argv, stdin=stdin, env=env).code
        record = {"entry": entry, "what": what, "argv": [self.masker.text(a) for a in argv], "code": code,
                  "start": start, "end": _now()}
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, json.dumps(record).encode() + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        return code


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def read_actions(raw: bytes | None) -> list[Action]:
    """The action log's records (a torn last line, from a kill, is left out)."""
    out = []
    for line in (raw or b"").splitlines():
        try:
            r = json.loads(line)
            out.append(Action(int(r["entry"]), str(r["what"]), tuple(str(a) for a in r["argv"]), int(r["code"]),
                              str(r["start"]), str(r["end"])))
        except (ValueError, KeyError, TypeError):
            continue
    return out
