"""File edits (create, replace, delete) and mode changes: the kinds checked by hash and by mode."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.change.confined import ConfinementError
from checks.change.handlers import Context, Entry, Prepared, StaleError, UndoConflict
from checks.change.plan import FileDelete, FileEdit, ModeChange, sha256
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.intent import Loader
    from checks.core.secrets import Masker


def _display(path: str, root: str) -> str:
    from checks.core.textio import shown

    rel = os.path.relpath(path, root)
    return shown(path if rel.startswith("..") else rel)


@dataclass(frozen=True, slots=True)
class FileEntry(Entry):
    """A file's content before and after (blob names, secrets tokenised), its mode and owner."""

    TYPE = "file"
    path: str
    before_sha: str | None
    before: str | None
    after_sha: str | None
    after: str | None
    mode: int
    uid: int
    gid: int
    named: bool = False
    system: bool = False
    """Under a system directory of the plan (:mod:`checks.change.system`), reached from ``/``."""

    def to_json(self) -> dict[str, Any]:
        return _without_defaults(Entry.to_json(self))

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


@dataclass(frozen=True, slots=True)
class ModeEntry(Entry):
    """A chmod, never through a symbolic link."""

    TYPE = "mode"
    path: str
    before: int
    after: int
    named: bool = False
    system: bool = False

    def to_json(self) -> dict[str, Any]:
        return _without_defaults(Entry.to_json(self))

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


def _without_defaults(out: dict[str, Any]) -> dict[str, Any]:
    for key in ("named", "system"):
        if not out[key]:
            del out[key]  # as older releases wrote it
    return out


