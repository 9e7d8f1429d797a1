"""Changes stay inside the installation: the file operations of the change engine.

The installation usually belongs to someone else than the root who runs
``fix``: its owner can swap any directory of it for a symbolic link, or
hard-link one of its files to a file elsewhere, at any instant. So no write,
chmod or chown here ever goes through a path string. :class:`Confined` opens
the install root once (``O_NOFOLLOW``), descends each directory with
``openat(..., O_NOFOLLOW | O_DIRECTORY)``, and works on descriptors relative
to the directory it verified: a symbolic link swapped in at any moment fails
the descent instead of redirecting the change. A regular file with more than
one link is refused (another name for it may be outside), as is anything that
is not a regular file or a directory.

The exceptions: a file the user named on the command line (``--file``) is
reached through its own path, wherever it is, because the user chose it; a
file under one of the system directories the user chose (``/etc/nginx``,
:attr:`Confined.system`) is reached from ``/`` after every directory on the
way passed the trust check of :mod:`checks.change.system`.

:func:`problem` is the same rule for the planner, asked before anything is
planned, so a preview never shows a change the engine will refuse (and
:func:`system_problem` the rule for system files).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterable

from checks.core.errors import EngineError

_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC
_FS_IOC_GETFLAGS = 0x80086601  # _IOR('f', 1, long) on 64-bit Linux
_IMMUTABLE_FL, _APPEND_FL = 0x10, 0x20
#: Extended attributes a replaced file takes over from the one it replaces.
_ACL = "system.posix_acl_access"


class ConfinementError(EngineError):
    """A path leads out of the installation (or is hard-linked); nothing is changed through it."""


class ImmutableError(EngineError):
    """The file (or its directory) is immutable or append-only (``chattr +i`` / ``+a``): EPERM even for root."""


class NotConfined(Exception):
    """Raised by the planner for a file it must not plan a change of (the message says why)."""


def _inside(root: str, path: str) -> str | None:
    """``path`` relative to ``root`` ("." for the root itself), or None when it is outside."""
    rel = os.path.relpath(path, root)
    if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
        return None
    return rel


def _flags(fd: int) -> int:
    """The inode flags (chattr) of an open file; 0 where the filesystem has none."""
    buf = bytearray(8)
    try:
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, buf)
    except OSError:
        return 0
    return int.from_bytes(buf[:4], "little")


def _flag_word(flags: int) -> str | None:
    if flags & _IMMUTABLE_FL:
        return "immutable (chattr +i)"
    if flags & _APPEND_FL:
        return "append-only (chattr +a)"
    return None


def _path_flags(path: str) -> int:
    """The inode flags of ``path`` itself (never a link's target); 0 when it cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        return _flags(fd)
    finally:
        os.close(fd)


def problem(root: str, path: str, named: Iterable[str] = (), write: bool = False) -> str | None:
    """Why the planner must not change ``path`` (None: it may): its contents (``write``) or its mode.

    ``named`` are the files the user named on the command line: they may be
    anywhere, but they must still be real files, not symbolic links.
    """
    root, path = os.path.abspath(root), os.path.abspath(path)
    shown = path
    if path not in set(named):
        if os.path.islink(root):
            return (f"the installation directory {root} is a symbolic link (to {_target(root)}); "
                    "run dester-harden again with --dir naming its target")
        rel = _inside(root, path)
        if rel is None:
            return f"{path} is outside the installation directory {root}"
        parts = [] if rel == "." else rel.split(os.sep)
        cur = root
        for part in parts[:-1]:
            cur = os.path.join(cur, part)
            try:
                st = os.lstat(cur)
            except FileNotFoundError:
                return None  # nothing to write through; the engine's own open fails
            if stat.S_ISLNK(st.st_mode):
                return (f"{rel} is reached through the symbolic link {os.path.relpath(cur, root)} "
                        f"(to {_target(cur)}), which may lead outside the installation directory")
            if not stat.S_ISDIR(st.st_mode):
                return f"{os.path.relpath(cur, root)} is not a directory"
        shown = rel if rel != "." else root
    if write:
        # A file is replaced by a new one beside it: its directory must take one.
        word = _flag_word(_path_flags(os.path.dirname(path)))
        if word:
            return (f"the directory of {shown} is {word}; remove the flag first (chattr -i / chattr -a) "
                    "if it should be changed")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None  # a file the plan creates
    if stat.S_ISLNK(st.st_mode):
        return (f"{shown} is a symbolic link (to {_target(path)}); "
                "change its target by hand if it is part of the installation")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return f"{shown} is not a regular file"
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and path not in set(named):
        return (f"{shown} has {st.st_nlink} hard links: "
                "another name for the same file may be outside the installation directory")
    word = _flag_word(_path_flags(path))
    if word:
        return f"{shown} is {word}; remove the flag first (chattr -i / chattr -a) if it should be changed"
    return None


def system_problem(path: str, system_dirs: Iterable[str], *, link: bool = False) -> str | None:
    """Why the planner must not change the system file ``path`` (None: it may); see :mod:`checks.change.system`.

    ``link``: a symbolic link is to be created at ``path`` (nothing may be there)."""
    from checks.change.system import system_problem as rule

    return rule(path, system_dirs, link=link)


def _target(link: str) -> str:
    """A link's target for a message: one line, whatever bytes the owner put in it."""
    return "".join(c if c.isprintable() else "?" for c in os.readlink(link))


class Confined:
    """Reads and changes files under one installation root through verified directory descriptors."""

    def __init__(self, root: str, system: Iterable[str] = ()) -> None:
        self.root = os.path.abspath(root)
        self._fd: int | None = None
        self.system: tuple[str, ...] = tuple(os.path.abspath(d) for d in system)
        """System directories (:attr:`checks.change.plan.Plan.system`): paths under them are reached from ``/``
        after the trust check of :mod:`checks.change.system`, not from the install root."""

    def is_system(self, path: str) -> bool:
        """``path`` is under one of :attr:`system` (and outside the installation)."""
        from checks.change.system import containing

        path = os.path.abspath(path)
        return _inside(self.root, path) is None and containing(path, self.system) is not None

    # -- descriptors -------------------------------------------------------------
    def root_fd(self) -> int:
        """The install root, opened once (``O_NOFOLLOW``: the root itself may not be a link)."""
        if self._fd is None:
            try:
                self._fd = os.open(self.root, _ROOT_FLAGS)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise ConfinementError(f"the installation directory {self.root} is a symbolic link or not a "
                                           "directory; run dester-harden again with --dir naming its target") from None
                raise
        return self._fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()

    def parent(self, path: str, named: bool = False) -> tuple[int, str]:
        """(a new descriptor of ``path``'s directory, its last component); the caller closes it.

        Every directory between the root and the file is opened with
        ``O_NOFOLLOW | O_DIRECTORY`` relative to the one before it.
        """
        path = os.path.abspath(path)
        if named:
            return os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), os.path.basename(path)
        rel = _inside(self.root, path)
        if rel is None and self.system:
            from checks.change.system import containing, open_dir

            top = containing(path, self.system)
            if top is not None:  # (for the system directory itself: its parent, above it)
                return open_dir(os.path.dirname(path), top, path), os.path.basename(path)
        if rel is None or rel == ".":
            raise ConfinementError(f"{path} is outside the installation directory {self.root}; not changing it")
        parts = rel.split(os.sep)
        fd = os.dup(self.root_fd())
        try:
            for i, part in enumerate(parts[:-1]):
                try:
                    nfd = os.open(part, _ROOT_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        where = os.path.join(*parts[:i + 1])
                        raise ConfinementError(f"{path}: {where} is a symbolic link (or not a directory) now; "
                                               "not following it out of the installation") from None
                    raise
                os.close(fd)
                fd = nfd
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1]

    def _open(self, dfd: int, name: str, path: str, named: bool, missing_ok: bool = False) -> int | None:
        """An ``O_PATH`` descriptor of the entry itself (never a link's target), checked."""
        try:
            fd = os.open(name, _PATH_FLAGS, dir_fd=dfd)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise
        st = os.fstat(fd)
        why = None
        if stat.S_ISLNK(st.st_mode):
            why = f"{path} is a symbolic link now; not changing its target"
        elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
            why = f"{path} is not a regular file; not changing it"
        elif stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and not named:
            why = (f"{path} has {st.st_nlink} hard links: another name for the same file may be outside the "
                   "installation; not changing it")
        if why:
            os.close(fd)
            raise ConfinementError(why)
        return fd

    @staticmethod
    def _reopen(fd: int, flags: int = os.O_RDONLY) -> int:
        """A readable descriptor of exactly the inode ``fd`` (``O_PATH``) names."""
        return os.open(f"/proc/self/fd/{fd}", flags | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)

    # -- reading -------------------------------------------------------------------
    def lstat(self, path: str, named: bool = False) -> os.stat_result | None:
        path = os.path.abspath(path)
        if not named and path == self.root:
            return os.fstat(self.root_fd())
        dfd, name = self.parent(path, named)
        try:
            return os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(dfd)

    def read(self, path: str, named: bool = False) -> bytes | None:
        """The content of the regular file ``path`` (None when it does not exist)."""
        dfd, name = self.parent(path, named)
        try:
            pfd = self._open(dfd, name, path, named, missing_ok=True)
        finally:
            os.close(dfd)
        if pfd is None:
            return None
        try:
            fd = self._reopen(pfd)
        finally:
            os.close(pfd)
        with os.fdopen(fd, "rb") as fh:
            return fh.read()

    # -- changing ------------------------------------------------------------------
    def replace(self, path: str, data: bytes, mode: int, uid: int, gid: int, tag: str, named: bool = False) -> None:
        """Write ``data`` to a temp file beside ``path``, give it the old file's owner, mode,
        user xattrs and ACL, then rename it over ``path``, all relative to the verified directory."""
        dfd, name = self.parent(path, named)
        try:
            xattrs: list[tuple[str, bytes]] = []
            pfd = self._open(dfd, name, path, named, missing_ok=True)
            if pfd is not None:
                try:
                    fd = self._reopen(pfd)
                except PermissionError:  # not root, and a file its owner cannot read
                    fd = None
                    xattrs = _kept_xattrs(f"/proc/self/fd/{pfd}")
                finally:
                    os.close(pfd)
                if fd is not None:
                    try:
                        self._refuse_flagged(fd, path)
                        xattrs = _kept_xattrs(fd)
                    finally:
                        os.close(fd)
            tmp = f".{name}.dh-{tag}.tmp"
            try:
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
                fd = os.open(tmp, flags, 0o600, dir_fd=dfd)
            except PermissionError:
                self._refuse_flagged(dfd, os.path.dirname(path))
                raise
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                st = os.fstat(fd)
                if (st.st_uid, st.st_gid) != (uid, gid):
                    os.fchown(fd, uid, gid)
                for key, value in xattrs:
                    os.setxattr(fd, key, value)
                os.fchmod(fd, mode)  # last: it also sets an ACL's mask from the group bits
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                _unlink_at(dfd, tmp)
                raise
            os.close(fd)
            try:
                os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            except BaseException:
                _unlink_at(dfd, tmp)
                raise
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def chmod(self, path: str, mode: int, named: bool = False) -> None:
        """chmod the entry ``path`` itself, through a descriptor of it."""
        path = os.path.abspath(path)
        if not named and path == self.root:
            fd = os.dup(self.root_fd())
        else:
            dfd, name = self.parent(path, named)
            try:
                opened = self._open(dfd, name, path, named)
            finally:
                os.close(dfd)
            assert opened is not None  # missing_ok is False: a missing entry raised
            fd = opened
        try:
            try:
                rfd = self._reopen(fd)
            except PermissionError:  # not root, and a file its owner cannot read: the inode's /proc link
                os.chmod(f"/proc/self/fd/{fd}", mode)
                return
            try:
                self._refuse_flagged(rfd, path)
                os.fchmod(rfd, mode)
            finally:
                os.close(rfd)
        finally:
            os.close(fd)

    def unlink(self, path: str, named: bool = False) -> None:
        """Remove the file ``path`` (nothing when it is gone); never through a link."""
        dfd, name = self.parent(path, named)
        try:
            _unlink_at(dfd, name)
            os.fsync(dfd)
        finally:
            os.close(dfd)

    @staticmethod
    def _refuse_flagged(fd: int, path: str) -> None:
        word = _flag_word(_flags(fd))
        if word:
            raise ImmutableError(f"{path} is {word}, so not even root can change it; remove the flag "
                                 f"(chattr -i or -a) if it should be changed, then run the command again")


def _kept_xattrs(fd: int | str) -> list[tuple[str, bytes]]:
    """The user.* extended attributes and the access ACL of an open file."""
    try:
        names = os.listxattr(fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise
    out = []
    for key in names:
        if key.startswith("user.") or key == _ACL:
            try:
                out.append((key, os.getxattr(fd, key)))
            except OSError as exc:
                if exc.errno != errno.ENODATA:  # removed meanwhile
                    raise
    return out


def _unlink_at(dfd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dfd)
