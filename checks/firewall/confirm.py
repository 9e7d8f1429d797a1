"""Confirm-or-revert (``netplan try`` for the firewall): a change the user must confirm in time.

A plan with :attr:`checks.change.plan.Plan.revert_after` is applied as a *tentative* transaction
(``applied-tentative`` with a deadline, docs/adr/0003). This module adds what makes the revert
happen even when nobody runs dester-harden again (docs/adr/0010-confirm-or-revert.md):

* a **pending record** (``confirm.json`` in the installation's journal directory: root-owned,
  0600, read only through :mod:`checks.change.trust` like the journal itself) holding the
  transaction, the wall-clock deadline, the boot id at arm time and the state
  ``armed`` -> ``confirmed`` | ``reverted``;
* a **watcher** started at arm time, before the first rule changes: a transient systemd timer
  where systemd is PID 1, else a detached process (double fork, its own session, SIGHUP ignored,
  stdio on /dev/null or a 0600 log) that no SIGKILL of the assistant's process group and no
  closed terminal reaches. At the deadline it takes the install lock (waiting while an apply still
  holds it) and rolls the transaction back unless it was confirmed;
* a **boot hook** (:func:`boot_hook_changes`: a systemd unit or an ``@reboot`` cron line, part of the
  same transaction, so the revert removes it) running ``dester-harden confirm --boot``: after a
  reboot (another boot id) a transaction still armed is reverted, whatever the clock says.

The journal's state is the truth, the record only the alarm: a crash between the two is resolved
toward the journal (a transaction the engine already marked ``applied`` is confirmed; one it
rolled back is reverted). ``python -m checks.firewall.confirm`` is the watcher's entry point.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from checks.change.plan import FileEdit, Link
from checks.change.statedir import STATE_ENV, journal_dir
from checks.change.trust import UntrustedJournal, read_checked, verify_journal
from checks.core.errors import EngineError

if TYPE_CHECKING:
    from checks.change.engine import Engine
    from checks.core.sysroot import SystemRoot

RECORD = "confirm.json"
LOG = "confirm.log"
ARMED, CONFIRMED, REVERTED = "armed", "confirmed", "reverted"
BOOT_ID = "/proc/sys/kernel/random/boot_id"
LEEWAY = 30.0
"""Seconds after the record's deadline within which the engine's own deadline of the same apply falls
(the apply starts right after arming): how an unattached record finds its transaction."""
POLL = 0.25
"""How often the watcher looks at the record (a confirm ends it early) and retries a held lock."""
UNIT = "dester-harden-revert.service"
CRON = "/etc/cron.d/dester-harden-revert"
MARK = "# dester-harden: reverts an unconfirmed firewall change after a reboot (docs/adr/0010)"


@dataclass(slots=True)
class Pending:
    """The pending record of one confirm-or-revert change."""

    id: str
    install: str
    armed_at: float
    deadline: float
    """Seconds since the epoch (wall clock: the watcher and every command judge it with ``time.time()``)."""
    seconds: float
    boot_id: str | None
    """The kernel's boot id when armed: another one means a reboot came first, so the change is expired."""
    state: str = ARMED
    txn: str | None = None
    result: str | None = None
    """One line: what the revert (or confirm) did."""
    watcher: str | None = None
    """How the revert is armed: ``process PID`` or ``systemd UNIT`` (for the user and the ADR's windows)."""

    def expired(self, now: float | None = None, boot: str | None = None) -> bool:
        """Past the deadline, or armed in another boot (a reboot counts as expired)."""
        if self.state != ARMED:
            return False
        boot = current_boot_id() if boot is None else boot
        if self.boot_id and boot and boot != self.boot_id:
            return True
        return (time.time() if now is None else now) >= self.deadline

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self.deadline - (time.time() if now is None else now))


def current_boot_id() -> str | None:
    """This boot's id (None where the kernel has none to give)."""
    try:
        with open(BOOT_ID, encoding="ascii") as fh:
            return fh.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def record_path(root: str) -> str:
    return os.path.join(journal_dir(root), RECORD)


def load(root: str) -> Pending | None:
    """The install's pending record, or None; :class:`UntrustedJournal` for one another user could write."""
    journal = journal_dir(root)
    if not verify_journal(journal):
        return None
    path = os.path.join(journal, RECORD)
    raw = read_checked(path)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("format") != 1:
            raise ValueError("format")
        data.pop("format")
        pending = Pending(**data)
        if pending.state not in (ARMED, CONFIRMED, REVERTED) or not isinstance(pending.deadline, (int, float)):
            raise ValueError("state")
    except (ValueError, TypeError):
        raise UntrustedJournal(path, "is not a pending confirmation dester-harden wrote") from None
    return pending


