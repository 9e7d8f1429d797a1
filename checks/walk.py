"""Walking the media tree safely: directory file descriptors, never a symlink.

Every directory is opened relative to its parent's descriptor with
``O_NOFOLLOW`` and checked against the inode seen while listing it, so
swapping a directory for a symlink mid-walk cannot lead the walk (or a chmod)
outside the tree. Files are changed through an ``O_PATH`` descriptor for the
same reason.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from typing import Callable, Iterator

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC

# The bulk chmod's journal: one group per directory (or per chunk of a large
# one), its header then a record per change, written before any of its chmods.
HEADER = struct.Struct("<QQI")  # dev, directory inode (0: the root itself), entries
RECORD = struct.Struct("<QHH")  # inode, mode before, mode after

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFREG = 0o100000
_DIR_OFF = 0o022  # what target_mode takes off a directory
_FILE_OFF = 0o6133  # ... and off a regular file
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
        yield Entry(-1, root, "", st, (st.st_dev, 0))
        yield from _walk_dir(root_fd, "", (st.st_dev, st.st_ino), on_error, before_close)
    finally:
        if before_close:
            before_close()
        os.close(root_fd)


def _walk_dir(dir_fd: int, rel: str, key: tuple[int, int], on_error, before_close) -> Iterator[Entry]:
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
            yield from _walk_dir(fd, child_rel, (now.st_dev, now.st_ino), on_error, before_close)
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
        if (now.st_dev, now.st_ino) != (entry.st.st_dev, entry.st.st_ino) or stat.S_IFMT(now.st_mode) != stat.S_IFMT(entry.st.st_mode):
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


def target_mode(st_mode: int) -> int | None:
    """The mode the media fix gives this entry, or None to leave it alone.

    It only takes bits away, never widens access: group/other write from
    directories and files, and exec plus setuid/setgid from regular files. A
    0777 directory becomes 0755 and a ``chmod -R 755`` video 0644 (what the
    docs' ``chmod -R u=rwX,go=rX`` intends), while a private 0700 directory
    stays 0700. Symlinks, devices, sockets and FIFOs are left alone.
    """
    perm = stat.S_IMODE(st_mode)
    if stat.S_ISDIR(st_mode):
        new = perm & ~0o022
    elif stat.S_ISREG(st_mode):
        new = perm & ~0o6133
    else:
        return None
    return new if new != perm else None


def needs_change(st_mode: int) -> bool:
    """FS-005's test: group/other-writable, or a regular file with exec (or set-id) bits."""
    return target_mode(st_mode) is not None


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
        try:
            os.close(_PROC_FD)
        except OSError:
            pass
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


def _depth_first(root_fd: int, root_st: os.stat_result, visit, enter, skipped: list[str] | None) -> None:
    """``visit`` root_fd's directory, then every directory under it, depth first.

    ``visit(fd, rel, st)`` handles one directory's entries and returns its
    subdirectories as a list of ``(name, lstat, arg)``, last to visit first.
    Each is opened relative to its parent with ``O_NOFOLLOW`` and checked
    against the (dev, inode) listed; when ``arg`` is not None,
    ``enter(parent_fd, parent_key, name, rel, listed, now, fd, arg)`` runs
    before its visit (the deferred chmod of the directory itself). Only the
    descriptors of the directories on the current path are open.
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
                if arg is not None:
                    enter(fd, (st.st_dev, st.st_ino), name, crel, lst, cst, cfd, arg)
                csubs = visit(cfd, crel, cst)
            except BaseException:
                close(cfd)
                raise
            stack.append((cfd, crel, cst, csubs))
    finally:
        for frame in stack[1:]:
            close(frame[0])


def apply_rule(root: str, journal: Callable[[bytes], None], skipped: list[str]) -> int:
    """Give every entry under ``root`` its :func:`target_mode`; returns how many changed.

    Each directory's changes are journaled as one group -- ``journal(header +
    records)``, see :data:`HEADER` and :data:`RECORD` -- before the first of
    them is made, so a process killed at any instant has recorded every mode
    it changed. A file is opened ``O_PATH | O_NOFOLLOW`` relative to its
    directory, its mode and inode read from that descriptor, and chmod'ed
    through it: a symbolic link swapped in is seen and skipped, never
    followed. A directory's record goes with its parent's group; its chmod is
    made through its own descriptor when the walk enters it (opened with
    ``O_NOFOLLOW``, checked against the (dev, inode) listed, and still with the
    mode listed). Entries that vanish or change meanwhile are left alone and
    their paths (relative to ``root``) appended to ``skipped``.
    """
    chmod = chmod_entry  # looked up per walk: tests and crash drivers hook it
    op, fstat, scandir, pack = os.open, os.fstat, os.scandir, RECORD.pack
    changed = 0

    def files_chunk(fd: int, rel: str, key: tuple[int, int], names: list[str], recs: list[bytes]) -> None:
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
                if m & _FILE_OFF:
                    if m & _S_IFMT != _S_IFREG:  # a symlink (or other) swapped in: never followed
                        skipped.append(f"{rel}/{name}" if rel else name)
                        continue
                    new = m & 0o7777 & ~_FILE_OFF
                    todo.append((name, s, f, new))
                    recs.append(pack(s.st_ino, m & 0o7777, new))
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

    def visit(fd: int, rel: str, st: os.stat_result) -> list:
        try:
            it = scandir(fd)
        except OSError:
            skipped.append(rel or ".")
            return []
        key = (st.st_dev, st.st_ino)
        files: list[str] = []
        subs: list = []
        recs: list[bytes] = []  # the subdirectories' records, journaled with the next group
        with it:
            for de in it:
                try:
                    if de.is_file(follow_symlinks=False):  # from the listing's d_type
                        files.append(de.name)
                        if len(files) == _CHUNK:  # a large directory: in chunks, as listed
                            files_chunk(fd, rel, key, files, recs)
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
                new = None
                if m & _DIR_OFF:
                    new = m & 0o7777 & ~_DIR_OFF
                    recs.append(pack(lst.st_ino, m & 0o7777, new))
                subs.append((de.name, lst, new))
        files_chunk(fd, rel, key, files, recs)  # the rest, and the subdirectories' records
        subs.reverse()
        return subs

    def enter(pfd: int, pkey: tuple[int, int], name: str, rel: str, lst: os.stat_result,
              now: os.stat_result, fd: int, new: int) -> None:
        nonlocal changed
        # Journaled with its parent's group. Changed since the listing: left alone.
        if now.st_mode == lst.st_mode and chmod(Entry(pfd, name, rel, now, pkey, fd), new):
            changed += 1
        else:
            skipped.append(rel)

    root_fd = open_root(root)
    try:
        st = fstat(root_fd)
        new = target_mode(st.st_mode)
        if new is not None:
            journal(HEADER.pack(st.st_dev, 0, 1) + pack(st.st_ino, st.st_mode & 0o7777, new))
            if chmod(Entry(-1, root, "", st, (st.st_dev, 0), root_fd), new):
                changed += 1
            else:
                skipped.append("")
        _depth_first(root_fd, st, visit, enter, skipped)
    finally:
        os.close(root_fd)
    return changed


def restore_modes(root: str, lookup: Callable[[tuple[int, int]], dict[int, tuple[int, int]] | None],
                  journal: Callable[[bytes], None] | None) -> int:
    """Undo :func:`apply_rule`: put back each recorded mode whose entry still has the mode it was given.

    ``lookup((dev, dir inode))`` gives a directory's records as ``{inode:
    (before, after)}`` (``(dev, 0)``: the root itself). What is put back is
    journaled the same way, group by group before its chmods, when ``journal``
    is given. Entries are found by the inode in the directory listing, so only
    recorded ones are opened; the same safety as :func:`apply_rule`.
    """
    chmod = chmod_entry
    op, fstat, scandir, pack = os.open, os.fstat, os.scandir, RECORD.pack
    restored = 0

    def files_chunk(fd: int, rel: str, key: tuple[int, int], want, cands: list[tuple[str, int]],
                    recs: list[bytes]) -> None:
        """Up to _CHUNK recorded files of one directory: open, journal (with ``recs``), chmod."""
        nonlocal restored
        opened: list[int] = []
        todo = []
        try:
            for name, ino in cands:
                try:
                    f = op(name, _PATH_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in _GONE:
                        raise
                    continue
                opened.append(f)
                s = fstat(f)
                before, after = want[ino]
                if s.st_ino != ino or s.st_mode & _S_IFMT != _S_IFREG or s.st_mode & 0o7777 != after:
                    continue  # replaced, or changed since by someone else: left as it is
                todo.append((name, s, f, before))
                recs.append(pack(ino, after, before))
            if recs:
                if journal is not None:
                    journal(HEADER.pack(key[0], key[1], len(recs)) + b"".join(recs))
                recs.clear()
            for name, s, f, before in todo:
                if chmod(Entry(fd, name, f"{rel}/{name}" if rel else name, s, key, f), before):
                    restored += 1
        finally:
            _close_all(opened)

    def visit(fd: int, rel: str, st: os.stat_result) -> list:
        key = (st.st_dev, st.st_ino)
        want = lookup(key)
        try:
            it = scandir(fd)
        except OSError:
            return []
        subs: list = []
        recs: list[bytes] = []  # the subdirectories' records, journaled with the next group
        cands: list[tuple[str, int]] = []
        found = 0
        with it:
            for de in it:
                try:
                    if de.is_dir(follow_symlinks=False):
                        lst = de.stat(follow_symlinks=False)
                        arg = None
                        rec = want.get(lst.st_ino) if want else None
                        if rec is not None:
                            found += 1
                            if lst.st_mode & 0o7777 == rec[1] and lst.st_mode & _S_IFMT == _S_IFDIR:
                                arg = rec
                                recs.append(pack(lst.st_ino, rec[1], rec[0]))
                        subs.append((de.name, lst, arg))
                    elif want and de.is_file(follow_symlinks=False):
                        ino = de.inode()
                        if ino in want:
                            found += 1
                            cands.append((de.name, ino))
                            if len(cands) == _CHUNK:  # a large directory: in chunks, as listed
                                files_chunk(fd, rel, key, want, cands, recs)
                                cands = []
                except OSError:
                    continue
        files_chunk(fd, rel, key, want, cands, recs)
        if want and found < len(want):
            # Records the listing's inode numbers did not match: entries removed
            # since, or a filesystem whose d_ino is not st_ino. Look closer.
            cands = []
            try:
                it = scandir(fd)
            except OSError:
                it = None
            if it is not None:
                with it:
                    for de in it:
                        try:
                            if de.is_file(follow_symlinks=False) and de.inode() not in want:
                                ino = de.stat(follow_symlinks=False).st_ino
                                if ino in want:
                                    cands.append((de.name, ino))
                                    if len(cands) == _CHUNK:
                                        files_chunk(fd, rel, key, want, cands, recs)
                                        cands = []
                        except OSError:
                            continue
                files_chunk(fd, rel, key, want, cands, recs)
        subs.reverse()
        return subs

    def enter(pfd: int, pkey: tuple[int, int], name: str, rel: str, lst: os.stat_result,
              now: os.stat_result, fd: int, rec: tuple[int, int]) -> None:
        nonlocal restored
        if now.st_mode == lst.st_mode and chmod(Entry(pfd, name, rel, now, pkey, fd), rec[0]):
            restored += 1

    root_fd = open_root(root)
    try:
        st = fstat(root_fd)
        want = lookup((st.st_dev, 0))
        rec = want.get(st.st_ino) if want else None
        if rec is not None and st.st_mode & 0o7777 == rec[1]:
            if journal is not None:
                journal(HEADER.pack(st.st_dev, 0, 1) + pack(st.st_ino, rec[1], rec[0]))
            if chmod(Entry(-1, root, "", st, (st.st_dev, 0), root_fd), rec[0]):
                restored += 1
        _depth_first(root_fd, st, visit, enter, None)
    finally:
        os.close(root_fd)
    return restored


def preview(root: str) -> tuple[int, dict[tuple[str, int, int], int]]:
    """What :func:`apply_rule` would change: (entries seen, {(kind, before, after): how many}).

    ``kind`` is "dir" or "file". The same walk, reading only the listing.
    """
    counts: dict[int, int] = {}  # full st_mode -> how many, for the entries the rule changes
    entries = 1
    listdir, lstat = os.listdir, os.lstat

    def visit(fd: int, rel: str, st: os.stat_result) -> list:
        nonlocal entries
        try:
            names = listdir(fd)
        except OSError:
            return []
        subs = []
        n = 0
        for name in names:
            try:
                lst = lstat(name, dir_fd=fd)
            except OSError:
                continue
            n += 1
            m = lst.st_mode
            if m & _FILE_OFF:
                t = m & _S_IFMT
                if t == _S_IFDIR:
                    subs.append((name, lst, None))
                    if m & _DIR_OFF:
                        counts[m] = counts.get(m, 0) + 1
                elif t == _S_IFREG:
                    counts[m] = counts.get(m, 0) + 1
            elif m & _S_IFMT == _S_IFDIR:
                subs.append((name, lst, None))
        entries += n
        return subs

    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        if target_mode(st.st_mode) is not None:
            counts[st.st_mode] = 1
        _depth_first(root_fd, st, visit, None, None)
    finally:
        os.close(root_fd)
    transitions: dict[tuple[str, int, int], int] = {}
    for m, n in sorted(counts.items()):
        key = ("dir" if stat.S_ISDIR(m) else "file", m & 0o7777, target_mode(m))
        transitions[key] = transitions.get(key, 0) + n
    return entries, transitions
