"""FS-*: file modes of what holds secrets, and the media library."""

from __future__ import annotations

import os
import posixpath
import re
import stat
from dataclasses import dataclass
from urllib.parse import unquote

from checks.audit.catalog import BY_ID
from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.common import all_env_vars
from checks.audit.rules.sec import literal_secrets
from checks.core.errors import InputError
from checks.core.mediaroot import media_root_problem
from checks.core.mediarule import DIR_FLAGS, EXEC_OFF, FILE_OFF, WRITE_OFF, WRITE_OFF_SHARED, primary_gids, shared_dir
from checks.core.secrets import is_credential_key, is_flag_value, url_userinfo
from checks.core.textio import read_source
from checks.install.model import Installation, Mount, Service, Where


def _owner(uid: int) -> str:
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _mode_where(display: str, mode: int, uid: int) -> Where:
    return Where(display, None, f"mode {mode:04o}, owner {_owner(uid)}")


@check("FS-001")
def fs_001(ctx: Context) -> Outcome:
    ev = []
    for ef in ctx.inst.env_files:
        if ef.source is None:
            continue
        mode = ef.source.mode
        if mode & 0o077:
            who = "group and others" if mode & 0o070 and mode & 0o007 else ("others" if mode & 0o007 else "group")
            ev.append(ctx.ev(_mode_where(ef.display, mode, ef.source.uid), None,
                             f"readable or writable by {who}; should be 0600"))
    return Outcome(FAIL if ev else PASS, ev)


@check("FS-002")
def fs_002(ctx: Context) -> Outcome:
    holding = {where.file for _, where, _ in literal_secrets(ctx.inst)}
    ev = []
    for src in ctx.inst.compose_files:
        if src.mode & 0o022:
            ev.append(ctx.ev(_mode_where(src.display, src.mode, src.uid), None,
                             "writable by group or others; should be 0644"))
        elif src.display in holding and src.mode & 0o044:
            ev.append(ctx.ev(_mode_where(src.display, src.mode, src.uid), None,
                             "holds secrets (SEC-003) and is readable by others; 0600 until they move to .env"))
    return Outcome(FAIL if ev else PASS, ev)


@check("FS-003")
def fs_003(ctx: Context) -> Outcome:
    ev = []
    dirs = {ctx.inst.root} | {os.path.dirname(s.path) for s in ctx.inst.compose_files}
    for d in sorted(dirs):
        try:
            mode, uid = ctx.inst.lstat(d)
        except OSError:
            continue
        if mode & 0o022:
            shown = ctx.inst.display(d) if d != ctx.inst.root else "."
            ev.append(ctx.ev(_mode_where(shown, mode, uid), None, "directory writable by group or others"))
    return Outcome(FAIL if ev else PASS, ev)


def media_mounts(inst: Installation) -> list[tuple[Service, Mount]]:
    """Bind mounts whose container side is the API's media path."""
    target = inst.media_path.rstrip("/") or "/"
    out = []
    for svc in inst.services:
        for mount in svc.mounts:
            if mount.host_path is None or not mount.target:
                continue
            if posixpath.normpath(mount.target) == target:
                out.append((svc, mount))
    return out


@check("FS-004")
def fs_004(ctx: Context) -> Outcome:
    mounts = media_mounts(ctx.inst)
    if not mounts:
        return Outcome(SKIPPED, reason=f"no media bind mount found (container path {ctx.inst.media_path})")
    ev = [ctx.ev(m.where, svc.name, "media mounted read-write", target=m) for svc, m in mounts if not m.read_only]
    return Outcome(FAIL if ev else PASS, ev)


class MediaScan:
    """Counts of what FS-005 flags in one tree (symbolic links are never followed)."""

    __slots__ = ("dirs_writable", "files_writable", "files_exec", "entries", "unreadable", "examples")

    def __init__(self) -> None:
        self.dirs_writable = 0
        self.files_writable = 0
        self.files_exec = 0
        self.entries = 0
        self.unreadable = 0
        self.examples: list[tuple[str, int]] = []

    @property
    def offending(self) -> int:
        return self.dirs_writable + self.files_writable + self.files_exec


