"""The change engine: the only code that writes to the user's files.

Every transaction is journaled first (write-ahead, fsynced), then applied with
atomic replaces that keep each file's owner, group and mode. A process killed
at any instant leaves each file wholly before or wholly after, and the next
command rolls an unfinished transaction back (:meth:`Engine.recover`). Files
are read for the checks and changed only through :mod:`checks.change.confined`:
relative to the install root opened once, never through a symbolic link or
a hard link out of it.

What each kind of change does is its handler's (:mod:`checks.change.handlers`): the engine
only journals, locks, orders, records progress (:mod:`checks.change.progress`) and rolls back,
dispatching through the registry. States: ``prepared`` -> (``applied-tentative`` with a
deadline) -> ``applied`` | ``rolled-back`` (see docs/adr/0003-journal-format-and-states.md).
Programs run through an injected :class:`checks.change.executor.Executor`. System files (under the
plan's :attr:`~checks.change.plan.Plan.system` directories) are reached through
:mod:`checks.change.system` and take the host lock too.

A little over 500 lines: the transaction's life (journal, lock, apply, rollback, undo, recovery)
is one state machine whose steps share the same invariants; split, each half would re-state them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from checks.change.confined import Confined
from checks.change.executor import ActionLog
from checks.change.handlers import Context, Entry, StaleError, UndoConflict, for_change, for_entry
from checks.change.intent import (
    FORMAT,
    SYSTEM_FORMAT,
    TXN_ID,
    checked_entries,
    intent_system,
    named_outside,
    reapplies,
)
from checks.change.journal import (
    Redactor,
    SecretStore,
    Txn,
    ensure_private_dir,
    fsync_dir,
    holder_info,
    list_txns,
    new_txn_id,
    txn_root,
    write_private,
)
from checks.change.lock import LockedError, hold
from checks.change.plan import FileDelete, Plan, TreeRestore  # noqa: F401  (re-exported: TreeRestore lived here)
from checks.change.progress import NAME as PROGRESS
from checks.change.progress import Progress
from checks.change.stack import GateFailed
from checks.change.statedir import journal_dir
from checks.change.system import changes_system, containing, refuse_overlap
from checks.change.trust import verify_journal
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.executor import Executor
    from checks.change.stack import Reporter, Stack

TENTATIVE = "applied-tentative"
"""Applied, rolled back by :meth:`Engine.recover` unless :meth:`Engine.confirm` comes before its deadline."""
NAMED = "named:"
"""Prefix of a named secret (:attr:`Plan.named_secrets`) among a transaction's stored secrets."""
__all__ = ["ApplyResult", "Engine", "EngineError", "FailedError", "LockedError", "StaleError", "UndoConflict",
           "recover_install"]


class FailedError(EngineError, OSError):
    """An OSError during a transaction, told as what became of the files (still an OSError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass
class ApplyResult:
    txn: Txn
    secret_store: str | None = None
    tree_changed: int = 0
    tree_skipped: list[str] = field(default_factory=list)
    tree_mounts: list[str] = field(default_factory=list)
    """Mount points inside the media tree: not entered, not changed (relative to its root)."""
    secret_where: str | None = None
    """Where the old secrets went, for a message: "the system keyring", "a plaintext keyring file (PATH)"..."""


def _reason(exc: BaseException) -> str:
    """An OSError's reason and file, never content."""
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return where + (exc.strerror or type(exc).__name__)
    return type(exc).__name__


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _unlink_quiet(path: str) -> None:
    with suppress(FileNotFoundError):
        os.unlink(path)


