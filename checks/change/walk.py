"""Walking the media tree safely: directory file descriptors, never a symlink.

Every directory is opened relative to its parent's descriptor with
``O_NOFOLLOW`` and checked against the inode seen while listing it, so
swapping a directory for a symlink mid-walk cannot lead the walk (or a chmod)
outside the tree. Files are changed through an ``O_PATH`` descriptor for the
same reason. The walks stay on the root's filesystem (:class:`Fence`: no
mount point below it is entered or changed), and leave group write on a
shared group library (:func:`shared_dir`). Whether a directory may be a root
at all is :mod:`checks.core.mediaroot`'s judgement; the undo is
:mod:`checks.change.walkundo`, the journal's format :mod:`checks.change.treerecords`.

About 600 lines: the walk, the fence, the apply and the preview share the
descriptor discipline above and must change together; split, each half
would re-state it (the undo's walk already lives apart, in walkundo).
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from checks.change.treerecords import HEADER, RECORD, fingerprint  # noqa: F401  (HEADER, RECORD: re-exported)
from checks.core.mediarule import DIR_FLAGS as _DIR_FLAGS
from checks.core.mediarule import DIR_OFF as _DIR_OFF
from checks.core.mediarule import DIR_OFF_SHARED as _DIR_OFF_SHARED
from checks.core.mediarule import FILE_OFF as _FILE_OFF
from checks.core.mediarule import FILE_OFF_SHARED as _FILE_OFF_SHARED
from checks.core.mediarule import needs_change, primary_gids, shared_dir, target_mode  # noqa: F401  (the rule: re-exported)

_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_CHUNK = 256  # files held open (O_PATH) at once in one directory


class TreeError(Exception):
    """The tree's root cannot be walked (missing, a symlink, unreadable)."""


@dataclass(slots=True)
class Entry:
    """One entry seen by the walk."""

    parent_fd: int
    name: str
    rel: str
    """Path relative to the root ("" for the root itself)."""
    st: os.stat_result
    parent: tuple[int, int]
    """(st_dev, st_ino) of the parent directory; (dev, 0) for the root itself."""
    fd: int = -1
    """A descriptor of the entry itself, already checked to be what was listed
    (O_PATH for a file, O_DIRECTORY for a directory); -1 when there is none."""


def open_root(root: str) -> int:
    try:
        return os.open(root, _DIR_FLAGS)
    except FileNotFoundError:
        raise TreeError(f"{root} does not exist") from None
    except NotADirectoryError:
        raise TreeError(f"{root} is not a directory") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise TreeError(f"{root} is a symbolic link; not following it") from None
        if exc.errno == errno.EACCES:
            raise TreeError(f"{root} is not readable (permission denied)") from None
        raise TreeError(f"{root}: {exc.strerror}") from None


def walk(root: str, on_error: Callable[[str, OSError], None] | None = None,
         before_close: Callable[[], None] | None = None) -> Iterator[Entry]:
    """Yield every entry under ``root`` (the root first), depth first.

    An entry's parent descriptor stays open until ``before_close`` has been
    called for that directory, so a caller may batch :func:`chmod_entry` calls
    and run them from ``before_close``.
    """
    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        fence = Fence(root_fd, st)
        yield Entry(-1, root, "", st, (st.st_dev, 0))
        yield from _walk_dir(root_fd, "", (st.st_dev, st.st_ino), on_error, before_close, fence)
    finally:
        if before_close:
            before_close()
        os.close(root_fd)