def scan_media(top: str, keep_examples: int = 5) -> MediaScan:
    """Walk ``top`` without following symlinks; count group/other-writable and executable entries.

    Directories are opened relative to their parent's descriptor with
    ``O_NOFOLLOW`` and each entry is lstat'ed relative to it: one system call
    an entry, no path walk, no object but the name and the stat result. The
    order is the one a stack of paths gives (each directory's subdirectories
    last-listed first), so the examples are the first offenders in that
    order. Group write in a shared group library is not counted (the fix's
    rule, :func:`checks.core.mediarule.shared_dir`). ``top`` unreadable raises
    PermissionError; anything unreadable below it is counted.
    """
    result = MediaScan()
    examples = result.examples
    op, close, listdir, lstat = os.open, os.close, os.listdir, os.lstat
    primary = primary_gids()
    entries = dirs_w = files_w = files_x = unreadable = 0
    top_fd = op(top, DIR_FLAGS)
    try:
        tst = os.fstat(top_fd)
    except BaseException:
        close(top_fd)
        raise
    stack: list[tuple[int, str, list[tuple[str, int]]]] = [(top_fd, top, [])]
    fd, path, subs = stack[0]
    sgid = tst.st_gid if shared_dir(tst, primary) else -1  # the directory's group when a shared library's
    try:
        while True:
            # List the directory ``fd`` (``path``): count it, collect its subdirectories.
            try:
                names = listdir(fd)
            except OSError:
                if fd == top_fd:
                    raise
                unreadable += 1
                names = []
            entries += len(names)
            for name in names:
                try:
                    st = lstat(name, dir_fd=fd)
                except OSError:
                    unreadable += 1
                    continue
                m = st.st_mode
                if m & FILE_OFF:  # write, exec or set-id bits somewhere: look closer
                    t = m & 0o170000
                    if t == 0o040000:
                        shared = shared_dir(st, primary)
                        subs.append((name, st.st_gid if shared else -1))
                        if m & (WRITE_OFF_SHARED if shared else WRITE_OFF):
                            dirs_w += 1
                            if len(examples) < keep_examples:
                                examples.append((os.path.join(path, name), m & 0o7777))
                    elif t == 0o100000:
                        bad = False
                        if m & (WRITE_OFF_SHARED if st.st_gid == sgid else WRITE_OFF):
                            files_w += 1
                            bad = True
                        if m & EXEC_OFF:  # exec or set-id bits: what the rule takes off (mediarule.target_mode)
                            files_x += 1
                            bad = True
                        if bad and len(examples) < keep_examples:
                            examples.append((os.path.join(path, name), m & 0o7777))
                elif m & 0o170000 == 0o040000:
                    subs.append((name, -1))
            # Then the next directory: the last-listed pending one, depth first.
            while True:
                while stack and not stack[-1][2]:
                    close(stack.pop()[0])
                if not stack:
                    break
                pfd, ppath, psubs = stack[-1]
                name, sgid = psubs.pop()
                try:
                    fd = op(name, DIR_FLAGS, dir_fd=pfd)
                except OSError:  # unreadable, or removed or replaced by a symlink meanwhile
                    unreadable += 1
                    continue
                path, subs = os.path.join(ppath, name), []
                stack.append((fd, path, subs))
                break
            if not stack:
                break
    finally:
        for frame in stack:
            close(frame[0])
    result.entries, result.unreadable = entries, unreadable
    result.dirs_writable, result.files_writable, result.files_exec = dirs_w, files_w, files_x
    return result


