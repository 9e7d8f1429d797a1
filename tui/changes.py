"""The ``fix``, ``history``, ``undo``, ``confirm`` and ``reaudit`` commands: the CLI face of the use cases.

Each command asks :mod:`checks.assistant.usecases` for a plan, a preview or an
outcome, prints it and asks for confirmation; it never drives the engine itself.
SIGTERM while a change is applied or undone rolls it back like Ctrl+C does,
says so in one line, and exits 143 (Ctrl+C: 130).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from checks.assistant import usecases
from checks.core.errors import EngineError, InputError
from checks.core.textio import shown, shown_line
from checks.install.discovery import default_install_dir
from tui.output import mask_for_stdout

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the engine is, so that it rolls back as for Ctrl+C."""


def _err(msg: str) -> int:
    print(f"dester-harden: error: {shown_line(msg)}", file=sys.stderr)
    return EXIT_USAGE


def _root(args) -> str:
    root = usecases.install_root(args.dir or default_install_dir())
    if not os.path.isdir(root):
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", args.dir or root)
    return root


def recover(root: str, *, strict: bool = True) -> list[str]:
    """Roll back a transaction a killed run left half-applied; report it on stderr.

    ``strict`` (before a change): a failure is raised; otherwise it is a warning.
    """
    done = usecases.recover(root, strict=strict)
    for m in done.messages:
        print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
    if done.warning:
        print(f"dester-harden: warning: {shown_line(done.warning)}", file=sys.stderr)
    return list(done.messages)


@contextmanager
def _hangup_ignored():
    """Let a transaction finish when the SSH session drops mid-apply; roll it back on SIGTERM.

    SIGHUP would kill the process between two files (recovery would then roll
    the change back on the next run); ignoring it lets the engine commit.
    SIGTERM (a shutdown, ``kill``) is turned into :class:`Terminated` so the
    engine rolls back at once; a second one during the rollback is ignored.
    """
    def terminated(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, terminated)
    except (ValueError, AttributeError):  # not the main thread, or no SIGHUP
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, previous)
        signal.signal(signal.SIGTERM, previous_term)


def _confirm(question: str, yes: bool) -> bool | None:
    """True/False from the user; None when there is no terminal to ask on."""
    if yes:
        return True
    if not sys.stdin.isatty():
        return None
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _mask_char() -> str:
    return mask_for_stdout("text")


def run(args) -> int:
    try:
        if args.command == "fix":
            return _fix(args)
        if args.command == "history":
            return _history(args)
        if args.command == "confirm":
            return _confirm_cmd(args)
        if args.command == "reaudit":
            from tui.reaudit import reaudit

            return reaudit(args)
        return _undo(args)
    except Terminated:
        print("dester-harden: terminated (SIGTERM); the change in progress, if any, was rolled back: "
              "the files are as before it", file=sys.stderr)
        return EXIT_TERMINATED
    except EngineError as exc:  # LockedError, StaleError...: one line, nothing (more) changed
        return _err(str(exc))
    except OSError as exc:
        # The journal or a file could not be written before any change began
        # (the engine reports failures of a started transaction itself, as an
        # EngineError): unwritable (not run as the owner or with sudo), a full
        # disk, a file where the journal goes. Names the path and the reason,
        # never file content.
        where = exc.filename or ""
        hint = ("; run dester-harden as the installation's owner or with sudo"
                if isinstance(exc, PermissionError) else "")
        return _err(f"{where + ': ' if where else ''}{exc.strerror or exc}{hint}; nothing more was changed")


