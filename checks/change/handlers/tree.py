"""The media rule over a tree (:class:`TreeChmod`) and its undo (:class:`TreeRestore`).

Each directory's records reach the transaction's ``tree<N>.bin`` before its
chmods (:mod:`checks.change.treerecords`), so recovery knows every mode it
must put back. The root is judged by what was opened, never by the path.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.change import treerecords as _records
from checks.change import walk as _walk
from checks.change import walkundo as _walkundo
from checks.change.handlers import Context, Entry, Prepared, UndoConflict
from checks.change.plan import TreeChmod, TreeRestore
from checks.core.atomic import write_private
from checks.core.errors import EngineError
from checks.core.mediaroot import media_root_problem, system_problem

if TYPE_CHECKING:
    from checks.change.intent import Loader
    from checks.core.secrets import Masker


@dataclass(frozen=True, slots=True)
class TreeEntry(Entry):
    """The media rule applied under ``root``; what changed is in ``records``."""

    TYPE = "tree"
    root: str
    records: str

    def media(self) -> tuple[str, ...]:
        return (self.root,)


@dataclass(frozen=True, slots=True)
class TreeRestoreEntry(Entry):
    """The modes of ``source`` (the undone transaction's records) put back; what changed is in ``records``."""

    TYPE = "tree-restore"
    root: str
    records: str
    source: str

    def media(self) -> tuple[str, ...]:
        return (self.root,)


def _load_root(raw: dict[str, Any], loader: Loader) -> str:
    tree = loader.absolute(raw.get("root"), "media root")
    why = system_problem(tree)  # the path alone: the media fix's own judgement of where it is
    if why:
        raise loader.bad(f"media root {tree}: {why}")
    return tree


def _history(raw: dict[str, Any]) -> tuple[list[str], list[str]]:
    return [], [str(raw["root"])]


class TreeHandler:
    """:class:`TreeChmod`: the media rule, entry by entry."""

    entry_type = "tree"
    changes: tuple[type, ...] = (TreeChmod,)

    def prepare(self, change: TreeChmod, index: int, ctx: Context) -> Prepared:
        problem = media_root_problem(change.root, ctx.root)
        if problem:  # judged again when the walk opens it (open_tree)
            raise EngineError(f"not changing the media modes: {problem}")
        return Prepared(TreeEntry(os.path.abspath(change.root), f"tree{index}.bin"))

    def load(self, raw: dict[str, Any], loader: Loader) -> TreeEntry:
        return TreeEntry(_load_root(raw, loader), loader.records(raw.get("records")))

    def apply(self, entry: TreeEntry, ctx: Context) -> None:
        assert ctx.txn is not None
        ctx.tree_changed += tree_apply(ctx, entry.root, os.path.join(ctx.txn.dir, entry.records))

    def rollback(self, entry: TreeEntry, ctx: Context) -> list[str]:
        assert ctx.txn is not None
        tree_restore(ctx, entry.root, os.path.join(ctx.txn.dir, entry.records), None)
        return []

    def undo(self, entry: TreeEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        assert ctx.txn is not None
        return [TreeRestore(entry.root, os.path.join(ctx.txn.dir, entry.records))], []

    def headline(self, changes: Sequence[TreeChmod]) -> str | None:
        return f"{sum(t.changes for t in changes):,} media entries" if changes else None

    def describe(self, changes: Sequence[TreeChmod], root: str, masker: Masker | None) -> list[str]:
        from checks.change.preview import tree_summary

        out: list[str] = []
        for tree in changes:
            out += ["", tree_summary(tree, root),
                    "  (dester-harden fix --only FS-005 --dry-run --list shows every entry)"]
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return _history(raw)


class RestoreHandler(TreeHandler):
    """:class:`TreeRestore`: an undo's media part."""

    entry_type = "tree-restore"
    changes: tuple[type, ...] = (TreeRestore,)

    def prepare(self, change: TreeRestore, index: int, ctx: Context) -> Prepared:  # type: ignore[override]
        problem = media_root_problem(change.root, ctx.root)
        if problem:
            raise EngineError(f"not putting the media modes back: {problem}")
        return Prepared(TreeRestoreEntry(change.root, f"tree{index}.bin", change.records))

    def load(self, raw: dict[str, Any], loader: Loader) -> TreeRestoreEntry:  # type: ignore[override]
        tree, records = _load_root(raw, loader), loader.records(raw.get("records"))
        src = loader.path(raw.get("source"), "records source")
        src_txn = loader.txn_id(os.path.basename(os.path.dirname(src)), "records source transaction")
        loader.records(os.path.basename(src))
        if src_txn != loader.undoes:
            raise loader.bad(f"records source {src} is not of the undone transaction")
        # Where that journal is now (it moves with a moved installation).
        return TreeRestoreEntry(tree, records, os.path.join(loader.txn_root, src_txn, os.path.basename(src)))

    def apply(self, entry: TreeRestoreEntry, ctx: Context) -> None:  # type: ignore[override]
        assert ctx.txn is not None
        ctx.tree_changed += tree_restore(ctx, entry.root, entry.source, os.path.join(ctx.txn.dir, entry.records))

    def headline(self, changes: Sequence[Any]) -> str | None:
        return None

    def describe(self, changes: Sequence[Any], root: str, masker: Masker | None) -> list[str]:
        out: list[str] = []
        for restore in changes:
            n = restore.count()
            out += ["", f"FS-005 undo: {restore.root}: {n:,} {'entry gets' if n == 1 else 'entries get'} "
                    "the mode recorded before the fix back (an entry changed since keeps its mode)"]
        return out


def open_tree(root: str, install_root: str) -> int:
    """The media root, opened without following a link, and judged by what was opened.

    The path the descriptor names (``/proc/self/fd``) is judged, not the
    path given: a component swapped for a symlink after the planner's
    judgement cannot redirect the walk into a system or home directory.
    """
    problem = media_root_problem(root, install_root)
    fd = _walk.open_root(root)
    try:
        if problem is None:
            try:
                opened: str | None = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                opened = None
            problem = (media_root_problem(opened, install_root) if opened and opened.startswith("/")
                       else f"cannot tell which directory {root} is")
    except BaseException:
        os.close(fd)
        raise
    if problem:
        os.close(fd)
        raise EngineError(f"not changing the media modes: {problem}")
    return fd


def tree_apply(ctx: Context, root: str, records_path: str) -> int:
    """Apply the media rule; each directory's records reach the file first (:mod:`checks.change.treerecords`)."""
    try:
        fd = open_tree(root, ctx.root)
    except _walk.TreeError as exc:
        raise EngineError(f"not changing the media modes: {exc}") from None
    try:
        out = os.open(records_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Each group is written before its chmods: a killed process leaves the
            # records in the page cache, so recovery knows every mode it must put back.
            changed: int = _walk.apply_rule(root, records_writer(out), ctx.tree_skipped, mounts=ctx.tree_mounts,
                                            root_fd=fd)
            os.fsync(out)
        finally:
            os.close(out)
    finally:
        os.close(fd)
    return changed


def tree_restore(ctx: Context, root: str, source: str, records_out: str | None) -> int:
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
        fd = open_tree(root, ctx.root)
    except _walk.TreeError:  # the library is gone: nothing to put back
        if records_out:
            write_private(records_out, b"")
        return 0
    except EngineError as exc:
        if records_out is not None:
            raise
        ctx.notices.append(f"media modes under {root} were not put back: {exc}")
        return 0
    out = None
    try:
        if records_out:
            out = os.open(records_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        journal = records_writer(out) if out is not None else None
        restored: int = _walkundo.restore_modes(root, records.group, journal, root_fd=fd)
        if out is not None:
            os.fsync(out)
    finally:
        if out is not None:
            os.close(out)
        os.close(fd)
    return restored


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def records_writer(fd: int) -> Callable[[bytes], None]:
    """``journal(data)`` for the walks: the format's magic goes out with the first group, in one write."""
    first = [True]

    def journal(data: bytes) -> None:
        if first[0]:
            first[0] = False
            data = _records.MAGIC + data
        _write_all(fd, data)
    return journal


TREE = TreeHandler()
RESTORE = RestoreHandler()