@check("FS-005")
def fs_005(ctx: Context) -> Outcome:
    mounts = media_mounts(ctx.inst)
    if not mounts:
        return Outcome(SKIPPED, reason=f"no media bind mount found (container path {ctx.inst.media_path})")
    ev = []
    unseen = []  # roots not looked at, and why: never a pass for them
    for top in sorted({m.host_path for _, m in mounts if m.host_path}):
        if os.path.islink(top):
            unseen.append(f"media directory {top} is a symbolic link, not followed")
            continue
        if not os.path.isdir(top):
            unseen.append(f"media directory not found on this host: {top}")
            continue
        problem = media_root_problem(top, ctx.inst.root)
        if problem is not None:
            # A system or home directory, or the installation, exposed as the media library is the
            # finding itself; it is not walked (it may be the whole disk), and the fix refuses it.
            why = f"{problem}: mounted as the media library; not walked, and the fix will not change it"
            ev.append(ctx.ev(None, None, None, text=why))
            continue
        try:
            st = os.lstat(top)
            res = scan_media(top)
        except PermissionError:
            return Outcome(ERROR, reason=f"media directory {top} is not readable (permission denied); run with sudo")
        if st.st_mode & (WRITE_OFF_SHARED if shared_dir(st, primary_gids()) else WRITE_OFF):
            res.dirs_writable += 1
            res.examples.insert(0, (top, stat.S_IMODE(st.st_mode)))
        if res.offending:
            parts = []
            if res.dirs_writable:
                parts.append(_count(res.dirs_writable, "directory", "directories") + " writable by group/other")
            if res.files_writable:
                parts.append(_count(res.files_writable, "file", "files") + " writable by group/other")
            if res.files_exec:
                parts.append(_count(res.files_exec, "file", "files") + " executable")
            summary = f"{top}: " + ", ".join(parts) + f" (of {res.entries:,} entries)"
            ev.append(ctx.ev(None, None, None, text=summary))
            for path, mode in res.examples:
                ev.append(ctx.ev(Where(path, None, f"mode {mode:04o}"), None, None))
    if not ev and unseen:
        return Outcome(SKIPPED, reason="; ".join(unseen))
    ev.extend(ctx.ev(None, None, None, text=why) for why in unseen)
    return Outcome(FAIL if ev else PASS, ev)


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


_STRAY = re.compile(
    r"^(?:\.env|.+\.env|docker-compose(?:\.[\w-]+)?\.ya?ml|compose(?:\.[\w-]+)?\.ya?ml)"
    r"(?:~|\.(?:bak\d*|orig|old|save|backup|copy|tmp|swp|rej|prev|dpkg-old|ucf-old|\d{6,}))$"
    r"|^\.env\.(?:bak|backup|old|orig)[\w.-]*$|^\.?#\.env#?$")


def stray_copies(inst: Installation) -> list[str]:
    dirs = {inst.root} | {os.path.dirname(s.path) for s in inst.compose_files}
    dirs |= {os.path.dirname(ef.path) for ef in inst.env_files}
    found = []
    for d in sorted(dirs):
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in sorted(names):
            if _STRAY.match(name):
                path = os.path.join(d, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    found.append(path)
    return found


def passwords_in_use(inst: Installation) -> set[str]:
    """The values the installation's credential variables hold now (URL passwords decoded)."""
    out: set[str] = set()
    for _svc, var in all_env_vars(inst):
        value = var.value
        if not value:
            continue
        if is_credential_key(var.key) and not is_flag_value(value):
            out.add(value)
        userinfo = url_userinfo(value)
        if userinfo and userinfo[1]:
            out.add(unquote(userinfo[1]))
    return out


_ASSIGNMENT = re.compile(r"^\s*(?:-\s*)?(?:export\s+)?[\"']?[A-Za-z_][\w.-]*\s*[=:]\s*(.*?)\s*$")


def held_values(text: str) -> set[str]:
    """The values a copy assigns (``KEY=value``, ``KEY: value``, ``- KEY=value``), unquoted,
    with the password of each URL among them (decoded)."""
    out: set[str] = set()
    for line in text.splitlines():
        m = _ASSIGNMENT.match(line)
        if not m:
            continue
        value = m.group(1)
        if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) >= 2:
            value = value[1:-1]
        elif value.endswith(("'", '"')) and value[:-1].count(value[-1]) == 0:
            value = value[:-1]  # `- "KEY=value"`: the quote opened before KEY
        if not value:
            continue
        out.add(value)
        userinfo = url_userinfo(value)
        if userinfo and userinfo[1]:
            out.add(unquote(userinfo[1]))
    return out


def _holds_password_in_use(path: str, display: str, in_use: set[str]) -> bool | None:
    """Whether the copy at ``path`` assigns a password the installation uses now (None: unreadable)."""
    try:
        text = read_source(path, display, "stray copy").text
    except InputError:
        return None
    return not in_use.isdisjoint(held_values(text))