def _fix(args) -> int:
    from checks.audit.run import exit_code
    from checks.change.plan import TreeChmod
    from checks.change.preview import list_tree, render
    from checks.fix.planner import PlanError

    root = _root(args)
    choice = _front_door(args, root)  # bad input is refused before anything (recovery included) writes
    tls_wanted = sorted(TLS_CHECKS & args.only) if args.only else []
    if choice is None and tls_wanted:
        return _err(_needs_domain(tls_wanted[0]))
    recover(root)
    files_only = getattr(args, "files_only", False)
    live = None if files_only else _live_state(root)
    try:
        planned = usecases.plan(root, args.profile, only=args.only, files=args.file, host_root=args.host_root,
                                live=live, files_only=files_only,
                                health_timeout=getattr(args, "health_timeout", 120.0), front_door=choice)
    except PlanError as exc:
        return _err(str(exc))
    plan = planned.plan
    if plan.revert_after is not None and getattr(args, "confirm_timeout", None) is not None:
        plan.revert_after = args.confirm_timeout
    sys.stdout.write(render(plan, root, reveal=args.reveal, mask=_mask_char()))
    if plan.revert_after is not None and not plan.empty:
        print(f"\nOn trial: unless confirmed within {plan.revert_after:g} s (dester-harden confirm, or at the prompt), "
              "this change is reverted by itself, even if the session is gone or the machine reboots.")
    if args.list:
        for tree in (c for c in plan.changes if isinstance(c, TreeChmod)):
            for line in list_tree(tree):
                print(line)
    if choice is None:
        _say_tls_needs_domain(planned, plan)
    if plan.empty:
        return exit_code(planned.before, args.fail_on)
    if args.dry_run:
        print(f"\nDry run: nothing was changed. Score now {planned.score_before}/100, after these changes "
              f"{planned.score_after}/100 (media modes not counted).")
        return exit_code(planned.after, args.fail_on)
    ok = _confirm("Apply these changes?", args.yes)
    if ok is None:
        return _err("refusing to change files without --yes when not on a terminal "
                    "(see the plan above, or use --dry-run)")
    if ok:
        ok = _questions(plan.confirm, args.yes)
    if not ok:
        print("Nothing was changed.")
        return EXIT_OK
    done = usecases.apply(root, plan, command="fix", profile=args.profile, files=args.file,
                          host_root=args.host_root, guard=_hangup_ignored, report=_Progress(),
                          front_door=choice)  # recorded in the settings once it is installed
    if done.reverted is not None:
        return _reverted(done.reverted)
    print(f"\nApplied as transaction {done.txn_id} (undo: dester-harden undo {_undo_hint(args)}{done.txn_id}).")
    if choice is not None and plan.shown_secrets:
        _show_login(choice, plan.shown_secrets)
    for r in done.recreated:
        print(shown(r.text()))
    for n in done.notices:
        print(shown(n.text))
    _warn_baseline(done)
    if done.report is None:
        return _err(done.audit_error or "the files do not parse after the change")
    print(f"Score: {planned.score_before}/100 -> {done.report.score}/100")
    if done.trial is not None and not _kept(root, done.trial, args.yes):
        return exit_code(planned.before, args.fail_on)
    return exit_code(done.report, args.fail_on)


def _kept(root: str, trial: usecases.Pending, yes: bool) -> bool:
    """A change on trial: say until when it must be confirmed; on a terminal without ``--yes`` wait like
    ``netplan try`` (Enter or y keeps it; anything else, end of input or the end of the countdown reverts it
    at once). False when it was reverted here. With ``--yes`` (or no terminal) the watcher decides."""
    import time

    when = time.strftime("%H:%M:%S", time.localtime(trial.deadline))
    print(f"On trial until {when}: run `dester-harden confirm{_dir_hint(root)}` within {trial.seconds:g} s or it is "
          "reverted by itself (even if this session is gone).")
    if yes or not sys.stdin.isatty():
        return True
    try:
        answer = _countdown(trial)
    except KeyboardInterrupt:  # Ctrl+C at the countdown: "no", as netplan try takes it
        print()
        answer = "interrupted"
    if answer is not None and answer.strip().lower() in ("", "y", "yes"):
        done = usecases.confirm(root)
        print(shown_line(done.message))
        return done.outcome is not usecases.Outcome.TOO_LATE
    why = "not confirmed within the countdown" if answer is None else "not confirmed at the prompt"
    reverted = usecases.revert_now(root, why)
    print(shown_line(f"Reverted: {reverted.result if reverted else 'nothing was on trial any more'}."))
    return False


def _countdown(trial: usecases.Pending) -> str | None:
    """The line typed before the deadline (None: the countdown ran out, or the input ended)."""
    import select

    tty = _stdout_tty()
    while True:
        left = trial.remaining()
        if left <= 0:
            if tty:
                print()
            return None
        if tty:
            print(f"\rKeep this change? Enter or y keeps it, anything else reverts it now ({left:3.0f} s) ",
                  end="", flush=True)
        ready, _, _ = select.select([sys.stdin], [], [], min(1.0, left))
        if ready:
            line = sys.stdin.readline()
            return line if line else None


def _dir_hint(root: str) -> str:
    from checks.install.discovery import default_install_dir

    same = usecases.install_root(default_install_dir()) == root
    return "" if same else f" --dir {shown_line(root)}"


def _confirm_cmd(args) -> int:
    """``dester-harden confirm``: keep the change on trial; ``--boot`` (the boot hook): revert one left from
    before a reboot. Too late: exit 1, nothing on trial: exit 0."""
    root = _root(args)
    if args.boot:
        done = usecases.revert_expired(root, wait=True)
        if done is not None:
            print(shown_line(f"Reverted the change that waited for confirmation: {done.result}."))
        return EXIT_OK
    if not usecases.has_journal(root):
        print("Nothing waits for confirmation.")
        return EXIT_OK
    found = usecases.confirm(root)
    print(shown_line(found.message))
    return EXIT_FINDINGS if found.outcome is usecases.Outcome.TOO_LATE else EXIT_OK