def _save(root: str, pending: Pending) -> None:
    from checks.core.atomic import write_private

    data = {"format": 1, **asdict(pending)}
    write_private(os.path.join(journal_dir(root), RECORD), json.dumps(data, indent=1).encode())


# -- the life of a record (the install lock held by the caller: Engine.locked) ----------------------


def arm(engine: Engine, seconds: float, *, host_root: str = "/", spawn: bool = True) -> Pending:
    """Record a change to confirm within ``seconds`` and start its watcher, before the engine applies it.

    Called with ``engine``'s lock held. Refuses while another change still waits for confirmation:
    one tentative change stacked on another could not be reverted alone.
    """
    root = engine.root
    old = load(root)
    if old is not None and old.state == ARMED and not _settled(engine, old):
        raise EngineError(f"transaction {old.txn or '(being applied)'} still waits for confirmation until "
                          f"{_when(old.deadline)}: run 'dester-harden confirm' first, or let it be reverted")
    now = time.time()
    pending = Pending(secrets.token_hex(4), root, now, now + seconds, seconds, current_boot_id())
    _save(root, pending)  # from here on, a crash is reverted at the deadline (or at the next boot)
    if spawn:
        try:
            pending.watcher = start_watcher(root, pending, host_root)
        except BaseException:
            disarm(root, pending, "the revert watcher could not be started; nothing was applied")
            raise
        _save(root, pending)
    return pending


def _settled(engine: Engine, old: Pending) -> bool:
    """An armed record whose transaction is no longer tentative (the run that applied it was killed and
    recovery rolled it back, or it was confirmed): recorded so, and no obstacle (lock held: no apply runs)."""
    from checks.change.engine import TENTATIVE

    txn = _txn(engine, old)
    if txn is not None and txn.state == TENTATIVE:
        return False
    confirmed = txn is not None and txn.state == "applied"
    old.state = CONFIRMED if confirmed else REVERTED
    old.result = (f"transaction {txn.id} had been confirmed" if confirmed and txn is not None
                  else "the run that applied it stopped; nothing of it is left")
    _save(engine.root, old)
    return True


def attach(root: str, pending: Pending, txn_id: str) -> Pending:
    """Record the tentative transaction the armed change became (lock held)."""
    pending.txn = txn_id
    _save(root, pending)
    return pending


def disarm(root: str, pending: Pending, why: str) -> None:
    """The apply failed and was rolled back by the engine: nothing waits for confirmation (lock held)."""
    pending.state, pending.result = REVERTED, why
    _save(root, pending)


def confirm(engine: Engine) -> Pending | None:
    """Confirm the armed change (lock held): the transaction becomes ``applied``. An expired one is
    reverted instead (never confirmed late); returns the record (None: nothing was ever armed)."""
    pending = load(engine.root)
    if pending is None or pending.state != ARMED:
        return pending
    if pending.expired():
        return _revert(engine, pending, _why_expired(pending))
    txn = _txn(engine, pending)
    if txn is None:
        pending.state, pending.result = REVERTED, "the change was not applied (the run that applied it stopped)"
    else:
        from checks.change.engine import TENTATIVE

        if txn.state == TENTATIVE:
            engine.confirm(txn.id)
        pending.state, pending.result = CONFIRMED, f"transaction {txn.id} confirmed"
        if txn.state == "rolled-back":
            pending.state, pending.result = REVERTED, f"transaction {txn.id} had already been rolled back"
    _save(engine.root, pending)
    return pending


def revert(engine: Engine, why: str = "not confirmed") -> Pending | None:
    """Revert the armed change now (lock held): the answer "no" at the countdown."""
    pending = load(engine.root)
    if pending is None or pending.state != ARMED:
        return pending
    return _revert(engine, pending, why)


def revert_if_expired(engine: Engine) -> Pending | None:
    """Revert the armed change when its deadline passed or a reboot came first (lock held); the record
    when it was reverted now, else None (a record of this boot before its deadline is left alone)."""
    pending = load(engine.root)
    if pending is None or not pending.expired():
        return None
    return _revert(engine, pending, _why_expired(pending))


def _why_expired(pending: Pending) -> str:
    boot = current_boot_id()
    if pending.boot_id and boot and boot != pending.boot_id:
        return "not confirmed before the machine rebooted"
    return f"not confirmed within {pending.seconds:g} s"


