"""The change engine: the only code that writes to the user's files.

Every transaction is journaled first (write-ahead, fsynced), then applied with
atomic replaces that keep each file's owner, group and mode. A process killed
at any instant leaves each file wholly before or wholly after, and the next
command rolls an unfinished transaction back (:meth:`Engine.recover`). Files
are read for the checks and changed only through :mod:`checks.change.confined`:
relative to the install root opened once, never through a symbolic link or
a hard link out of it.

Over 600 lines: the journal's trust and validation live in checks/change/trust.py and
checks/change/intent.py, the confined file operations in checks/change/confined.py, the bulk-chmod
records in checks/change/treerecords.py; what stays is the transaction itself.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from checks.change import treerecords as _records
from checks.change import walk as _walk
from checks.change import walkundo as _walkundo
from checks.change.confined import Confined, ConfinementError
from checks.change.intent import FORMAT, TXN_ID, checked_entries, named_outside, reapplies
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
from checks.change.plan import FileEdit, ModeChange, Plan, TreeChmod, sha256
from checks.change.statedir import journal_dir
from checks.change.trust import UntrustedJournal, verify_journal
from checks.core.errors import EngineError
from checks.core.mediaroot import media_root_problem


class LockedError(EngineError):
    def __init__(self, holder: dict) -> None:
        who = holder.get("user", "?")
        pid = holder.get("pid", "?")
        cmd = holder.get("command", "?")
        since = holder.get("since", "?")
        super().__init__(f"another dester-harden ({cmd}, pid {pid}, user {who}, since {since}) is changing this installation; try again when it is done")
        self.holder = holder


class FailedError(EngineError, OSError):
    """An OSError during a transaction, told as what became of the files (still an OSError)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class StaleError(EngineError):
    """A file changed between the preview and the apply."""


@dataclass
class UndoConflict:
    """A file edited by hand since the transaction: what undo would overwrite."""

    path: str
    expected: bytes | None
    current: bytes | None


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


