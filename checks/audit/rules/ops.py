"""OPS-001: backups (from files); OPS-002 is in :mod:`.live`, the firewall checks in :mod:`.fw`."""

from __future__ import annotations

import glob
import os
import re

from checks.audit.findings import FAIL, PASS, Outcome
from checks.audit.rules import Context, check
from checks.audit.rules.sec import command_words
from checks.install.model import Installation, Where

BACKUP_MAX_AGE_DAYS = 7
_DUMP = re.compile(
    r"\.(sql|sql\.gz|sql\.zst|sql\.xz|sql\.bz2|dump|pgdump|backup|bak|db\.bak|sqlite\.bak|tar\.gz)$", re.I)
_BACKUP_CMD = re.compile(
    r"\b(pg_dump|pg_dumpall|pg_basebackup|mysqldump|mariadb-dump|sqlite3\b.*\.backup|restic|borg|rdiff-backup)\b")
_BACKUP_IMAGES = re.compile(r"(postgres-backup|pg-?backup|db-backup|docker-pg-backup|pgbackrest|backup)", re.I)


def _backup_services(ctx: Context) -> list[tuple[str, Where]]:
    out = []
    for svc in ctx.inst.services:
        words = " ".join(w for w, _ in command_words(svc))
        ep = svc.opt("entrypoint")
        if ep is not None and ep.value is not None:
            words += " " + (" ".join(str(n.value) for n in ep.value) if ep.is_seq() else str(ep.value))
        if _BACKUP_CMD.search(words) or _BACKUP_IMAGES.search(svc.image_repo):
            out.append((svc.name, svc.where))
    return out


def _cron_entries(ctx: Context) -> list[Where]:
    host = ctx.inst.host_root
    paths = []
    for pat in ("etc/crontab", "etc/cron.d/*", "etc/cron.daily/*", "etc/cron.weekly/*",
                "var/spool/cron/crontabs/*", "var/spool/cron/*"):
        paths += glob.glob(os.path.join(host, pat))
    out = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                for no, line in enumerate(fh, 1):
                    if line.lstrip().startswith("#"):
                        continue
                    if _BACKUP_CMD.search(line) or ("desterlib" in line.lower() and "backup" in line.lower()):
                        out.append(Where(path, no, line.rstrip("\n")))
        except (OSError, IsADirectoryError):
            continue
    return out


def _dump_files(ctx: Context) -> list[tuple[str, float]]:
    root = ctx.inst.root
    found = []
    dirs = glob.glob(os.path.join(root, "*backup*")) + glob.glob(os.path.join(root, "*/*backup*"))
    for base in [root] + [d for d in dirs if os.path.isdir(d)]:
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if not _DUMP.search(name) or name.startswith((".env", "docker-compose", "compose")):
                continue
            path = os.path.join(base, name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if st.st_size > 0 and os.path.isfile(path):
                found.append((path, st.st_mtime))
    return found


def newest_backup_age(inst: Installation) -> float | None:
    """Seconds since the newest dump file OPS-001 finds (None without one): what the planner asks before
    recreating an API that runs ``prisma db push --accept-data-loss`` at start."""
    from checks.core.secrets import Masker

    dumps = _dump_files(Context(inst, "local", Masker(())))
    return inst.now - max(m for _, m in dumps) if dumps else None


@check("OPS-001")
def ops_001(ctx: Context) -> Outcome:
    services = _backup_services(ctx)
    if services:
        return Outcome(PASS, [ctx.ev(w, name, "backup service in the compose file") for name, w in services])
    cron = _cron_entries(ctx)
    if cron:
        return Outcome(PASS, [ctx.ev(w, None, "scheduled backup") for w in cron])
    dumps = _dump_files(ctx)
    if dumps:
        path, mtime = max(dumps, key=lambda d: d[1])
        age_days = (ctx.inst.now - mtime) / 86400
        shown = ctx.inst.display(path)
        if age_days <= BACKUP_MAX_AGE_DAYS:
            newest = f"newest dump is {max(age_days, 0):.1f} days old"
            return Outcome(PASS, [ctx.ev(Where(shown, None, shown), None, newest)])
        return Outcome(FAIL, [ctx.ev(Where(shown, None, shown), None, f"newest dump is {age_days:.0f} days old")],
                       f"the newest backup is older than {BACKUP_MAX_AGE_DAYS} days and nothing schedules one")
    return Outcome(FAIL, [], "no dump files, no backup service and no cron entry with pg_dump")