def _revert(engine: Engine, pending: Pending, why: str) -> Pending:
    """Roll the transaction back through the engine (its files, then the live rules through the plan's
    reload pair), then record the outcome. A killed revert is finished by the next one."""
    engine.recover()  # an apply killed midway: rolled back here first
    txn = _txn(engine, pending)
    if txn is None:
        result = "nothing had been applied"
    else:
        from checks.change.engine import TENTATIVE

        if txn.state == TENTATIVE:
            result = engine.revert(txn.id, why)
        elif txn.state == "applied":
            # The engine confirmed it and the record was not updated (a crash between the two): kept.
            pending.state, pending.result = CONFIRMED, f"transaction {txn.id} had been confirmed"
            _save(engine.root, pending)
            return pending
        else:
            result = f"transaction {txn.id} was rolled back, {why}"
    pending.state, pending.result = REVERTED, result
    _save(engine.root, pending)
    return pending


def _txn(engine: Engine, pending: Pending):  # type: ignore[no-untyped-def]  # -> Txn | None (journal import)
    """The record's transaction; unattached (killed between the commit and :func:`attach`): the tentative
    one whose engine deadline belongs to this arm."""
    from checks.change.engine import TENTATIVE
    from checks.change.journal import list_txns

    txns = list_txns(engine.root)
    if pending.txn:
        return next((t for t in txns if t.id == pending.txn), None)
    for t in txns:
        deadline = t.intent.get("deadline")
        if (t.state == TENTATIVE and isinstance(deadline, (int, float))
                and pending.armed_at <= deadline <= pending.armed_at + pending.seconds + LEEWAY):
            return t
    return None


def _when(epoch: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(epoch))


# -- the watcher ---------------------------------------------------------------------------------


