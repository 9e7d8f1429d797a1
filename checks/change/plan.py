"""Plans: what a fix will change, as data.

A fix never touches the disk: it returns a :class:`Plan` of typed changes. The
CLI and the assistant preview the same plan object and hand that object to the
change engine, so what was previewed is exactly what is applied.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class FileEdit:
    """Replace the whole content of an existing file (or create it when ``before`` is None)."""

    path: str
    before: bytes | None
    after: bytes
    mode: int | None = None
    """For a new file: its mode. Existing files keep theirs."""
    owner: tuple[int, int] | None = None
    """For a new file: its (uid, gid); None: the directory's. A system file gets the owner its
    server expects (``root:www-data`` for an nginx password file), not the install's."""

    @property
    def is_new(self) -> bool:
        return self.before is None


@dataclass(frozen=True, slots=True)
class ModeChange:
    """chmod of one path (never following a symbolic link)."""

    path: str
    before: int
    after: int


@dataclass(frozen=True, slots=True)
class TreeChmod:
    """The media rule under ``root`` (see :func:`checks.change.walk.target_mode`).

    Group/other write comes off every directory and file, exec off every file:
    0777 directories become 0755, ``chmod -R 755`` videos 0644. Symbolic links
    are never followed and nothing outside ``root`` is touched. The preview
    comes from a scan; the engine applies the same rule entry by entry.
    """

    root: str
    entries: int = 0
    """How many entries the scan saw."""
    transitions: dict[tuple[str, int, int], int] = field(default_factory=dict)
    """Preview: ("dir" | "file", before mode, after mode) -> how many entries."""

    @property
    def changes(self) -> int:
        return sum(self.transitions.values())


@dataclass(frozen=True, slots=True)
class FileDelete(FileEdit):
    """Remove an existing file (``before`` is its content now). A kind of :class:`FileEdit`, so
    code that lists a plan's files sees it too."""

    after: bytes | None = None  # type: ignore[assignment]  # a deletion has no content after


@dataclass(frozen=True, slots=True)
class Link:
    """Create the symbolic link ``path`` pointing to ``target`` (nginx's ``sites-enabled/NAME ->
    ../sites-available/NAME``). Nothing may exist at ``path``; undo removes the link it made (and only
    that link: one that points elsewhere by then is a conflict)."""

    path: str
    target: str
    remove: bool = False
    """True: remove the link ``path``, which must still point to ``target`` (how undo takes a link back)."""


@dataclass(frozen=True, slots=True)
class TreeRestore:
    """Undo of a bulk chmod: put back the modes recorded in ``records``."""

    root: str
    records: str

    def count(self) -> int:
        """How many entries the records say were changed (the most this undo puts back)."""
        from checks.change import treerecords

        return treerecords.load(self.records).count()


@dataclass(frozen=True, slots=True)
class Command:
    """Run a program, with the program that takes it back.

    ``argv`` is a list, never a shell string. Secrets reach the program only on
    stdin or in its environment, named here and looked up in :attr:`Plan.named_secrets`
    (stored with the transaction's other secrets, never in the journal's plaintext).
    """

    argv: tuple[str, ...]
    inverse: tuple[str, ...]
    """Required: a command that cannot be taken back is refused."""
    description: str
    check: tuple[str, ...] | None = None
    """Exit status 0 when the command's effect is in place: asked by recovery after a crash mid-command."""
    stdin_secret: str | None = None
    """The name of the secret written to the program's stdin."""
    env_secrets: tuple[tuple[str, str], ...] = ()
    """(environment variable, secret name) pairs set for the program."""
    host: bool = False
    """Changes the host outside the installation (/etc, timers, the firewall): takes the host lock too."""
    inverse_stdin_secret: str | None = None
    """The name of the secret written to the inverse's stdin (None: the same as :attr:`stdin_secret`).
    An ALTER ROLE is taken back by another statement: the old password, its own secret."""

    @property
    def stdin_for_inverse(self) -> str | None:
        return self.inverse_stdin_secret if self.inverse_stdin_secret is not None else self.stdin_secret