def _walk_dir(dir_fd: int, rel: str, key: tuple[int, int], on_error: Any, before_close: Any,
              fence: Any) -> Iterator[Entry]:
    try:
        it = os.scandir(dir_fd)
    except OSError as exc:
        if on_error:
            on_error(rel or ".", exc)
        return
    subdirs: list[tuple[str, os.stat_result]] = []
    with it:
        for de in it:
            name = de.name
            try:
                st = de.stat(follow_symlinks=False)
            except OSError as exc:
                if on_error:
                    on_error(_join(rel, name), exc)
                continue
            if stat.S_ISDIR(st.st_mode) and fence.outside(st):
                fence.crossed.append(_join(rel, name))  # a mount point: neither listed nor entered
                continue
            yield Entry(dir_fd, name, _join(rel, name), st, key)
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((name, st))
    for name, st in subdirs:
        child_rel = _join(rel, name)
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
        except OSError as exc:  # replaced by a symlink (ELOOP), gone, or unreadable
            if on_error:
                on_error(child_rel, exc)
            continue
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                if on_error:
                    on_error(child_rel, OSError(errno.ESTALE, "replaced during the walk; skipped"))
                continue
            yield from _walk_dir(fd, child_rel, (now.st_dev, now.st_ino), on_error, before_close, fence)
        finally:
            if before_close:
                before_close()
            os.close(fd)


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def chmod_entry(entry: Entry, mode: int) -> bool:
    """chmod ``entry`` without following symlinks; False when it changed identity meanwhile."""
    if entry.fd >= 0:  # the bulk walks: opened and checked already
        if entry.st.st_mode & _S_IFMT == _S_IFDIR:
            os.fchmod(entry.fd, mode)
        else:
            os.chmod(str(entry.fd), mode, dir_fd=_proc_fd())  # /proc/self/fd/N, as below
        return True
    try:
        if entry.parent_fd < 0:  # the root itself
            fd = os.open(entry.name, _DIR_FLAGS)
        else:
            flags = _DIR_FLAGS if stat.S_ISDIR(entry.st.st_mode) else _PATH_FLAGS
            fd = os.open(entry.name, flags, dir_fd=entry.parent_fd)
    except (FileNotFoundError, NotADirectoryError):
        return False  # removed, or a directory replaced by a symlink or a file, since the listing
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return False
        raise
    try:
        now = os.fstat(fd)
        if ((now.st_dev, now.st_ino) != (entry.st.st_dev, entry.st.st_ino)
                or stat.S_IFMT(now.st_mode) != stat.S_IFMT(entry.st.st_mode)):
            return False
        if stat.S_ISDIR(now.st_mode):
            os.fchmod(fd, mode)
        else:
            # An O_PATH descriptor cannot be fchmod'ed; its /proc magic link
            # names exactly this inode (what glibc's fchmodat emulation does).
            os.chmod(f"/proc/self/fd/{fd}", mode)
        return True
    finally:
        os.close(fd)


_ESC = re.compile(r"\\([0-7]{3})")


def mount_points(root_fd: int) -> frozenset[tuple[int, int]]:
    """(dev, inode) of what is mounted below the directory ``root_fd``: the walks never enter it.

    A bind mount of a directory from the same filesystem keeps its device
    number, so ``st_dev`` alone would not see it; ``/proc/self/mountinfo``
    does. Only root mounts (in this mount namespace), so the list cannot be
    raced by the installation's owner.
    """
    try:
        real = os.readlink(f"/proc/self/fd/{root_fd}")
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as fh:
            lines = fh.readlines()
    except OSError:
        return frozenset()
    prefix = real.rstrip("/") + "/"
    out = set()
    for line in lines:
        fields = line.split(" ", 5)
        if len(fields) < 5:
            continue
        where = _ESC.sub(lambda m: chr(int(m.group(1), 8)), fields[4])
        if where.startswith(prefix):
            try:
                st = os.lstat(where)
            except OSError:
                continue
            out.add((st.st_dev, st.st_ino))
    return frozenset(out)


# -- the bulk walks: the media fix, its undo, its preview --------------------------------
#
# Lean loops: a media library has hundreds of thousands of entries, and each
# costs a few system calls. No per-entry objects are made except for the
# entries that change (an Entry handed to chmod_entry, the one chmod primitive,
# which tests and crash drivers hook).

_GONE = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)
_PROC_FD = -1


def _proc_fd() -> int:
    """A descriptor of /proc/self/fd: chmod of "N" relative to it is a chmod of descriptor N.

    That is the /proc magic link glibc's fchmodat emulation uses, resolved
    without walking /proc and self each time.
    """
    global _PROC_FD
    if _PROC_FD < 0:
        _PROC_FD = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    return _PROC_FD


def _forget_proc_fd() -> None:
    """In a forked child the inherited descriptor is the parent's /proc/PID/fd: drop it."""
    global _PROC_FD
    if _PROC_FD >= 0:
        with contextlib.suppress(OSError):
            os.close(_PROC_FD)
        _PROC_FD = -1