def _check_unchanged(entry: dict, fs: Confined) -> None:
    """Just before a file is replaced: it is still the regular file the plan was checked against."""
    path, named = entry["path"], entry.get("named", False)
    st = fs.lstat(path, named)
    if entry["before_sha"] is None:
        if st is not None:
            raise StaleError(f"{path} appeared since the preview; run the fix again to see the new plan")
        return
    if st is None or not stat.S_ISREG(st.st_mode):
        raise StaleError(f"{path} was removed or replaced (by a symbolic link?) since the preview; nothing was changed")
    current = fs.read(path, named)
    if current is None or sha256(current) != entry["before_sha"]:
        raise StaleError(f"{path} changed since the preview; run the fix again to see the new plan")


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Engine:
    """Applies plans to one installation and undoes them."""

    def __init__(self, install_root: str, command: str = "fix") -> None:
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
        path = os.path.join(self.journal, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise UntrustedJournal(path, "is not a private file of the user running dester-harden")
        except BaseException:
            os.close(fd)
            raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            holder: dict = {}
            for _ in range(20):  # the holder writes who it is just after taking the lock
                try:
                    holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
                except ValueError:
                    holder = {}
                if holder:
                    break
                time.sleep(0.025)
            os.close(fd)
            raise LockedError(holder) from None
        try:
            info = json.dumps(holder_info(self.command)).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, info, 0)
            self._lock_fd = fd
            yield
        finally:
            self._lock_fd = None
            os.close(fd)  # closing releases the flock

    # -- recovery -----------------------------------------------------------
    def pending(self) -> list[Txn]:
        return [t for t in list_txns(self.root) if t.state in (None, "prepared")]

    def entries(self, txn: Txn) -> list[dict]:
        """``txn``'s entries, validated (:mod:`checks.change.intent`) and rebased onto the install's place now."""
        return checked_entries(txn.intent, txn.id, txn.dir, self.root, txn_root(self.root))

    def recover(self) -> list[str]:
        """Finish what a killed run left: discard unstarted, roll back half-applied (lock held)."""
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
                problems = self._rollback(txn)
                txn.set_state("rolled-back")
                msg = f"rolled back transaction {txn.id}, interrupted while it was being applied"
                if problems:
                    msg += " (" + "; ".join(problems) + ")"
                messages.append(msg)
        return messages

    def _rollback(self, txn: Txn) -> list[str]:
        """Put back what ``txn`` changed; safe to run again when killed midway."""
        problems: list[str] = []
        entries = self.entries(txn)
        self._unmark_undone(txn)
        redactor = self._redactor(txn)
        for entry in reversed(entries):
            kind = entry["type"]
            if kind == "file":
                self._clean_temp(entry["path"], txn.id, entry.get("named", False))
                try:
                    current = self._files().read(entry["path"], entry.get("named", False))
                except EngineError:  # now a symbolic link, a hard link, or behind one: not ours to touch
                    problems.append(f"{entry['path']} was replaced meanwhile; left as it is")
                    continue
                cur_sha = sha256(current) if current is not None else None
                if cur_sha == entry["before_sha"]:
                    continue
                if cur_sha != entry["after_sha"]:
                    problems.append(f"{entry['path']} changed by someone else; left as it is")
                    continue
                self._restore_file(entry, txn, redactor)
            elif kind == "mode":
                try:
                    cur = stat.S_IMODE(os.lstat(entry["path"]).st_mode)
                except FileNotFoundError:
                    continue
                if cur == entry["after"] and not os.path.islink(entry["path"]):
                    try:
                        self._files().chmod(entry["path"], entry["before"], entry.get("named", False))
                    except (EngineError, FileNotFoundError):
                        problems.append(f"{entry['path']} was replaced meanwhile; its mode was left as it is")
            elif kind in ("tree", "tree-restore"):
                self._tree_restore(entry["root"], os.path.join(txn.dir, entry["records"]), None)
        problems += self.notices  # media roots left alone, said with the rest
        self.notices.clear()
        return problems

    def _clean_temp(self, path: str, tag: str, named: bool = False) -> None:
        # Both the apply's temp and the one of a rollback killed before its rename.
        d, name = os.path.split(path)
        for t in (tag, tag + "r"):
            try:
                self._files().unlink(os.path.join(d, f".{name}.dh-{t}.tmp"), named)
            except (ConfinementError, FileNotFoundError, NotADirectoryError):
                pass  # no directory of the installation there: no temp of ours either

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

    def _restore_file(self, entry: dict, txn: Txn, redactor: Redactor) -> None:
        named = entry.get("named", False)
        if entry["before"] is None:  # the transaction created it
            self._files().unlink(entry["path"], named)
            return
        data = redactor.restore(txn.blob(entry["before"]))
        self._files().replace(entry["path"], data, entry["mode"], entry["uid"], entry["gid"], txn.id + "r", named)

    def _redactor(self, txn: Txn) -> Redactor:
        where = txn.intent.get("secret_store")
        if not where:
            return Redactor({})
        store = SecretStore(self.journal)
        try:
            return Redactor(store.get(txn.id, where))
        except (LookupError, OSError, ValueError):
            raise EngineError(
                f"transaction {txn.id} needs the secrets it kept in {store.describe(where)}, and they are gone, so "
                f"its files cannot be restored byte for byte; put the secrets back there (a keyring backup), or "
                f"restore the files by hand (the journal in {txn.dir} holds their contents with secrets blanked) "
                f"and then run 'dester-harden undo --resolved {txn.id}' to record that") from None

    # -- apply --------------------------------------------------------------
    def apply(self, plan: Plan, kind: str = "fix", undoes: str | None = None) -> ApplyResult:
        """Journal the plan, then apply it; refuse if a file changed since the preview."""
        if self._lock_fd is None:
            with self.locked():
                self.recover()
                return self._apply(plan, kind, undoes)
        return self._apply(plan, kind, undoes)

    def _apply(self, plan: Plan, kind: str, undoes: str | None) -> ApplyResult:
        entries, blobs = self._prepare_entries(plan)
        txn_id = new_txn_id()
        ensure_private_dir(txn_root(self.root))
        tdir = os.path.join(txn_root(self.root), txn_id)
        os.mkdir(tdir, 0o700)
        txn = Txn(txn_id, tdir)
        secrets = plan.secrets
        redactor = Redactor(secrets)
        store = None
        if redactor.by_token:
            store = SecretStore(self.journal).put(txn_id, redactor.by_token)
        for name, data in blobs.items():
            write_private(os.path.join(tdir, name), redactor.redact(data))
        touched = [e["path"] for e in entries if e["type"] in ("file", "mode")]
        txn.intent = {"format": FORMAT, "id": txn_id, "kind": kind, "checks": plan.checks, "undoes": undoes,
                      "secret_store": store, "by": holder_info(self.command), "install": self.root,
                      "named": named_outside(touched, self.root), "entries": entries}
        write_private(os.path.join(tdir, "intent.json"), json.dumps(txn.intent, indent=1).encode())
        # The state file is made at its final size now, so that the commit
        # overwrites it in place and cannot fail for want of disk space.
        txn.set_state("prepared")  # from here on, recovery rolls back
        result = ApplyResult(txn, store, secret_where=SecretStore(self.journal).describe(store) if store else None)
        try:
            for entry in entries:
                self._apply_entry(entry, txn, redactor, result)
            if undoes:
                # Marked while still prepared, so "applied" commits both at once:
                # a rollback of this undo removes the mark (_unmark_undone).
                write_private(os.path.join(txn_root(self.root), undoes, "undone-by"), txn_id.encode())
        except BaseException as exc:
            self._rollback_after(txn, exc, "while it was being applied")
            raise
        try:
            txn.set_state("applied")
        except OSError as exc:
            self._rollback_after(txn, exc, "when its completion was being recorded")
            raise
        return result

    def _rollback_after(self, txn: Txn, exc: BaseException, when: str) -> None:
        """Roll ``txn`` back after ``exc``; an OSError then says exactly what happened to the files."""
        try:
            self._rollback(txn)
            txn.set_state("rolled-back")
        except Exception as again:  # noqa: BLE001 - reported in the one line below
            reason = getattr(again, "strerror", None) or type(again).__name__
            raise FailedError(f"transaction {txn.id} failed {when} ({_reason(exc)}) and could not be rolled back "
                              f"now ({reason}); the next dester-harden command rolls it back") from None
        if isinstance(exc, OSError) and not isinstance(exc, FailedError):
            raise FailedError(f"transaction {txn.id} failed {when} ({_reason(exc)}); every change it had made "
                              "was rolled back, the files are as before") from None

    def _prepare_entries(self, plan: Plan) -> tuple[list[dict], dict[str, bytes]]:
        entries: list[dict] = []
        blobs: dict[str, bytes] = {}
        # The install root is opened once per transaction; every path is checked
        # (and later changed) relative to it, never followed out of it.
        if self._fs is not None:
            self._fs.close()
        self._fs = fs = Confined(self.root)
        named_paths = {os.path.abspath(p) for p in plan.named}
        for i, change in enumerate(plan.changes):
            if isinstance(change, FileEdit):
                path = os.path.abspath(change.path)
                named = path in named_paths
                st = fs.lstat(path, named)
                if st is not None and stat.S_ISLNK(st.st_mode):
                    raise EngineError(f"{path} is a symbolic link; edit its target by hand")
                current = fs.read(path, named)
                expected_sha = sha256(change.before) if change.before is not None else None
                cur_sha = sha256(current) if current is not None else None
                if cur_sha != expected_sha:
                    raise StaleError(f"{path} changed since the preview; run the fix again to see the new plan")
                if current is not None:
                    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                else:
                    pst = fs.lstat(os.path.dirname(path), named)
                    if pst is None or not stat.S_ISDIR(pst.st_mode):
                        raise StaleError(f"{os.path.dirname(path)} is gone since the preview; nothing was changed")
                    mode, uid, gid = (change.mode if change.mode is not None else 0o600), pst.st_uid, pst.st_gid
                entry = {"type": "file", "path": path, "before_sha": cur_sha, "before": None,
                         "after_sha": sha256(change.after) if change.after is not None else None,
                         "after": None, "mode": mode, "uid": uid, "gid": gid}
                if named:
                    entry["named"] = True
                if current is not None:
                    entry["before"] = f"b{i}"
                    blobs[f"b{i}"] = current
                if change.after is not None:
                    entry["after"] = f"a{i}"
                    blobs[f"a{i}"] = change.after
                entries.append(entry)
            elif isinstance(change, ModeChange):
                path = os.path.abspath(change.path)
                named = path in named_paths
                st = fs.lstat(path, named)
                if st is None:
                    raise StaleError(f"{path} was removed since the preview; nothing was changed")
                if stat.S_ISLNK(st.st_mode):
                    raise EngineError(f"{path} is a symbolic link; not changing its target's mode")
                if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not named:
                    raise ConfinementError(f"{path} has {st.st_nlink} hard links: another name for the same file may "
                                           "be outside the installation; not changing its mode")
                if stat.S_IMODE(st.st_mode) != change.before:
                    raise StaleError(f"{path} mode changed since the preview")
                entry = {"type": "mode", "path": path, "before": change.before, "after": change.after}
                if named:
                    entry["named"] = True
                entries.append(entry)
            elif isinstance(change, TreeChmod):
                problem = media_root_problem(change.root, self.root)
                if problem:  # judged again when the walk opens it (_open_tree)
                    raise EngineError(f"not changing the media modes: {problem}")
                entries.append({"type": "tree", "root": os.path.abspath(change.root), "records": f"tree{i}.bin"})
            elif isinstance(change, TreeRestore):
                problem = media_root_problem(change.root, self.root)
                if problem:
                    raise EngineError(f"not putting the media modes back: {problem}")
                entries.append({"type": "tree-restore", "root": change.root, "records": f"tree{i}.bin",
                                "source": change.records})
            else:  # pragma: no cover - a new change type without engine support
                raise EngineError(f"unsupported change {type(change).__name__}")
        return entries, blobs

    def _apply_entry(self, entry: dict, txn: Txn, redactor: Redactor, result: ApplyResult) -> None:
        kind = entry["type"]
        if kind == "file":
            fs, named = self._files(), entry.get("named", False)
            _check_unchanged(entry, fs)
            if entry["after"] is None:
                fs.unlink(entry["path"], named)
            else:
                data = redactor.restore(txn.blob(entry["after"]))
                mode, uid, gid = entry["mode"], entry["uid"], entry["gid"]
                if entry["before"] is not None:
                    # Keep the file's owner and mode as they are now (an earlier
                    # entry of this transaction may have just changed the mode).
                    st = fs.lstat(entry["path"], named)
                    mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
                fs.replace(entry["path"], data, mode, uid, gid, txn.id, named)
        elif kind == "mode":
            self._files().chmod(entry["path"], entry["after"], entry.get("named", False))
        elif kind == "tree":
            result.tree_changed += self._tree_apply(entry["root"], os.path.join(txn.dir, entry["records"]),
                                                    result.tree_skipped, result.tree_mounts)
        elif kind == "tree-restore":
            result.tree_changed += self._tree_restore(entry["root"], entry["source"], os.path.join(txn.dir, entry["records"]))

    # -- bulk chmod -----------------------------------------------------------
    def _open_tree(self, root: str) -> int:
        """The media root, opened without following a link, and judged by what was opened.

        The path the descriptor names (``/proc/self/fd``) is judged, not the
        path given: a component swapped for a symlink after the planner's
        judgement cannot redirect the walk into a system or home directory.
        """
        problem = media_root_problem(root, self.root)
        fd = _walk.open_root(root)
        try:
            if problem is None:
                try:
                    opened = os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    opened = None
                problem = (media_root_problem(opened, self.root) if opened and opened.startswith("/")
                           else f"cannot tell which directory {root} is")
        except BaseException:
            os.close(fd)
            raise
        if problem:
            os.close(fd)
            raise EngineError(f"not changing the media modes: {problem}")
        return fd

    def _tree_apply(self, root: str, records_path: str, skipped: list[str], mounts: list[str] | None = None) -> int:
        """Apply the media rule; each directory's records reach the file first (:mod:`checks.change.treerecords`)."""
        try:
            fd = self._open_tree(root)
        except _walk.TreeError as exc:
            raise EngineError(f"not changing the media modes: {exc}") from None
        try:
            out = os.open(records_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                # Each group is written before its chmods: a killed process leaves the
                # records in the page cache, so recovery knows every mode it must put back.
                changed = _walk.apply_rule(root, _records_writer(out), skipped, mounts=mounts, root_fd=fd)
                os.fsync(out)
            finally:
                os.close(out)
        finally:
            os.close(fd)
        return changed

    def _tree_restore(self, root: str, source: str, records_out: str | None) -> int:
        """Put back every recorded mode whose entry is still as the fix left it.

        ``records_out`` None: a rollback, which cannot refuse; a root that is no
        longer a library root (or gone) is left as it is and said in ``notices``.
        """
        records = _records.load(source)
        if not records.index:
            if records_out:
                write_private(records_out, b"")
            return 0
        try:
            fd = self._open_tree(root)
        except _walk.TreeError:  # the library is gone: nothing to put back
            if records_out:
                write_private(records_out, b"")
            return 0
        except EngineError as exc:
            if records_out is not None:
                raise
            self.notices.append(f"media modes under {root} were not put back: {exc}")
            return 0
        out = None
        try:
            if records_out:
                out = os.open(records_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            journal = _records_writer(out) if out is not None else None
            restored = _walkundo.restore_modes(root, records.group, journal, root_fd=fd)
            if out is not None:
                os.fsync(out)
        finally:
            if out is not None:
                os.close(out)
            os.close(fd)
        return restored

    # -- undo ---------------------------------------------------------------
    def undo_plan(self, txn: Txn) -> tuple[Plan, list[UndoConflict]]:
        """The plan that takes ``txn`` back, and files edited since it."""
        entries = self.entries(txn)
        self._refuse_reapplying(txn, entries)
        try:
            redactor = self._redactor(txn)
        except (LookupError, OSError, ValueError) as exc:
            where = txn.intent.get("secret_store")
            raise EngineError(f"cannot undo {txn.id}: the secrets it replaced are gone from "
                              f"{SecretStore(self.journal).describe(where)} ({type(exc).__name__}); "
                              "its journal alone cannot restore them") from None
        plan = Plan(checks=list(txn.intent.get("checks", [])))
        plan.secrets = set(redactor.by_token.values())
        plan.named = [e["path"] for e in entries if e.get("named")]
        conflicts: list[UndoConflict] = []
        for entry in reversed(entries):
            kind = entry["type"]
            if kind == "file":
                # Read as the undo will write: a file now behind a symbolic link is refused here, not shown.
                current = self._files().read(entry["path"], entry.get("named", False))
                cur_sha = sha256(current) if current is not None else None
                after = redactor.restore(txn.blob(entry["after"])) if entry["after"] else None
                before = redactor.restore(txn.blob(entry["before"])) if entry["before"] else None
                if cur_sha != entry["after_sha"]:
                    conflicts.append(UndoConflict(entry["path"], after, current))
                plan.changes.append(FileEdit(entry["path"], current, before, entry["mode"]))
            elif kind == "mode":
                try:
                    cur = stat.S_IMODE(os.lstat(entry["path"]).st_mode)
                except FileNotFoundError:
                    continue
                if cur != entry["after"]:
                    conflicts.append(UndoConflict(entry["path"], None, None))
                plan.changes.append(ModeChange(entry["path"], cur, entry["before"]))
            elif kind in ("tree", "tree-restore"):
                plan.changes.append(TreeRestore(entry["root"], os.path.join(txn.dir, entry["records"])))
        return plan, conflicts

    def _refuse_reapplying(self, txn: Txn, entries: list[dict]) -> None:
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
                    raise EngineError(f"transaction {t.id} is {t.state or 'incomplete'}; only applied ones can be undone")
                if t.undone_by:
                    raise EngineError(f"transaction {t.id} was already undone by {t.undone_by}")
                return t
        raise EngineError(f"no transaction {txn_id} in this installation's journal (see dester-harden history)")


def recover_install(root: str) -> list[str]:
    """Roll back what a killed run left half-applied, before anything reads the files.

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
    engine = Engine(root, "recover")
    try:
        with engine.locked():
            return engine.recover()
    except LockedError:
        return []
    except OSError as exc:
        raise EngineError(f"could not lock the journal {engine.journal} to finish an interrupted change "
                          f"({_reason(exc)}); nothing was rolled back") from None


@dataclass(frozen=True, slots=True)
class TreeRestore:
    """Undo of a bulk chmod: put back the modes recorded in ``records``."""

    root: str
    records: str

    def count(self) -> int:
        """How many entries the records say were changed (the most this undo puts back)."""
        return _records.load(self.records).count()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _records_writer(fd: int):
    """``journal(data)`` for the walks: the format's magic goes out with the first group, in one write."""
    first = [True]

    def journal(data: bytes) -> None:
        if first[0]:
            first[0] = False
            data = _records.MAGIC + data
        _write_all(fd, data)
    return journal


def _load_records(path: str) -> _records.Records:
    """A records file (either format), see :mod:`checks.change.treerecords`."""
    return _records.load(path)