#: The checks a front door fixes (the TLS step's): they need a domain.
TLS_CHECKS = frozenset({"TLS-001", "TLS-002", "TLS-003"})


def _needs_domain(check: str) -> str:
    return f"{check} needs a domain: dester-harden fix --domain D --proxy caddy"


def _undo_hint(args) -> str:
    """``--root DIR `` when the change was made under one: its undo needs the same root."""
    root = getattr(args, "host_root", "/")
    return "" if root == "/" else f"--root {shown_line(root)} "


def _front_door(args, root: str):
    """The front door asked for: ``--domain`` (checked: one line, exit 2) with ``--proxy`` (else the saved
    server, else the preselected one), or the saved choice; None when there is neither."""
    domain, proxy, opened = getattr(args, "domain", None), getattr(args, "proxy", None), getattr(args, "open", None)
    if domain is None and proxy is None and opened is None:
        if args.only and not (TLS_CHECKS & args.only):
            return None  # no TLS fix asked for: nothing to look up
        if args.only is None and args.profile != "internet":
            return None  # the TLS checks apply to the internet profile only
    from checks.assistant import frontdoor
    from checks.proxy.generate import validate_domain
    from checks.proxy.model import Choice

    if domain is not None:
        domain = validate_domain(domain)  # InputError: one line, exit 2
    saved = None
    if domain is None or proxy is None:
        found = frontdoor.options(root, host_root=args.host_root)
        saved = found.saved
        if domain is None:
            if saved is None:
                if proxy is not None or opened is not None:
                    raise InputError("--proxy and --open need --domain D (no front door is saved yet)")
                return None
            domain = saved.domain
        proxy = proxy or (saved.server if saved is not None else found.preselected)
    if opened is None:
        opened = saved.open_paths if saved is not None and saved.domain == domain else frozenset()
    return Choice(domain, proxy, frozenset(opened))


def _say_tls_needs_domain(planned: usecases.Planned, plan) -> None:
    """Failing TLS checks the plan does not fix (no domain): the one command that would."""
    refused = {r.check for r in plan.refusals}
    for f in planned.before.findings:
        if f.id in TLS_CHECKS and f.status == "fail" and f.id not in plan.checks and f.id not in refused:
            print(f"Note: {_needs_domain(f.id)}")
            return


def _show_login(choice, shown_secrets: dict[str, str]) -> None:
    """After the front door is installed: keep its new login and show the password once, on a terminal
    only (never into a pipe or a log). ``usecases.apply`` has recorded the choice in the settings."""
    from checks.assistant import frontdoor
    from checks.proxy.generate import LOGIN_USER

    for password in shown_secrets.values():
        try:
            kept = frontdoor.keep_password(choice, password)
        except (OSError, InputError) as exc:
            print(f"dester-harden: warning: the proxy login was not kept ({shown_line(str(exc))})", file=sys.stderr)
            where = ("nowhere: write it down now" if _stdout_tty()
                     else "nowhere: undo this transaction and fix again for a new login")
        else:
            where = shown_line(kept.where)
        if _stdout_tty():
            print(f"Proxy login: {LOGIN_USER} / {password}  (shown once; kept in {where})")
        else:
            print(f"Proxy login: {LOGIN_USER} / (the password is not printed where stdout is not a terminal; "
                  f"kept in {where})")


def _stdout_tty() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _live_state(root: str):
    """What runs now (None when the live layer is off: files only)."""
    return usecases.live_state(root)


def _questions(questions: list[str], yes: bool) -> bool:
    """Each of the plan's questions answered yes (``--yes`` answers them all); False at the first no."""
    for q in questions:
        ok = _confirm(shown_line(q), yes)
        if not ok:
            return False
    return True


class _Progress:
    """The engine's reporter on the command line: one line each time the step changes, with the time so far."""

    def __init__(self) -> None:
        self.last = ""

    def __call__(self, what: str, elapsed: float | None) -> None:
        if what != self.last:
            self.last = what
            print(shown_line(what) + (f" ({elapsed:.1f} s)" if elapsed else "") + "...", flush=True)


def _reverted(reverted: usecases.Reverted) -> int:
    """A failed health gate: what happened and the last log lines (masked), nothing left changed."""
    print(f"dester-harden: error: {shown_line(reverted.message)}", file=sys.stderr)
    for line in reverted.last_logs:
        print(f"    {shown_line(line)}", file=sys.stderr)
    return EXIT_USAGE