class Engine:
    """Applies plans to one installation and undoes them."""

    def __init__(self, install_root: str, command: str = "fix", executor: Executor | None = None,
                 stack: Stack | None = None, report: Reporter | None = None) -> None:
        self.executor = executor
        self.stack = stack
        """Recreates services of the running stack (:class:`checks.change.plan.Recreate`)."""
        self.report = report
        """Runs the commands of :class:`checks.change.plan.Command` changes (default: made when first needed)."""
        self.root = os.path.abspath(install_root)
        self.journal = journal_dir(self.root)
        self.command = command
        self._lock_fd: int | None = None
        self.notices: list[str] = []
        self._fs: Confined | None = None

    def _files(self) -> Confined:
        """The confined file operations (checks.change.confined): the only way the engine changes a file."""
        if self._fs is None:
            self._fs = Confined(self.root)
        return self._fs

    # -- locking ------------------------------------------------------------
    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the installation's lock; refuse at once if someone else has it.

        The journal is checked first (:func:`checks.change.trust.verify_journal`): one
        another user could write is never locked, recovered or added to.
        """
        self.journal = journal_dir(self.root, create=True)
        verify_journal(self.journal)  # before anything is changed in it, even its mode
        ensure_private_dir(self.journal)
        with hold(os.path.join(self.journal, "lock"), holder_info(self.command)) as fd:
            self._lock_fd = fd
            try:
                yield
            finally:
                self._lock_fd = None

    # -- recovery -----------------------------------------------------------
    def pending(self) -> list[Txn]:
        return [t for t in list_txns(self.root) if t.state in (None, "prepared")]

    def entries(self, txn: Txn) -> list[Entry]:
        """``txn``'s entries, validated (:mod:`checks.change.intent`) and rebased onto the install's place now."""
        return checked_entries(txn.intent, txn.id, txn.dir, self.root, txn_root(self.root))

    def recover(self) -> list[str]:
        """Finish what a killed run left (lock held): discard unstarted, roll back half-applied,
        and roll back a tentative transaction past its deadline."""
        messages = []
        for txn in list_txns(self.root):
            state = txn.state
            if state is None:
                if not TXN_ID.match(txn.id):
                    continue  # not a directory the engine made: left alone
                # Killed while writing the journal: nothing outside it was touched.
                # Its secrets file goes too (where this release and older ones put it).
                from checks.change.statedir import secrets_dir

                for d in (secrets_dir(), os.path.join(self.journal, "secrets")):
                    for name in (f"{txn.id}.json.tmp", f"{txn.id}.json"):
                        _unlink_quiet(os.path.join(d, name))
                shutil.rmtree(txn.dir, ignore_errors=True)
                fsync_dir(txn_root(self.root))
            elif state == "prepared":
                self.entries(txn)  # refuse a malformed journal before touching anything
                messages.append(self._rolled_back(txn, "interrupted while it was being applied"))
            elif state == TENTATIVE and _past_deadline(txn):
                self.entries(txn)
                messages.append(self._rolled_back(txn, "not confirmed before its deadline"))
        return messages

    def _rolled_back(self, txn: Txn, why: str) -> str:
        problems = self._rollback(txn)
        txn.set_state("rolled-back")
        msg = f"rolled back transaction {txn.id}, {why}"
        return msg + (" (" + "; ".join(problems) + ")" if problems else "")

    def confirm(self, txn_id: str) -> Txn:
        """Make a tentative transaction permanent (``applied``), before its deadline (lock held or taken)."""
        if self._lock_fd is None:
            with self.locked():
                return self.confirm(txn_id)
        self.recover()  # one past its deadline is rolled back first, never confirmed
        for t in list_txns(self.root):
            if t.id == txn_id or (len(txn_id) >= 6 and t.id.endswith(txn_id)):
                if t.state != TENTATIVE:
                    raise EngineError(f"transaction {t.id} is {t.state or 'incomplete'}; only a tentative one "
                                      "can be confirmed")
                t.set_state("applied")
                return t
        raise EngineError(f"no transaction {txn_id} in this installation's journal (see dester-harden history)")

    def revert(self, txn_id: str, why: str) -> str:
        """Roll a tentative transaction back before its deadline (lock held): confirm-or-revert's "no"."""
        for t in list_txns(self.root):
            if t.id == txn_id and t.state == TENTATIVE:
                self.entries(t)
                return self._rolled_back(t, why)
        raise EngineError(f"no tentative transaction {txn_id} in this installation's journal")

    def _context(self, txn: Txn | None = None, redactor: Redactor | None = None,
                 secrets: dict[str, str] | None = None) -> Context:
        log = ActionLog(txn.dir, list(redactor.by_token.values()) if redactor else []) if txn else None
        if txn is not None:
            # The system directories this transaction recorded: the only ones its entries reach from "/".
            self._files().system = intent_system(txn.intent)
        return Context(self.root, self._files(), self._executor(), txn, redactor, secrets=secrets or {}, log=log,
                       stack=self.stack, report=self.report)

    def _executor(self) -> Executor:
        if self.executor is None:
            from checks.change.executor import SubprocessExecutor

            self.executor = SubprocessExecutor()
        return self.executor

    def _rollback(self, txn: Txn) -> list[str]:
        """Put back what ``txn`` changed; safe to run again when killed midway."""
        problems: list[str] = []
        entries = self.entries(txn)
        self._unmark_undone(txn)
        redactor, secrets = self._secrets(txn)
        ctx = self._context(txn, redactor, secrets)
        progress = Progress(txn.dir)
        # Without a progress log (older releases) every entry may have run: each is checked by hash.
        ran = progress.read(txn.blob_or_none(PROGRESS)) if txn.intent.get("progress") else None
        for i in reversed(range(len(entries))):
            status = "done" if ran is None else ran.get(i)
            if status in (None, "reverted"):
                continue  # never started, or already taken back by a rollback that was killed later
            ctx.progress = status
            found = self._restore_entry(entries[i], ctx)
            problems += found
            if ran is not None and not found:
                progress.mark("reverted", i)
        problems += ctx.notices  # media roots left alone, said with the rest
        return problems

    def _restore_entry(self, entry: Entry, ctx: Context) -> list[str]:
        handler = for_entry(entry.TYPE)
        assert handler is not None
        return handler.rollback(entry, ctx)

    def _unmark_undone(self, txn: Txn) -> None:
        """An undo rolled back no longer undoes its target: remove the target's marker."""
        undoes = txn.intent.get("undoes")
        if not isinstance(undoes, str) or not TXN_ID.match(undoes):
            return
        d = os.path.join(txn_root(self.root), undoes)
        if not os.path.isdir(d):
            return
        _unlink_quiet(os.path.join(d, "undone-by.tmp"))
        marker = os.path.join(d, "undone-by")
        if (_read(marker) or b"").strip() == txn.id.encode():
            _unlink_quiet(marker)
            fsync_dir(d)

    def _secrets(self, txn: Txn) -> tuple[Redactor, dict[str, str]]:
        """The transaction's redactor and its named secrets (for commands)."""
        where = txn.intent.get("secret_store")
        if not where:
            return Redactor({}), {}
        store = SecretStore(self.journal)
        try:
            stored = store.get(txn.id, where)
        except (LookupError, OSError, ValueError):
            raise EngineError(
                f"transaction {txn.id} needs the secrets it kept in {store.describe(where)}, and they are gone, so "
                f"its files cannot be restored byte for byte; put the secrets back there (a keyring backup), or "
                f"restore the files by hand (the journal in {txn.dir} holds their contents with secrets blanked) "
                f"and then run 'dester-harden undo --resolved {txn.id}' to record that") from None
        tokens = {k: v for k, v in stored.items() if not k.startswith(NAMED)}
        return Redactor(tokens), {k[len(NAMED):]: v for k, v in stored.items() if k.startswith(NAMED)}

    def _redactor(self, txn: Txn) -> Redactor:
        return self._secrets(txn)[0]

    # -- apply --------------------------------------------------------------
    def apply(self, plan: Plan, kind: str = "fix", undoes: str | None = None,
              tentative: float | None = None) -> ApplyResult:
        """Journal the plan, then apply it; refuse if a file changed since the preview.

        ``tentative`` (seconds): leave the transaction ``applied-tentative``; unless
        :meth:`confirm` is called before that deadline, the next :meth:`recover` rolls it back.
        """
        if self._lock_fd is None:
            with self.locked():
                self.recover()
                return self.apply(plan, kind, undoes, tentative)
        if any(getattr(c, "host", False) for c in plan.changes) or changes_system(plan.changes, plan.system, plan.named,
                                                                                 self.root):
            from checks.change.hostjournal import host_locked, record

            with host_locked(self.command):
                result = self._apply(plan, kind, undoes, tentative)
                record(result.txn.id, self.root, [e for e in result.txn.intent["entries"]
                                                  if e.get("host") or e.get("system")])
                return result
        return self._apply(plan, kind, undoes, tentative)

    def _apply(self, plan: Plan, kind: str, undoes: str | None, tentative: float | None = None) -> ApplyResult:
        entries, blobs = self._prepare_entries(plan)
        txn_id = new_txn_id()
        ensure_private_dir(txn_root(self.root))
        tdir = os.path.join(txn_root(self.root), txn_id)
        os.mkdir(tdir, 0o700)
        txn = Txn(txn_id, tdir)
        redactor = Redactor(plan.secrets)
        stored = dict(redactor.by_token)
        stored.update({NAMED + k: v for k, v in plan.named_secrets.items()})
        store = None
        if stored:
            store = SecretStore(self.journal).put(txn_id, stored)
        for name, data in blobs.items():
            write_private(os.path.join(tdir, name), redactor.redact(data))
        # Files outside the installation that are not system files are the ones the user named.
        touched = [p for e in entries if not getattr(e, "system", False) for p in e.paths()]
        system = sorted({d for e in entries if getattr(e, "system", False) for p in e.paths()
                         if (d := containing(p, self._files().system))})
        txn.intent = {"format": SYSTEM_FORMAT if system else FORMAT, "id": txn_id, "kind": kind,
                      "checks": plan.checks, "undoes": undoes,
                      "secret_store": store, "by": holder_info(self.command), "install": self.root,
                      "named": named_outside(touched, self.root), "progress": True,
                      "entries": [e.to_json() for e in entries]}
        if system:
            txn.intent["system"] = system
        if tentative is not None:
            txn.intent["deadline"] = _now() + tentative
        write_private(os.path.join(tdir, "intent.json"), json.dumps(txn.intent, indent=1).encode())
        # The state file is made at its final size now, so that the commit
        # overwrites it in place and cannot fail for want of disk space.
        txn.set_state("prepared")  # from here on, recovery rolls back
        result = ApplyResult(txn, store, secret_where=SecretStore(self.journal).describe(store) if store else None)
        ctx = self._context(txn, redactor, dict(plan.named_secrets))
        progress = Progress(tdir)
        try:
            for i, entry in enumerate(entries):
                progress.mark("started", i)
                try:
                    self._apply_entry(entry, txn, redactor, ctx)
                except EngineError:
                    # The handler refused or its program said it failed: the entry made no change.
                    # Anything else (a kill, SIGTERM, an OSError) leaves it "started": not known.
                    progress.mark("failed", i)
                    raise
                progress.mark("done", i)
            if undoes:
                # Marked while still prepared, so "applied" commits both at once:
                # a rollback of this undo removes the mark (_unmark_undone).
                write_private(os.path.join(txn_root(self.root), undoes, "undone-by"), txn_id.encode())
        except BaseException as exc:
            self._rollback_after(txn, exc, "while it was being applied")
            raise
        finally:
            result.tree_changed, result.tree_skipped, result.tree_mounts = (ctx.tree_changed, ctx.tree_skipped,
                                                                            ctx.tree_mounts)
        try:
            txn.set_state(TENTATIVE if tentative is not None else "applied")
        except OSError as exc:
            self._rollback_after(txn, exc, "when its completion was being recorded")
            raise
        return result

    def _rollback_after(self, txn: Txn, exc: BaseException, when: str) -> None:
        """Roll ``txn`` back after ``exc``; an OSError then says exactly what happened to the files."""
        try:
            problems = self._rollback(txn)
            txn.set_state("rolled-back")
        except Exception as again:  # noqa: BLE001 - reported in the one line below
            reason = getattr(again, "strerror", None) or type(again).__name__
            raise FailedError(f"transaction {txn.id} failed {when} ({_reason(exc)}) and could not be rolled back "
                              f"now ({reason}); the next dester-harden command rolls it back") from None
        if isinstance(exc, GateFailed):
            exc.rollback_problems = problems  # "recreate api by hand...": the face says it with the failure
        if isinstance(exc, OSError) and not isinstance(exc, FailedError):
            raise FailedError(f"transaction {txn.id} failed {when} ({_reason(exc)}); every change it had made "
                              "was rolled back, the files are as before") from None

    def _prepare_entries(self, plan: Plan) -> tuple[list[Entry], dict[str, bytes]]:
        """Each change checked against the disk by its handler, as a journal entry (nothing written yet)."""
        entries: list[Entry] = []
        blobs: dict[str, bytes] = {}
        # The install root is opened once per transaction; every path is checked
        # (and later changed) relative to it, never followed out of it.
        if self._fs is not None:
            self._fs.close()
        self._fs = Confined(self.root, refuse_overlap(plan.system, self.root))
        ctx = self._context(secrets=dict(plan.named_secrets))
        ctx.named = frozenset(os.path.abspath(p) for p in plan.named)
        for i, change in enumerate(plan.changes):
            prepared = for_change(change).prepare(change, i, ctx)
            entries.append(prepared.entry)
            blobs.update(prepared.blobs)
        return entries, blobs

    def _apply_entry(self, entry: Entry, txn: Txn, redactor: Redactor, ctx: Context) -> None:
        handler = for_entry(entry.TYPE)
        assert handler is not None
        handler.apply(entry, ctx)

    # -- undo ---------------------------------------------------------------
    def undo_plan(self, txn: Txn) -> tuple[Plan, list[UndoConflict]]:
        """The plan that takes ``txn`` back, and files edited since it."""
        entries = self.entries(txn)
        self._refuse_reapplying(txn, entries)
        try:
            redactor, secrets = self._secrets(txn)
        except EngineError:
            where = txn.intent.get("secret_store")
            raise EngineError(f"cannot undo {txn.id}: the secrets it replaced are gone from "
                              f"{SecretStore(self.journal).describe(where)}; "
                              "its journal alone cannot restore them") from None
        plan = Plan(checks=list(txn.intent.get("checks", [])))
        plan.secrets = set(redactor.by_token.values())
        plan.named_secrets = secrets
        plan.named = [e.path for e in entries if getattr(e, "named", False) and hasattr(e, "path")]
        plan.system = list(intent_system(txn.intent))
        ctx = self._context(txn, redactor, secrets)
        conflicts: list[UndoConflict] = []
        for entry in reversed(entries):
            handler = for_entry(entry.TYPE)
            assert handler is not None
            changes, found = handler.undo(entry, ctx)
            plan.changes += changes
            conflicts += found
        return plan, conflicts

    def _refuse_reapplying(self, txn: Txn, entries: list[Entry]) -> None:
        """Refuse an undo that would write back a change a later forced undo took back (see intent.reapplies)."""
        why = reapplies(txn, entries, list_txns(self.root), self.entries)
        if why:
            raise EngineError(why)

    def resolve(self, txn_id: str) -> Txn:
        """Record that an interrupted transaction was put back by hand (lock held).

        For the one case recovery cannot finish by itself: a prepared
        transaction whose secrets are gone. Its journal stays, marked
        ``resolved``, and is never rolled back again.
        """
        for t in list_txns(self.root):
            if t.id == txn_id or (len(txn_id) >= 6 and t.id.endswith(txn_id)):
                if t.state != "prepared":
                    raise EngineError(f"transaction {t.id} is {t.state or 'incomplete'}; only an interrupted one "
                                      "can be marked as put back by hand")
                t.set_state("resolved")
                return t
        raise EngineError(f"no transaction {txn_id} in this installation's journal (see dester-harden history)")

    def find(self, txn_id: str | None) -> Txn:
        txns = [t for t in list_txns(self.root) if t.state == "applied"]
        if txn_id in (None, "--last"):
            live = [t for t in txns if not t.undone_by and t.intent.get("kind") != "undo"]
            if not live:
                raise EngineError("nothing to undo: no applied transaction in this installation's journal")
            return live[-1]
        for t in list_txns(self.root):
            if t.id == txn_id or (len(txn_id) >= 6 and t.id.endswith(txn_id)):
                if t.state != "applied":
                    raise EngineError(f"transaction {t.id} is {t.state or 'incomplete'}; "
                                      "only applied ones can be undone")
                if t.undone_by:
                    raise EngineError(f"transaction {t.id} was already undone by {t.undone_by}")
                return t
        raise EngineError(f"no transaction {txn_id} in this installation's journal (see dester-harden history)")


