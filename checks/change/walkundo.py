"""Undo of the media fix: put back the recorded modes, with the walk's own safety.

Split from :mod:`checks.change.walk` (the apply and the preview) along the domain:
this walk reads only the directories that hold records and opens only the
recorded entries.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from checks.change import walk as _w
from checks.change.treerecords import HEADER, RECORD, fingerprint

_S_IFMT, _S_IFDIR, _S_IFREG = _w._S_IFMT, _w._S_IFDIR, _w._S_IFREG


def restore_modes(root: str, lookup: Callable[[tuple[int, int]], Any],
                  journal: Callable[[bytes], None] | None, *, root_fd: int | None = None) -> int:
    """Undo :func:`checks.change.walk.apply_rule`: put back each recorded mode whose entry is still as the fix left it.

    ``lookup((dev, dir inode))`` gives a directory's records as ``{inode:
    (before, after, fingerprint)}`` (``(dev, 0)``: the root itself;
    fingerprint None for a journal of the release before, see
    :mod:`checks.change.treerecords`). An entry gets its mode back only when it
    still has the inode, the type and the mode the fix gave it and, when
    recorded, the same :func:`~checks.change.treerecords.fingerprint`: a file that
    reuses a deleted one's inode number keeps its own mode. What is put back
    is journaled the same way, group by group before its chmods, when
    ``journal`` is given. Entries are found by the inode in the directory
    listing, so only recorded ones are opened; the walk stays on the root's
    filesystem. ``root_fd``: the root, already opened by the caller.
    """
    chmod = _w.chmod_entry  # looked up per walk: tests and crash drivers hook it
    op, fstat, scandir, pack, fp = os.open, os.fstat, os.scandir, RECORD.pack, fingerprint
    restored = 0
    fence: _w.Fence

    def files_chunk(fd: int, rel: str, key: tuple[int, int], want: Any, cands: list[tuple[str, int]],
                    recs: list[bytes]) -> None:
        """Up to _CHUNK recorded files of one directory: open, journal (with ``recs``), chmod."""
        nonlocal restored
        opened: list[int] = []
        todo = []
        try:
            for name, ino in cands:
                try:
                    f = op(name, _w._PATH_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in _w._GONE:
                        raise
                    continue
                opened.append(f)
                s = fstat(f)
                before, after, rfp = want[ino]
                if s.st_ino != ino or s.st_mode & _S_IFMT != _S_IFREG or s.st_mode & 0o7777 != after:
                    continue  # replaced, or changed since by someone else: left as it is
                now = fp(s)
                if (rfp is not None and now != rfp) or fence.outside(s):
                    continue  # another file with a reused inode number, or one mounted here
                todo.append((name, s, f, before))
                recs.append(pack(ino, after, before, now))
            if recs:
                if journal is not None:
                    journal(HEADER.pack(key[0], key[1], len(recs)) + b"".join(recs))
                recs.clear()
            for name, s, f, before in todo:
                if chmod(_w.Entry(fd, name, f"{rel}/{name}" if rel else name, s, key, f), before):
                    restored += 1
        finally:
            _w._close_all(opened)

    def visit(fd: int, rel: str, st: os.stat_result) -> list[Any]:
        key = (st.st_dev, st.st_ino)
        want = lookup(key)
        try:
            it = scandir(fd)
        except OSError:
            return []
        subs: list[Any] = []
        recs: list[bytes] = []  # the subdirectories' records, journaled with the next group
        cands: list[tuple[str, int]] = []
        found = 0
        with it:
            for de in it:
                try:
                    if de.is_dir(follow_symlinks=False):
                        lst = de.stat(follow_symlinks=False)
                        if fence.outside(lst):
                            continue  # a mount point: not ours
                        arg = None
                        rec = want.get(lst.st_ino) if want else None
                        if rec is not None:
                            found += 1
                            if (lst.st_mode & 0o7777 == rec[1] and lst.st_mode & _S_IFMT == _S_IFDIR
                                    and (rec[2] is None or fp(lst) == rec[2])):
                                arg = rec
                                recs.append(pack(lst.st_ino, rec[1], rec[0], fp(lst)))
                        subs.append((de.name, lst, arg))
                    elif want and de.is_file(follow_symlinks=False):
                        ino = de.inode()
                        if ino in want:
                            found += 1
                            cands.append((de.name, ino))
                            if len(cands) == _w._CHUNK:  # a large directory: in chunks, as listed
                                files_chunk(fd, rel, key, want, cands, recs)
                                cands = []
                except OSError:
                    continue
        files_chunk(fd, rel, key, want, cands, recs)
        if want and found < len(want):
            # Records the listing's inode numbers did not match: entries removed
            # since, or a filesystem whose d_ino is not st_ino. Look closer.
            cands = []
            listing: Any
            try:
                listing = scandir(fd)
            except OSError:
                listing = None
            it = listing
            if it is not None:
                with it:
                    for de in it:
                        try:
                            if de.is_file(follow_symlinks=False) and de.inode() not in want:
                                ino = de.stat(follow_symlinks=False).st_ino
                                if ino in want:
                                    cands.append((de.name, ino))
                                    if len(cands) == _w._CHUNK:
                                        files_chunk(fd, rel, key, want, cands, recs)
                                        cands = []
                        except OSError:
                            continue
                files_chunk(fd, rel, key, want, cands, recs)
        subs.reverse()
        return subs

    def enter(pfd: int, pkey: tuple[int, int], name: str, rel: str, lst: os.stat_result,
              now: os.stat_result, fd: int, rec: tuple[Any, ...]) -> None:
        nonlocal restored
        if (now.st_mode == lst.st_mode and fp(now) == fp(lst)
                and chmod(_w.Entry(pfd, name, rel, now, pkey, fd), rec[0])):
            restored += 1

    own = root_fd is None
    if own:
        root_fd = _w.open_root(root)
    assert root_fd is not None
    try:
        st = fstat(root_fd)
        fence = _w.Fence(root_fd, st)
        want = lookup((st.st_dev, 0))
        rec = want.get(st.st_ino) if want else None
        if rec is not None and st.st_mode & 0o7777 == rec[1] and (rec[2] is None or fp(st) == rec[2]):
            if journal is not None:
                journal(HEADER.pack(st.st_dev, 0, 1) + pack(st.st_ino, rec[1], rec[0], fp(st)))
            if chmod(_w.Entry(-1, root, "", st, (st.st_dev, 0), root_fd), rec[0]):
                restored += 1
        _w._depth_first(root_fd, st, visit, enter, None, fence)
    finally:
        if own:
            os.close(root_fd)
    return restored