@check("FS-006")
def fs_006(ctx: Context) -> Outcome:
    ev = []
    in_use: set[str] | None = None
    for path in stray_copies(ctx.inst):
        mode, uid = ctx.inst.lstat(path)
        if mode & 0o077:
            if in_use is None:
                in_use = passwords_in_use(ctx.inst)
            display = ctx.inst.display(path)
            holds = _holds_password_in_use(path, display, in_use)
            note = "a copy of a file with secrets, readable by others"
            severity = None
            if holds:
                # The same exposure as the .env itself (FS-001): a copy of a password that still opens the database.
                note += "; it holds a password still in use"
                severity = BY_ID["FS-001"].severity_for(ctx.profile)
            elif holds is None:
                note += "; it could not be read to tell whether it holds a password still in use"
            e = ctx.ev(_mode_where(display, mode, uid), None, note)
            e.severity = severity
            ev.append(e)
    return Outcome(FAIL if ev else PASS, ev)


@dataclass(frozen=True, slots=True)
class SqliteDb:
    """The SQLite database of the newer layout, as the host sees it."""

    service: str
    url_where: Where
    """Where DATABASE_URL says ``file:...``."""
    container_path: str
    host_path: str | None
    """Through the service's bind mount; None when no bind mount holds it (a volume, or the image)."""

    @property
    def files(self) -> list[str]:
        """The database and its -wal/-shm companions (whichever exist or not)."""
        return [self.host_path + s for s in ("", "-wal", "-shm")] if self.host_path else []


def sqlite_databases(inst: Installation) -> list[SqliteDb]:
    """Each service's SQLite database (``DATABASE_URL=file:/app/db/main.db``), mapped to the host."""
    out: list[SqliteDb] = []
    for svc in inst.services:
        var = svc.environment.get("DATABASE_URL")
        if var is None or not var.value or not var.value.startswith("file:"):
            continue
        path = unquote(var.value[len("file:"):].split("?", 1)[0])
        if path.startswith("//"):
            path = "/" + path.lstrip("/")  # file:///app/db/main.db
        host = None
        if path.startswith("/"):
            path = posixpath.normpath(path)
            best = -1
            for m in svc.mounts:
                if m.kind != "bind" or m.host_path is None or not m.target:
                    continue
                tgt = posixpath.normpath(m.target)
                if (path == tgt or path.startswith(tgt.rstrip("/") + "/")) and len(tgt) > best:
                    best, host = len(tgt), os.path.join(m.host_path, posixpath.relpath(path, tgt))
        out.append(SqliteDb(svc.name, var.where, path, host))
    return out


@check("FS-007")
def fs_007(ctx: Context) -> Outcome:
    dbs = sqlite_databases(ctx.inst)
    if not dbs:
        return Outcome(SKIPPED, reason="no SQLite database (DATABASE_URL file:...) in the installation")
    ev = []
    unseen = []
    seen: set[str] = set()
    for db in dbs:
        if db.host_path is None:
            unseen.append(f"{db.container_path} of service {db.service} is on no bind mount: not checked from here")
            continue
        directory = os.path.dirname(db.host_path)
        if directory in seen:
            continue
        seen.add(directory)
        if not os.path.lexists(directory):
            unseen.append(f"the database directory {ctx.inst.display(directory)} does not exist on this host")
            continue
        for path, want, what in [(directory, 0o700, "directory")] + [(f, 0o600, "file") for f in db.files]:
            if not os.path.lexists(path):
                continue
            if os.path.islink(path):
                return Outcome(ERROR, reason=f"{ctx.inst.display(path)} is a symbolic link: not followed, "
                                             "so the database's permissions cannot be judged")
            mode, uid = ctx.inst.lstat(path)
            if mode & 0o077:
                # The target is the host path: FS-007's fix chmods it (a file: with its -wal/-shm and directory).
                ev.append(ctx.ev(_mode_where(ctx.inst.display(path), mode, uid), db.service,
                                 f"SQLite database {what} readable by group or others; should be {want:04o}",
                                 target=os.path.abspath(path)))
    if not ev and unseen:
        return Outcome(SKIPPED, reason="; ".join(unseen))
    ev.extend(ctx.ev(None, None, None, text=why) for why in unseen)
    return Outcome(FAIL if ev else PASS, ev)