os.register_at_fork(after_in_child=_forget_proc_fd)


def _close_all(fds: list[int]) -> None:
    """Close descriptors this walk opened, a run of consecutive ones per system call.

    Every number in a run is one of ours (we hold each until here), so
    close_range() cannot touch a descriptor someone else opened.
    """
    if not fds:
        return
    fds.sort()
    start = prev = fds[0]
    for fd in fds[1:]:
        if fd != prev + 1:
            os.closerange(start, prev + 1)
            start = fd
        prev = fd
    os.closerange(start, prev + 1)


class Fence:
    """One filesystem: the root's device, less what is mounted below it (see :func:`mount_points`).

    ``crossed`` collects the paths (relative to the root) of mount points the
    walk saw and did not enter or change.
    """

    __slots__ = ("dev", "mounts", "crossed")

    def __init__(self, root_fd: int, root_st: os.stat_result) -> None:
        self.dev = root_st.st_dev
        self.mounts = mount_points(root_fd)
        self.crossed: list[str] = []

    def outside(self, st: os.stat_result) -> bool:
        """``st`` (an lstat/fstat) is another filesystem's, or a mount point's: not ours to walk or change."""
        return st.st_dev != self.dev or (bool(self.mounts) and (st.st_dev, st.st_ino) in self.mounts)