def _warn_baseline(done: usecases.Applied) -> None:
    """A baseline not saved is a warning: the change itself is done and journaled."""
    if done.baseline_error and done.report is not None:
        print("dester-harden: warning: the baseline for the re-audit was not saved "
              f"({shown_line(done.baseline_error)})", file=sys.stderr)


def _history(args) -> int:
    root = _root(args)
    done = usecases.recover(root)
    for m in done.messages:
        print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
    found = usecases.history(root)
    warning = done.warning or found.warning  # the same journal: said once
    if warning:
        # Only reading, as the audit: say why the journal is not shown, and show nothing of it.
        print(f"dester-harden: warning: {shown_line(warning)}", file=sys.stderr)
    if not found.txns:
        print("No transactions yet: 'dester-harden fix' records each change here.")
        return EXIT_OK
    for t in found.txns:
        when = t.when.strftime("%Y-%m-%d %H:%M:%S") if t.when else t.id[:15]
        state = f"undone by {t.undone_by}" if t.undone_by else t.state
        what = ", ".join(t.checks) if t.kind == "fix" else f"undo of {t.undoes}"
        print(shown(f"{t.id}  {when}  {t.kind:<4}  {state}"))
        print(f"    {shown(what)}")
        if t.files:
            print("    files: " + ", ".join(shown(f) for f in t.files))
        for tr in t.media:
            print(f"    media: {shown(os.path.join(root, tr))}")
    return EXIT_OK


def _undo(args) -> int:
    from checks.change.plan import FileEdit
    from checks.change.preview import file_diff, render
    from checks.core.secrets import Masker

    if args.last and args.txn is not None:
        return _err("give a transaction id or --last, not both")
    root = _root(args)
    if not usecases.has_journal(root):
        # Not even a journal: say so without creating one.
        return _err("nothing to undo: no applied transaction in this installation's journal")
    if args.resolved:
        txn_id = usecases.mark_resolved(root, args.resolved)
        print(f"Recorded: transaction {txn_id} was put back by hand; it is no longer rolled back.")
        return EXIT_OK
    files_only = getattr(args, "files_only", False)
    trial = usecases.pending_confirmation(root)
    if trial is not None and trial.state == "armed" and (
            args.txn is None or (trial.txn is not None and (trial.txn == args.txn or (
                len(args.txn) >= 6 and trial.txn.endswith(args.txn))))):
        # On trial, the change is not applied for good yet: taking it back is the revert the countdown
        # would do (the last *applied* transaction is an older one, which the user did not mean).
        reverted = usecases.revert_now(root, "reverted with dester-harden undo")
        what = reverted.txn if reverted is not None and reverted.txn else "the change on trial"
        print(shown(f"Reverted {what}, which was waiting for confirmation: "
                    f"{reverted.result if reverted else 'done'}"))
        return EXIT_OK
    preview = usecases.undo_preview(root, args.txn, files_only=files_only)
    for m in preview.recovered:
        print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
    print(shown(f"Undo of transaction {preview.txn_id} ({', '.join(preview.checks) or 'no checks'}):"))
    if preview.conflicts:
        masker = None if args.reveal else Masker(preview.plan.secrets, _mask_char())
        print("\nEdited since the transaction (undo would overwrite these changes):")
        for c in preview.conflicts:
            if c.kind is usecases.ConflictKind.MODE_CHANGED:
                print(f"  {shown(c.path)}: mode changed since")
                continue
            print(f"  {shown(c.path)}:")
            for line in file_diff(FileEdit(c.path, c.expected, c.current or b""), root, masker):
                print("    " + line)
        if not args.force:
            return _err("files were edited since the transaction; undo refused (use --force to overwrite them)")
    sys.stdout.write(render(preview.plan, root, reveal=args.reveal, mask=_mask_char()))
    if args.dry_run:
        print("\nDry run: nothing was changed.")
        return EXIT_OK
    ok = _confirm("Undo these changes?", args.yes)
    if ok is None:
        return _err("refusing to change files without --yes when not on a terminal (or use --dry-run)")
    if ok:
        ok = _questions(preview.plan.confirm, args.yes)
    if not ok:
        print("Nothing was changed.")
        return EXIT_OK
    done = usecases.undo(root, preview, force=args.force, guard=_hangup_ignored, report=_Progress(),
                         files_only=files_only, host_root=args.host_root)
    if done.reverted is not None:
        return _reverted(done.reverted)
    print(f"Undone: transaction {preview.txn_id} (recorded as {done.txn_id}).")
    for r in done.recreated:
        print(shown(r.text()))
    _warn_baseline(done)  # files that do not parse after the undo: the next audit says so
    return EXIT_OK