def start_watcher(root: str, pending: Pending, host_root: str = "/") -> str:
    """Start what reverts ``pending`` at its deadline with nobody around; how it was armed (one line)."""
    argv = [sys.executable, "-m", "checks.firewall.confirm", "watch", "--dir", root, "--id", pending.id]
    if _systemd(host_root):
        # systemd is PID 1: a transient timer survives the session, the assistant and this process tree
        # by construction, and is listed by `systemctl list-timers`; the unit runs the same watcher.
        unit = f"dester-harden-revert-{pending.id}"
        env = [f"--setenv={k}={os.environ[k]}" for k in (STATE_ENV, "PYTHONPATH") if os.environ.get(k)]
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run(["systemd-run", "--quiet", f"--on-active={max(1, int(pending.seconds + 0.999))}",
                                   f"--unit={unit}", "--timer-property=AccuracySec=1s", *env, *argv],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
            if done.returncode == 0:
                return f"systemd {unit}.timer"
    return f"process {_detach(root, argv)}"


def _systemd(host_root: str) -> bool:
    # Only on the real system (a --root copy has no systemd of its own) and never in the tests, whose
    # journal is a private state directory ($DESTER_HARDEN_STATE_DIR, which sudo's env_reset drops).
    return (os.path.abspath(host_root) == "/" and os.path.isdir("/run/systemd/system")
            and not os.environ.get(STATE_ENV))


def _detach(root: str, argv: list[str]) -> int:
    """Double fork: an intermediate in a new session forks the watcher and exits, so the watcher is
    nobody's child here, leads no session (it can never get a controlling terminal), is in no process
    group of ours, and ignores SIGHUP. Its output goes to a 0600 log in the journal directory."""
    log_path = os.path.join(journal_dir(root), LOG)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    read, write = os.pipe()
    try:
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen([*argv[:3], "detach", *argv[4:], "--pid-fd", str(write)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=log, start_new_session=True, close_fds=True, pass_fds=(write,),
                                cwd="/", env=env)
        os.close(write)
        write = -1
        proc.wait(timeout=30)
        with os.fdopen(read, "rb") as fh:
            read = -1
            pid = fh.read().strip()
    finally:
        for fd in (read, write, log):
            if fd >= 0:
                os.close(fd)
    if proc.returncode != 0 or not pid.isdigit():
        raise EngineError("the revert watcher could not be started; nothing was changed")
    return int(pid)


def watch(root: str, pending_id: str) -> int:
    """The watcher: sleep until the deadline (polling the record, so a confirm ends it at once), then take
    the install lock (waiting while an apply holds it) and revert unless confirmed."""
    from checks.change.engine import Engine, LockedError

    while True:
        try:
            pending = load(root)
        except (UntrustedJournal, OSError) as exc:
            print(f"dester-harden watcher: {exc}", file=sys.stderr)
            return 1
        if pending is None or pending.id != pending_id or pending.state != ARMED:
            return 0
        if pending.expired():
            engine = Engine(root, "confirm-revert")
            try:
                with engine.locked():
                    done = revert_if_expired(engine)
            except LockedError:
                time.sleep(POLL)  # the apply (or a confirm) still runs: the record says what it did
                continue
            except (EngineError, UntrustedJournal, OSError) as exc:
                # Left armed: the next command's recovery tries again and tells the user why.
                print(f"dester-harden watcher: the revert failed: {' '.join(str(exc).split())}", file=sys.stderr)
                return 1
            if done is not None:
                print(f"dester-harden watcher: {done.result}", file=sys.stderr)
            return 0
        time.sleep(min(POLL, max(0.01, pending.remaining())))


def _main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m checks.firewall.confirm")
    parser.add_argument("mode", choices=("watch", "detach"))
    parser.add_argument("--dir", required=True)
    parser.add_argument("--id", required=True)
    parser.add_argument("--pid-fd", type=int, default=-1)
    args = parser.parse_args(argv)
    if args.mode == "detach":
        pid = os.fork()
        if pid:
            if args.pid_fd >= 0:
                os.write(args.pid_fd, str(pid).encode())
            os._exit(0)
        if args.pid_fd >= 0:
            os.close(args.pid_fd)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        with contextlib.suppress(OSError):
            fd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(fd, 0)
            os.close(fd)
    return watch(args.dir, args.id)


# -- the boot hook -------------------------------------------------------------------------------


def boot_hook_changes(sysroot: SystemRoot, install_root: str) -> list[FileEdit | Link]:
    """The changes that run ``dester-harden confirm --boot --dir INSTALL`` at the next boot, for the plan
    to journal with the firewall change (its revert or undo removes them again).

    Where systemd is installed (``/etc/systemd/system`` exists under ``sysroot``): a oneshot unit
    enabled by a ``multi-user.target.wants`` link; else ``/etc/cron.d/dester-harden-revert`` with an
    ``@reboot`` line. An existing hook of ours gains this installation's line; one already holding it
    needs no change. The directories to add to :attr:`Plan.system` are :func:`boot_hook_dirs`."""
    command = [sys.executable, "-m", "tui", "confirm", "--boot", "--dir", os.path.abspath(install_root)]
    units = sysroot.path("/etc/systemd/system")
    if os.path.isdir(units):
        path = os.path.join(units, UNIT)
        line = "ExecStart=-" + " ".join(_quoted(a) for a in command)
        head = (f"{MARK}\n[Unit]\nDescription=dester-harden: revert an unconfirmed firewall change after a reboot\n"
                "After=network-pre.target\nBefore=network-online.target\n\n[Service]\nType=oneshot\n")
        tail = "\n[Install]\nWantedBy=multi-user.target\n"
        changes: list[FileEdit | Link] = []
        before = _read(path)
        if before is None:
            changes.append(FileEdit(path, None, (head + line + "\n" + tail).encode(), 0o644, (0, 0)))
        elif line.encode() not in before.splitlines():
            changes.append(FileEdit(path, before, _add_line(before, line.encode(), b"[Install]")))
        wants = os.path.join(units, "multi-user.target.wants", UNIT)
        if not os.path.lexists(wants) and os.path.isdir(os.path.dirname(wants)):
            changes.append(Link(wants, f"../{UNIT}"))
        return changes
    cron = sysroot.path(CRON)
    if not os.path.isdir(os.path.dirname(cron)):
        return []  # neither: the wall-clock deadline is judged by the next dester-harden command
    line = "@reboot root " + " ".join(_quoted(a) for a in command)
    before = _read(cron)
    if before is None:
        return [FileEdit(cron, None, f"{MARK}\n{line}\n".encode(), 0o644, (0, 0))]
    if line.encode() in before.splitlines():
        return []
    return [FileEdit(cron, before, _add_line(before, line.encode(), None))]


def boot_hook_dirs(changes: list[FileEdit | Link]) -> list[str]:
    """The system directories :func:`boot_hook_changes`' changes lie in (for :attr:`Plan.system`)."""
    out: list[str] = []
    for c in changes:
        d = os.path.dirname(c.path)
        if os.path.basename(d) == "multi-user.target.wants":
            d = os.path.dirname(d)
        if d not in out:
            out.append(d)
    return out


def _add_line(before: bytes, line: bytes, above: bytes | None) -> bytes:
    lines = before.splitlines()
    if above is not None and above in lines:
        i = lines.index(above)
        while i > 0 and not lines[i - 1].strip():
            i -= 1
        lines.insert(i, line)
    else:
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def _quoted(arg: str) -> str:
    # systemd and cron both split on spaces; an install path with one is quoted (cron hands it to sh).
    return arg if arg and all(c.isalnum() or c in "/._-+=:@," for c in arg) else "'" + arg.replace("'", "'\\''") + "'"


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