def _depth_first(root_fd: int, root_st: os.stat_result, visit: Callable[..., list[Any]],
                 enter: Callable[..., None] | None, skipped: list[str] | None,
                 fence: Fence | None = None) -> None:
    """``visit`` root_fd's directory, then every directory under it, depth first.

    ``visit(fd, rel, st)`` handles one directory's entries and returns its
    subdirectories as a list of ``(name, lstat, arg)``, last to visit first.
    Each is opened relative to its parent with ``O_NOFOLLOW`` and checked
    against the (dev, inode) listed; when ``arg`` is not None,
    ``enter(parent_fd, parent_key, name, rel, listed, now, fd, arg)`` runs
    before its visit (the deferred chmod of the directory itself). Only the
    descriptors of the directories on the current path are open. With a
    ``fence``, a directory outside it is never entered (the visits leave
    such entries out already; this is the last line).
    """
    op, fstat, close = os.open, os.fstat, os.close
    stack = [(root_fd, "", root_st, visit(root_fd, "", root_st))]
    try:
        while stack:
            fd, rel, st, subs = stack[-1]
            if not subs:
                stack.pop()
                if stack:  # the root's descriptor is the caller's
                    close(fd)
                continue
            name, lst, arg = subs.pop()
            crel = f"{rel}/{name}" if rel else name
            try:
                cfd = op(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # Removed or replaced by a symlink or a file: left alone. A
                # directory that needs a change but cannot be opened is an error.
                if arg is not None and exc.errno not in _GONE:
                    raise
                if skipped is not None:
                    skipped.append(crel)
                continue
            try:
                cst = fstat(cfd)
                if cst.st_ino != lst.st_ino or cst.st_dev != lst.st_dev:
                    close(cfd)  # replaced during the walk: skipped
                    if skipped is not None:
                        skipped.append(crel)
                    continue
                if fence is not None and fence.outside(cst):
                    close(cfd)
                    fence.crossed.append(crel)
                    continue
                if arg is not None:
                    assert enter is not None  # a visit that gives arguments has an enter
                    enter(fd, (st.st_dev, st.st_ino), name, crel, lst, cst, cfd, arg)
                csubs = visit(cfd, crel, cst)
            except BaseException:
                close(cfd)
                raise
            stack.append((cfd, crel, cst, csubs))
    finally:
        for frame in stack[1:]:
            close(frame[0])


def apply_rule(root: str, journal: Callable[[bytes], None], skipped: list[str], *,
               mounts: list[str] | None = None, root_fd: int | None = None) -> int:
    """Give every entry under ``root`` its :func:`target_mode`; returns how many changed.

    Each directory's changes are journaled as one group -- ``journal(header +
    records)``, see :mod:`checks.change.treerecords` -- before the first of them is
    made, so a process killed at any instant has recorded every mode it
    changed. A file is opened ``O_PATH | O_NOFOLLOW`` relative to its
    directory, its mode and inode read from that descriptor, and chmod'ed
    through it: a symbolic link swapped in is seen and skipped, never
    followed. A directory's record goes with its parent's group; its chmod is
    made through its own descriptor when the walk enters it (opened with
    ``O_NOFOLLOW``, checked against the (dev, inode) listed, and still with the
    mode, times and owner listed). Entries that vanish or change meanwhile are
    left alone and their paths (relative to ``root``) appended to ``skipped``.
    The walk stays on the root's filesystem (:class:`Fence`): mount points
    below it are neither entered nor changed, and go to ``mounts``. Group
    write stays in a shared group library (:func:`shared_dir`). ``root_fd``:
    the root, already opened (and judged) by the caller, who closes it.
    """
    chmod = chmod_entry  # looked up per walk: tests and crash drivers hook it
    op, fstat, scandir, pack, fp = os.open, os.fstat, os.scandir, RECORD.pack, fingerprint
    primary = primary_gids()
    changed = 0
    fence: Fence

    def files_chunk(fd: int, rel: str, key: tuple[int, int], sgid: int, names: list[str], recs: list[bytes]) -> None:
        """Up to _CHUNK files of one directory: open, journal (with ``recs``), chmod."""
        nonlocal changed
        opened: list[int] = []
        todo = []
        try:
            for name in names:
                try:
                    f = op(name, _PATH_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    skipped.append(f"{rel}/{name}" if rel else name)  # removed meanwhile
                    continue
                opened.append(f)
                s = fstat(f)
                m = s.st_mode
                off = _FILE_OFF_SHARED if s.st_gid == sgid else _FILE_OFF
                if m & off:
                    if m & _S_IFMT != _S_IFREG:  # a symlink (or other) swapped in: never followed
                        skipped.append(f"{rel}/{name}" if rel else name)
                        continue
                    if fence.outside(s):  # a file bind-mounted here
                        fence.crossed.append(f"{rel}/{name}" if rel else name)
                        continue
                    new = m & 0o7777 & ~off
                    todo.append((name, s, f, new))
                    recs.append(pack(s.st_ino, m & 0o7777, new, fp(s)))
                elif m & _S_IFMT != _S_IFREG:
                    skipped.append(f"{rel}/{name}" if rel else name)
            if recs:
                # Written before the chmods: a killed process leaves the records in
                # the page cache, so recovery knows every mode it must put back.
                journal(HEADER.pack(key[0], key[1], len(recs)) + b"".join(recs))
                recs.clear()
            for name, s, f, new in todo:
                if chmod(Entry(fd, name, f"{rel}/{name}" if rel else name, s, key, f), new):
                    changed += 1
                else:
                    skipped.append(f"{rel}/{name}" if rel else name)
        finally:
            _close_all(opened)

    def visit(fd: int, rel: str, st: os.stat_result) -> list[Any]:
        try:
            it = scandir(fd)
        except OSError:
            skipped.append(rel or ".")
            return []
        key = (st.st_dev, st.st_ino)
        sgid = st.st_gid if shared_dir(st, primary) else -1
        files: list[str] = []
        subs: list[Any] = []
        recs: list[bytes] = []  # the subdirectories' records, journaled with the next group
        with it:
            for de in it:
                try:
                    if de.is_file(follow_symlinks=False):  # from the listing's d_type
                        files.append(de.name)
                        if len(files) == _CHUNK:  # a large directory: in chunks, as listed
                            files_chunk(fd, rel, key, sgid, files, recs)
                            files = []
                        continue
                    if not de.is_dir(follow_symlinks=False):
                        continue  # symbolic links, devices, sockets, FIFOs: left alone
                    lst = de.stat(follow_symlinks=False)
                except OSError:
                    skipped.append(f"{rel}/{de.name}" if rel else de.name)
                    continue
                m = lst.st_mode
                if m & _S_IFMT != _S_IFDIR:  # replaced since the listing
                    if m & _S_IFMT == _S_IFREG:
                        files.append(de.name)
                    continue
                if fence.outside(lst):  # a mount point: neither entered nor changed
                    fence.crossed.append(f"{rel}/{de.name}" if rel else de.name)
                    continue
                off = _DIR_OFF_SHARED if shared_dir(lst, primary) else _DIR_OFF
                new = None
                if m & off:
                    new = m & 0o7777 & ~off
                    recs.append(pack(lst.st_ino, m & 0o7777, new, fp(lst)))
                subs.append((de.name, lst, new))
        files_chunk(fd, rel, key, sgid, files, recs)  # the rest, and the subdirectories' records
        subs.reverse()
        return subs

    def enter(pfd: int, pkey: tuple[int, int], name: str, rel: str, lst: os.stat_result,
              now: os.stat_result, fd: int, new: int) -> None:
        nonlocal changed
        # Journaled with its parent's group. Changed since the listing (its mode,
        # or what the record's fingerprint holds): left alone.
        if now.st_mode == lst.st_mode and fp(now) == fp(lst) and chmod(Entry(pfd, name, rel, now, pkey, fd), new):
            changed += 1
        else:
            skipped.append(rel)

    own = root_fd is None
    if own:
        root_fd = open_root(root)
    assert root_fd is not None
    try:
        st = fstat(root_fd)
        fence = Fence(root_fd, st)
        new = target_mode(st.st_mode, shared_dir(st, primary))
        if new is not None:
            journal(HEADER.pack(st.st_dev, 0, 1) + pack(st.st_ino, st.st_mode & 0o7777, new, fp(st)))
            if chmod(Entry(-1, root, "", st, (st.st_dev, 0), root_fd), new):
                changed += 1
            else:
                skipped.append("")
        _depth_first(root_fd, st, visit, enter, skipped, fence)
    finally:
        if own:
            os.close(root_fd)
    if mounts is not None:
        mounts.extend(fence.crossed)
    return changed


def preview(root: str, mounts: list[str] | None = None) -> tuple[int, dict[tuple[str, int, int], int]]:
    """What :func:`apply_rule` would change: (entries seen, {(kind, before, after): how many}).

    ``kind`` is "dir" or "file". The same walk, reading only the listing; the
    mount points it does not enter go to ``mounts``.
    """
    counts: dict[tuple[int, bool], int] = {}  # (full st_mode, group_ok) -> how many, of the entries the rule changes
    entries = 1
    listdir, lstat = os.listdir, os.lstat
    primary = primary_gids()
    fence: Fence

    def visit(fd: int, rel: str, st: os.stat_result) -> list[Any]:
        nonlocal entries
        try:
            names = listdir(fd)
        except OSError:
            return []
        sgid = st.st_gid if shared_dir(st, primary) else -1
        subs = []
        n = 0
        for name in names:
            try:
                lst = lstat(name, dir_fd=fd)
            except OSError:
                continue
            n += 1
            m = lst.st_mode
            t = m & _S_IFMT
            if t == _S_IFDIR and fence.outside(lst):
                fence.crossed.append(f"{rel}/{name}" if rel else name)
                continue
            if m & _FILE_OFF:
                if t == _S_IFDIR:
                    subs.append((name, lst, None))
                    ok = shared_dir(lst, primary)
                    if m & (_DIR_OFF_SHARED if ok else _DIR_OFF):
                        counts[(m, ok)] = counts.get((m, ok), 0) + 1
                elif t == _S_IFREG:
                    ok = lst.st_gid == sgid
                    if m & (_FILE_OFF_SHARED if ok else _FILE_OFF) and not fence.outside(lst):
                        counts[(m, ok)] = counts.get((m, ok), 0) + 1
            elif t == _S_IFDIR:
                subs.append((name, lst, None))
        entries += n
        return subs

    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        fence = Fence(root_fd, st)
        ok = shared_dir(st, primary)
        if target_mode(st.st_mode, ok) is not None:
            counts[(st.st_mode, ok)] = 1
        _depth_first(root_fd, st, visit, None, None, fence)
    finally:
        os.close(root_fd)
    if mounts is not None:
        mounts.extend(fence.crossed)
    transitions: dict[tuple[str, int, int], int] = {}
    for (m, ok), n in sorted(counts.items()):
        after = target_mode(m, ok)
        assert after is not None  # counted only when it changes
        key = ("dir" if stat.S_ISDIR(m) else "file", m & 0o7777, after)
        transitions[key] = transitions.get(key, 0) + n
    return entries, transitions