def recover_install(root: str, stack: Stack | None = None) -> list[str]:
    """Roll back what a killed run left half-applied, before anything reads the files.

    ``stack`` recreates the services a transaction killed mid-recreate had changed (without
    one, the rollback's problem line says what to recreate by hand).

    The common case costs a directory listing and writes nothing (not even the
    lock file). When someone else holds the lock they own the journal: nothing
    to do here. Raises :class:`EngineError` when a rollback cannot be done or
    the journal cannot be locked (a read-only or full disk), and
    :class:`checks.change.trust.UntrustedJournal` / :class:`checks.change.intent.BadJournal`
    for a journal that is not acted on; the audit warns and reads on.
    """
    from checks.change.pending import has_unfinished

    if not has_unfinished(root):
        return []
    engine = Engine(root, "recover", stack=stack)
    try:
        with engine.locked():
            return engine.recover()
    except LockedError:
        return []
    except OSError as exc:
        raise EngineError(f"could not lock the journal {engine.journal} to finish an interrupted change "
                          f"({_reason(exc)}); nothing was rolled back") from None


def _past_deadline(txn: Txn) -> bool:
    deadline = txn.intent.get("deadline")
    if not isinstance(deadline, (int, float)) or isinstance(deadline, bool):
        return True  # a tentative transaction without a readable deadline is not kept
    return _now() >= deadline


def _now() -> float:
    """The clock the deadlines are judged by (tests move it)."""
    return time.time()