def _path_history(raw: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [str(raw["path"])], []


class FileHandler:
    """:class:`FileEdit` and :class:`FileDelete`: whole-file atomic replaces that keep owner and mode."""

    entry_type = "file"
    changes: tuple[type, ...] = (FileEdit, FileDelete)

    def prepare(self, change: FileEdit, index: int, ctx: Context) -> Prepared:
        fs = ctx.fs
        path = os.path.abspath(change.path)
        named = path in ctx.named
        st = fs.lstat(path, named)
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise EngineError(f"{path} is a symbolic link; edit its target by hand")
        current = fs.read(path, named)
        expected_sha = sha256(change.before) if change.before is not None else None
        cur_sha = sha256(current) if current is not None else None
        if cur_sha != expected_sha:
            raise StaleError(f"{path} changed since the preview; run the fix again to see the new plan")
        if current is not None and st is not None:
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        else:
            pst = fs.lstat(os.path.dirname(path), named)
            if pst is None or not stat.S_ISDIR(pst.st_mode):
                raise StaleError(f"{os.path.dirname(path)} is gone since the preview; nothing was changed")
            mode, uid, gid = (change.mode if change.mode is not None else 0o600), pst.st_uid, pst.st_gid
            if change.owner is not None:
                uid, gid = _owner(change.owner, path)
        blobs = {}
        if current is not None:
            blobs[f"b{index}"] = current
        if change.after is not None:
            blobs[f"a{index}"] = change.after
        entry = FileEntry(path, cur_sha, f"b{index}" if current is not None else None,
                          sha256(change.after) if change.after is not None else None,
                          f"a{index}" if change.after is not None else None, mode, uid, gid, named,
                          not named and fs.is_system(path))
        return Prepared(entry, blobs)

    def load(self, raw: dict[str, Any], loader: Loader) -> FileEntry:
        named, system = loader.is_named(raw), loader.is_system(raw)
        path = loader.confined(raw.get("path"), "file", system=system)
        e = FileEntry(path, loader.sha(raw.get("before_sha")), loader.blob(raw.get("before")),
                      loader.sha(raw.get("after_sha")), loader.blob(raw.get("after")),
                      loader.mode(raw.get("mode")), 0, 0, named)
        if (e.before is None) != (e.before_sha is None) or (e.after is None) != (e.after_sha is None):
            raise loader.bad(f"the entry of {path} has a checksum without its blob")
        ids = [loader.id_number(raw.get(k), f"{k} of {path}") for k in ("uid", "gid")]
        return FileEntry(e.path, e.before_sha, e.before, e.after_sha, e.after, e.mode, ids[0], ids[1], named, system)

    def apply(self, entry: FileEntry, ctx: Context) -> None:
        assert ctx.txn is not None and ctx.redactor is not None
        fs, named = ctx.fs, entry.named
        _check_unchanged(entry, ctx)
        if entry.after is None:
            fs.unlink(entry.path, named)
            return
        data = ctx.redactor.restore(ctx.txn.blob(entry.after))
        mode, uid, gid = entry.mode, entry.uid, entry.gid
        if entry.before is not None:
            # Keep the file's owner and mode as they are now (an earlier
            # entry of this transaction may have just changed the mode).
            st = fs.lstat(entry.path, named)
            assert st is not None
            mode, uid, gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
        fs.replace(entry.path, data, mode, uid, gid, ctx.txn.id, named)

    def rollback(self, entry: FileEntry, ctx: Context) -> list[str]:
        assert ctx.txn is not None
        _clean_temp(ctx, entry.path, ctx.txn.id, entry.named)
        try:
            current = ctx.fs.read(entry.path, entry.named)
        except EngineError:  # now a symbolic link, a hard link, or behind one: not ours to touch
            return [f"{entry.path} was replaced meanwhile; left as it is"]
        cur_sha = sha256(current) if current is not None else None
        if cur_sha == entry.before_sha:
            return []
        if cur_sha != entry.after_sha:
            return [f"{entry.path} changed by someone else; left as it is"]
        self.restore(entry, ctx)
        return []

    def restore(self, entry: FileEntry, ctx: Context) -> None:
        """Write the content from before the transaction back (the crash tests hook this)."""
        assert ctx.txn is not None and ctx.redactor is not None
        if entry.before is None:  # the transaction created it
            ctx.fs.unlink(entry.path, entry.named)
            return
        data = ctx.redactor.restore(ctx.txn.blob(entry.before))
        ctx.fs.replace(entry.path, data, entry.mode, entry.uid, entry.gid, ctx.txn.id + "r", entry.named)

    def undo(self, entry: FileEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        assert ctx.txn is not None and ctx.redactor is not None
        # Read as the undo will write: a file now behind a symbolic link is refused here, not shown.
        current = ctx.fs.read(entry.path, entry.named)
        cur_sha = sha256(current) if current is not None else None
        after = ctx.redactor.restore(ctx.txn.blob(entry.after)) if entry.after else None
        before = ctx.redactor.restore(ctx.txn.blob(entry.before)) if entry.before else None
        conflicts = [UndoConflict(entry.path, after, current)] if cur_sha != entry.after_sha else []
        if before is None and current is not None:
            change: FileEdit = FileDelete(entry.path, current)
        else:
            # A file the transaction deleted comes back with its owner, not its directory's.
            owner = (entry.uid, entry.gid) if current is None and before is not None else None
            change = FileEdit(entry.path, current, before, entry.mode, owner)  # type: ignore[arg-type]  # None: a deletion
        return [change], conflicts

    def headline(self, changes: Sequence[FileEdit]) -> str | None:
        return f"{len(changes)} file edit(s)"

    def describe(self, changes: Sequence[FileEdit], root: str, masker: Masker | None) -> list[str]:
        from checks.change.preview import file_diff

        out: list[str] = []
        for change in changes:
            out.append("")
            out += file_diff(change, root, masker)
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return _path_history(raw)


class ModeHandler:
    """:class:`ModeChange`: one chmod, refused through a link or a hard link out of the installation."""

    entry_type = "mode"
    changes: tuple[type, ...] = (ModeChange,)

    def prepare(self, change: ModeChange, index: int, ctx: Context) -> Prepared:
        path = os.path.abspath(change.path)
        named = path in ctx.named
        st = ctx.fs.lstat(path, named)
        if st is None:
            raise StaleError(f"{path} was removed since the preview; nothing was changed")
        if stat.S_ISLNK(st.st_mode):
            raise EngineError(f"{path} is a symbolic link; not changing its target's mode")
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not named:
            raise ConfinementError(f"{path} has {st.st_nlink} hard links: another name for the same file may "
                                   "be outside the installation; not changing its mode")
        if stat.S_IMODE(st.st_mode) != change.before:
            raise StaleError(f"{path} mode changed since the preview")
        return Prepared(ModeEntry(path, change.before, change.after, named, not named and ctx.fs.is_system(path)))

    def load(self, raw: dict[str, Any], loader: Loader) -> ModeEntry:
        named, system = loader.is_named(raw), loader.is_system(raw)
        return ModeEntry(loader.confined(raw.get("path"), "path", system=system), loader.mode(raw.get("before")),
                         loader.mode(raw.get("after")), named, system)

    def apply(self, entry: ModeEntry, ctx: Context) -> None:
        ctx.fs.chmod(entry.path, entry.after, entry.named)

    def rollback(self, entry: ModeEntry, ctx: Context) -> list[str]:
        try:
            cur = stat.S_IMODE(os.lstat(entry.path).st_mode)
        except FileNotFoundError:
            return []
        if cur == entry.after and not os.path.islink(entry.path):
            try:
                ctx.fs.chmod(entry.path, entry.before, entry.named)
            except (EngineError, FileNotFoundError):
                return [f"{entry.path} was replaced meanwhile; its mode was left as it is"]
        return []

    def undo(self, entry: ModeEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        try:
            cur = stat.S_IMODE(os.lstat(entry.path).st_mode)
        except FileNotFoundError:
            return [], []
        conflicts = [UndoConflict(entry.path, None, None)] if cur != entry.after else []
        return [ModeChange(entry.path, cur, entry.before)], conflicts

    def headline(self, changes: Sequence[ModeChange]) -> str | None:
        return f"{len(changes)} mode change(s)"

    def describe(self, changes: Sequence[ModeChange], root: str, masker: Masker | None) -> list[str]:
        if not changes:
            return []
        width = max(len(_display(m.path, root)) for m in changes)
        out = ["", f"{'path':<{width}}  before  after"]
        for m in changes:
            out.append(f"{_display(m.path, root):<{width}}  {m.before:04o}    {m.after:04o}")
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return _path_history(raw)


def _owner(owner: object, path: str) -> tuple[int, int]:
    """A new file's (uid, gid) from the plan, checked."""
    if (not isinstance(owner, tuple) or len(owner) != 2
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**32 - 1 for i in owner)):
        raise EngineError(f"{path}: the owner {owner!r} is not a (uid, gid) pair")
    return owner[0], owner[1]


def _check_unchanged(entry: FileEntry, ctx: Context) -> None:
    """Just before a file is replaced: it is still the regular file the plan was checked against."""
    fs, path, named = ctx.fs, entry.path, entry.named
    st = fs.lstat(path, named)
    if entry.before_sha is None:
        if st is not None:
            raise StaleError(f"{path} appeared since the preview; run the fix again to see the new plan")
        return
    if st is None or not stat.S_ISREG(st.st_mode):
        raise StaleError(f"{path} was removed or replaced (by a symbolic link?) since the preview; nothing was changed")
    current = fs.read(path, named)
    if current is None or sha256(current) != entry.before_sha:
        raise StaleError(f"{path} changed since the preview; run the fix again to see the new plan")


def _clean_temp(ctx: Context, path: str, tag: str, named: bool = False) -> None:
    # Both the apply's temp and the one of a rollback killed before its rename.
    d, name = os.path.split(path)
    for t in (tag, tag + "r"):
        # No directory of the installation there: no temp of ours either.
        with contextlib.suppress(ConfinementError, FileNotFoundError, NotADirectoryError):
            ctx.fs.unlink(os.path.join(d, f".{name}.dh-{t}.tmp"), named)


FILES = FileHandler()
MODES = ModeHandler()