@dataclass(frozen=True, slots=True)
class Login:
    """A database login the health gate tries over TCP (never through the trusted socket)."""

    service: str
    """The database's compose service (``postgres``)."""
    user: str
    database: str
    secret: str
    """The name of the password in :attr:`Plan.named_secrets`."""
    accept: bool
    """True: the login must succeed; False: it must be refused (the old password after a rotation)."""
    kind: str = "postgres"
    """``postgres`` (psql over TCP) or ``redis`` (``PING`` with the password; an empty secret value is
    no password at all; ``user`` is ``default``, ``database`` unused)."""


@dataclass(frozen=True, slots=True)
class Recreate:
    """Recreate services of the running compose stack, then wait for the health gate.

    A plan that changes what a service runs with holds two: ``when="rollback"`` first
    (it does nothing on apply and recreates the services when the transaction is
    rolled back or undone, after the files are back) and ``when="apply"`` last (it
    recreates them with the new files and waits for the gate; a failing gate rolls
    the whole transaction back). Undo swaps the two and the logins' ``accept``.
    """

    project: str
    """The compose project name (``--project-name``)."""
    directory: str
    """``--project-directory``."""
    files: tuple[str, ...]
    """The compose files (``-f``), in order."""
    services: tuple[str, ...]
    when: str = "apply"
    """``apply`` or ``rollback``."""
    timeout: float = 120.0
    """Seconds for the recreate and the whole gate."""
    http: tuple[str, ...] = ()
    """Services whose ``GET /health`` must answer 200 (asked from inside the container)."""
    logins: tuple[Login, ...] = ()
    description: str = ""


Change = FileEdit | FileDelete | ModeChange | TreeChmod | TreeRestore | Command | Recreate | Link


@dataclass(slots=True)
class Refusal:
    """A fix that cannot be made safely, with what to do by hand."""

    check: str
    reason: str
    manual: str


@dataclass(slots=True)
class Plan:
    """Changes for one or more checks, to preview and then apply."""

    checks: list[str] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    """Secrets in the before/after contents (old and generated): masked in
    previews, kept out of the journal's plaintext."""
    named_secrets: dict[str, str] = field(default_factory=dict)
    """Secrets :class:`Command` changes refer to by name (``stdin_secret``, ``env_secrets``)."""
    confirm: list[str] = field(default_factory=list)
    """Questions the user must answer yes to before this plan is applied (one line each): "recreating
    api runs prisma db push --accept-data-loss and no backup is younger than 24 h; go on?". A face
    asks them (``--yes`` answers them on the command line); the engine does not."""
    named: list[str] = field(default_factory=list)
    """Files the user named on the command line (``--file``): the only files the
    engine changes outside the installation directory (see checks.change.confined)."""
    system: list[str] = field(default_factory=list)
    """System directories the user chose to change by choosing a front door (``/etc/nginx``,
    ``/etc/caddy``, under ``--root`` when given): files and links under them are changed through their
    path, after the engine's trust check (every directory from the top down owned by root or the
    user running dester-harden and writable by nobody else, no symbolic link on the way)."""
    revert_after: float | None = None
    """Confirm-or-revert (a firewall plan, issue 12): seconds after the apply within which the user
    must confirm (``dester-harden confirm``, or the assistant), else the transaction is undone by
    itself, even with the session and the assistant gone. None: nothing to confirm."""
    shown_secrets: dict[str, str] = field(default_factory=dict)
    """Secrets the user must be shown once (label -> value: the proxy's login password): a face shows
    them masked, with reveal and copy, and keeps them in the keyring when one works. Never journaled
    in plaintext (they are in :attr:`secrets` too)."""

    @property
    def empty(self) -> bool:
        return not self.changes

    def files(self) -> list[str]:
        """Paths of the files the plan edits, creates or deletes."""
        return [c.path for c in self.changes if isinstance(c, FileEdit)]

    def merge_edit(self, path: str, before: bytes | None, after: bytes, mode: int | None = None) -> None:
        """Add an edit of ``path``, chaining onto an earlier edit of the same file."""
        path = os.path.abspath(path)
        for i, c in enumerate(self.changes):
            if isinstance(c, FileEdit) and c.path == path:
                self.changes[i] = FileEdit(c.path, c.before, after, c.mode, c.owner)
                return
        self.changes.append(FileEdit(path, before, after, mode))

    def current(self, path: str, disk: bytes | None) -> bytes | None:
        """The content ``path`` will have after the edits planned so far."""
        path = os.path.abspath(path)
        for c in self.changes:
            if isinstance(c, FileEdit) and c.path == path:
                return c.after
        return disk
