"""Symbolic links the engine creates (nginx's ``sites-enabled/NAME -> ../sites-available/NAME``) and removes.

A :class:`checks.change.plan.Link` is made where nothing is: the link is created under a temp
name in the same directory, then renamed to its name without replacing anything
(``renameat2(RENAME_NOREPLACE)``), and the directory fsynced, so a kill at any instant leaves the
link wholly there or not there (a temp left behind is removed by the rollback). It is taken back
(rollback, undo) only while it is still a link to the same target: anything else at that name by
then is someone else's and is left alone, an error in a rollback and a conflict in an undo's preview.
The directory is reached as every other change's is: confined to the installation, or a system
directory after its trust check (:mod:`checks.change.system`).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from checks.change.handlers import Context, Entry, Prepared, StaleError, UndoConflict
from checks.change.plan import Link
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.intent import Loader
    from checks.core.secrets import Masker

_RENAME_NOREPLACE = 1


@dataclass(frozen=True, slots=True)
class LinkEntry(Entry):
    """A link made (or, ``remove``, taken away) at ``path``, pointing to ``target``."""

    TYPE = "link"
    path: str
    target: str
    remove: bool = False
    system: bool = False

    def paths(self) -> tuple[str, ...]:
        return (self.path,)


def _state(dfd: int, name: str, target: str) -> str:
    """``absent``, ``ours`` (a link to ``target``) or a description of what is there instead."""
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISLNK(st.st_mode):
        return "a directory" if stat.S_ISDIR(st.st_mode) else "a file"
    now = os.readlink(name, dir_fd=dfd)
    return "ours" if now == target else f"a symbolic link to {now}"


def rename_noreplace(dfd: int, src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` in one directory, failing (EEXIST) if ``dst`` exists: never replaces.

    ``renameat2(RENAME_NOREPLACE)``; where the filesystem or libc lacks it, a hard link of the
    temp link (which also fails when ``dst`` exists) and the temp name's removal.
    """
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is not None:
        if fn(dfd, os.fsencode(src), dfd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), dst)
    os.link(src, dst, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
    os.unlink(src, dir_fd=dfd)


def _temp(name: str, tag: str) -> str:
    return f".{name}.dh-{tag}.tmp"


def _make(dfd: int, name: str, target: str, path: str, tag: str) -> None:
    tmp = _temp(name, tag)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp, dir_fd=dfd)
    os.symlink(target, tmp, dir_fd=dfd)
    try:
        rename_noreplace(dfd, tmp, name)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp, dir_fd=dfd)
        if isinstance(exc, FileExistsError):
            raise StaleError(f"{path} appeared since the preview; nothing was changed") from None
        raise
    os.fsync(dfd)


def _display(path: str, root: str) -> str:
    from checks.core.textio import shown

    rel = os.path.relpath(path, root)
    return shown(path if rel.startswith("..") else rel)


def _conflict(entry: LinkEntry, now: str) -> UndoConflict:
    expected = f"symbolic link to {entry.target}\n".encode()
    return UndoConflict(entry.path, expected, None if now == "absent" else f"{now}\n".encode())


class LinkHandler:
    """:class:`Link`: create a symbolic link where nothing is; take back only that link."""

    entry_type = "link"
    changes: tuple[type, ...] = (Link,)

    def prepare(self, change: Link, index: int, ctx: Context) -> Prepared:
        path = os.path.abspath(change.path)
        target = change.target
        if not isinstance(target, str) or not target or "\0" in target or len(target) > 4095:
            raise EngineError(f"{path}: a link needs a target (a path without NUL, under 4096 bytes)")
        dfd, name = ctx.fs.parent(path)
        try:
            now = _state(dfd, name, target)
        finally:
            os.close(dfd)
        if change.remove and now != "ours":
            raise StaleError(f"{path} is no longer the symbolic link to {target} ({now}); nothing was changed")
        if not change.remove and now != "absent":
            raise StaleError(f"{path} exists ({'a link to the same target' if now == 'ours' else now}); "
                             "a link is only made where nothing is")
        return Prepared(LinkEntry(path, target, change.remove, ctx.fs.is_system(path)))

    def load(self, raw: dict[str, Any], loader: Loader) -> LinkEntry:
        system = loader.is_system(raw)
        path = loader.confined(raw.get("path"), "link", system=system)
        target = loader.text(raw.get("target"), "a link's target")
        if not target or "\0" in target or len(target) > 4095:
            raise loader.bad(f"the link {path} has no usable target")
        return LinkEntry(path, target, bool(raw.get("remove")), system)

    def apply(self, entry: LinkEntry, ctx: Context) -> None:
        assert ctx.txn is not None
        dfd, name = ctx.fs.parent(entry.path)
        try:
            now = _state(dfd, name, entry.target)
            if entry.remove:
                if now != "ours":
                    raise StaleError(f"{entry.path} is no longer the symbolic link to {entry.target} ({now}); "
                                     "nothing was changed")
                os.unlink(name, dir_fd=dfd)
                os.fsync(dfd)
                return
            if now != "absent":
                raise StaleError(f"{entry.path} appeared since the preview; nothing was changed")
            _make(dfd, name, entry.target, entry.path, ctx.txn.id)
        finally:
            os.close(dfd)

    def rollback(self, entry: LinkEntry, ctx: Context) -> list[str]:
        assert ctx.txn is not None
        try:
            dfd, name = ctx.fs.parent(entry.path)
        except (EngineError, FileNotFoundError, NotADirectoryError):
            return [f"the directory of {entry.path} was replaced meanwhile; the link was left as it is"]
        try:
            for tag in (ctx.txn.id, ctx.txn.id + "r"):  # a temp of a kill before its rename
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(_temp(name, tag), dir_fd=dfd)
            if ctx.progress == "failed":
                return []  # it said it changed nothing
            now = _state(dfd, name, entry.target)
            if entry.remove:
                if now == "absent":
                    _make(dfd, name, entry.target, entry.path, ctx.txn.id + "r")
                elif now != "ours":
                    return [f"{entry.path} is {now} now, not the link to {entry.target} it was; left as it is"]
                return []
            if now == "ours":
                os.unlink(name, dir_fd=dfd)
                os.fsync(dfd)
            elif now != "absent":
                return [f"{entry.path} is {now} now, not the link dester-harden made; left as it is"]
            return []
        finally:
            os.close(dfd)

    def undo(self, entry: LinkEntry, ctx: Context) -> tuple[list[Any], list[UndoConflict]]:
        dfd, name = ctx.fs.parent(entry.path)
        try:
            now = _state(dfd, name, entry.target)
        finally:
            os.close(dfd)
        if entry.remove:  # the undo of an undo: the link comes back where nothing is
            if now == "absent":
                return [Link(entry.path, entry.target)], []
            return [], ([] if now == "ours" else [_conflict(entry, now)])
        if now == "ours":
            return [Link(entry.path, entry.target, remove=True)], []
        return [], [_conflict(entry, now)]  # gone or replaced: nothing of ours to remove

    def headline(self, changes: Sequence[Link]) -> str | None:
        return f"{len(changes)} link(s)" if changes else None

    def describe(self, changes: Sequence[Link], root: str, masker: Masker | None) -> list[str]:
        from checks.core.textio import shown

        out: list[str] = [""] if changes else []
        for c in changes:
            out.append(f"{'-' if c.remove else '+'} link {_display(c.path, root)} -> {shown(c.target)}")
        return out

    def history(self, raw: dict[str, Any]) -> tuple[list[str], list[str]]:
        return [str(raw["path"])], []


LINKS = LinkHandler()
