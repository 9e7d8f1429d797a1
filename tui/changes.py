"""The ``fix``, ``history`` and ``undo`` commands: the CLI face of the change engine.

SIGTERM while a change is applied or undone rolls it back like Ctrl+C does,
says so in one line, and exits 143 (Ctrl+C: 130).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager

from checks.change.engine import Engine, EngineError, LockedError
from checks.core.errors import InputError
from checks.core.textio import shown, shown_line
from checks.install.discovery import default_install_dir

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2
EXIT_TERMINATED = 143  # 128 + SIGTERM, as a shell reports a process killed by it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the engine is, so that it rolls back as for Ctrl+C."""


def _err(msg: str) -> int:
    print(f"dester-harden: error: {shown_line(msg)}", file=sys.stderr)
    return EXIT_USAGE


def _root(args) -> str:
    root = os.path.abspath(os.path.expanduser(args.dir or default_install_dir()))
    if not os.path.isdir(root):
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", args.dir or root)
    return root


def recover(root: str, wait: bool = False) -> list[str]:
    """Roll back a transaction a killed run left half-applied; report it on stderr."""
    from checks.change.engine import recover_install

    messages = recover_install(root)
    for m in messages:
        print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
    return messages


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
    from tui.cli import _mask_for_stdout

    return _mask_for_stdout("text")


def run(args) -> int:
    try:
        if args.command == "fix":
            return _fix(args)
        if args.command == "history":
            return _history(args)
        return _undo(args)
    except Terminated:
        print("dester-harden: terminated (SIGTERM); the change in progress, if any, was rolled back: "
              "the files are as before it", file=sys.stderr)
        return EXIT_TERMINATED
    except LockedError as exc:
        return _err(str(exc))
    except EngineError as exc:
        return _err(str(exc))
    except OSError as exc:
        # The journal or a file could not be written before any change began
        # (the engine reports failures of a started transaction itself, as an
        # EngineError): unwritable (not run as the owner or with sudo), a full
        # disk, a file where the journal goes. Names the path and the reason,
        # never file content.
        where = exc.filename or ""
        hint = "; run dester-harden as the installation's owner or with sudo" if isinstance(exc, PermissionError) else ""
        return _err(f"{where + ': ' if where else ''}{exc.strerror or exc}{hint}; nothing more was changed")


def _fix(args) -> int:
    from checks.audit.run import exit_code, run_audit
    from checks.change.plan import TreeChmod
    from checks.change.preview import list_tree, render
    from checks.fix.planner import PlanError, plan_fixes
    from checks.install.discovery import discover

    root = _root(args)
    recover(root)
    try:
        plan, planner = plan_fixes(root, args.profile, only=args.only, files=args.file, host_root=args.host_root)
    except PlanError as exc:
        return _err(str(exc))
    before = planner.base_report.score
    sys.stdout.write(render(plan, root, reveal=args.reveal, mask=_mask_char()))
    if args.list:
        for tree in (c for c in plan.changes if isinstance(c, TreeChmod)):
            for line in list_tree(tree):
                print(line)
    if plan.empty:
        return exit_code(planner.base_report, args.fail_on)
    if args.dry_run:
        print(f"\nDry run: nothing was changed. Score now {before}/100, after these changes "
              f"{getattr(planner, 'final_report', planner.base_report).score}/100 (media modes not counted).")
        return exit_code(getattr(planner, "final_report", planner.base_report), args.fail_on)
    ok = _confirm("Apply these changes?", args.yes)
    if ok is None:
        return _err("refusing to change files without --yes when not on a terminal (see the plan above, or use --dry-run)")
    if not ok:
        print("Nothing was changed.")
        return EXIT_OK
    engine = Engine(root, "fix")
    with _hangup_ignored():
        result = engine.apply(plan)
    report = run_audit(discover(root, files=args.file, host_root=args.host_root), args.profile)
    _save_baseline(root, report, args.profile, result.txn.id)
    print(f"\nApplied as transaction {result.txn.id} (undo: dester-harden undo {result.txn.id}).")
    if result.secret_store == "keyring":
        print(f"The old secrets needed to undo it are in {shown(result.secret_where)}.")
    elif result.secret_store:
        print(f"No keyring is available: the old secrets needed to undo it are in {shown(result.secret_where)}.")
    if result.tree_skipped:
        print(f"Media entries left alone (changed or unreadable during the walk): {len(result.tree_skipped)}")
    if result.tree_mounts:
        print(f"Mount points inside the media library, not entered (another filesystem): {len(result.tree_mounts)}")
    print(f"Score: {before}/100 -> {report.score}/100")
    return exit_code(report, args.fail_on)


def _history(args) -> int:
    from checks.change.journal import history
    from checks.change.trust import UntrustedJournal

    root = _root(args)
    try:
        recover(root)
        txns = history(root)
    except UntrustedJournal as exc:
        # Only reading, as the audit: say why the journal is not shown, and show nothing of it.
        print(f"dester-harden: warning: {' '.join(str(exc).split())}", file=sys.stderr)
        txns = []
    if not txns:
        print("No transactions yet: 'dester-harden fix' records each change here.")
        return EXIT_OK
    for t in txns:
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
    from checks.change.preview import file_diff, render
    from checks.core.secrets import Masker

    if args.last and args.txn is not None:
        return _err("give a transaction id or --last, not both")
    root = _root(args)
    from checks.change.statedir import journal_dir
    from checks.change.trust import verify_journal

    if not verify_journal(journal_dir(root)):
        # Not even a journal: say so without creating one.
        return _err("nothing to undo: no applied transaction in this installation's journal")
    engine = Engine(root, "undo")
    if args.resolved:
        with engine.locked():
            txn = engine.resolve(args.resolved)
        print(f"Recorded: transaction {txn.id} was put back by hand; it is no longer rolled back.")
        return EXIT_OK
    with engine.locked():
        for m in engine.recover():
            print(f"dester-harden: {shown_line(m)}", file=sys.stderr)
        txn = engine.find(None if args.txn is None else args.txn)
        plan, conflicts = engine.undo_plan(txn)
        print(shown(f"Undo of transaction {txn.id} ({', '.join(txn.intent.get('checks', [])) or 'no checks'}):"))
        if conflicts:
            masker = None if args.reveal else Masker(plan.secrets, _mask_char())
            print("\nEdited since the transaction (undo would overwrite these changes):")
            from checks.change.plan import FileEdit

            for c in conflicts:
                if c.expected is None and c.current is None:
                    print(f"  {shown(c.path)}: mode changed since")
                    continue
                print(f"  {shown(c.path)}:")
                for line in file_diff(FileEdit(c.path, c.expected, c.current), root, masker):
                    print("    " + line)
            if not args.force:
                return _err("files were edited since the transaction; undo refused (use --force to overwrite them)")
        sys.stdout.write(render(plan, root, reveal=args.reveal, mask=_mask_char()))
        if args.dry_run:
            print("\nDry run: nothing was changed.")
            return EXIT_OK
        ok = _confirm("Undo these changes?", args.yes)
        if ok is None:
            return _err("refusing to change files without --yes when not on a terminal (or use --dry-run)")
        if not ok:
            print("Nothing was changed.")
            return EXIT_OK
        with _hangup_ignored():
            result = engine.apply(plan, kind="undo", undoes=txn.id)
    print(f"Undone: transaction {txn.id} (recorded as {result.txn.id}).")
    from checks.assistant.session import load_baseline
    from checks.audit.run import run_audit
    from checks.install.discovery import discover

    base = load_baseline(root)
    profile = base.profile if base else "local"
    try:
        report = run_audit(discover(root), profile)
    except InputError:
        return EXIT_OK  # the undo is done; the files it put back do not parse (the next audit says so)
    _save_baseline(root, report, profile, result.txn.id)
    return EXIT_OK


def _save_baseline(root: str, report, profile: str, txn_id: str) -> None:
    """The baseline after every applied change or undo, as the assistant saves it: the next
    `dester-harden` opens the re-audit of what drifted since. A failure to save it is a warning:
    the change itself is done and journaled."""
    from checks.assistant.session import save_baseline

    try:
        save_baseline(root, report, profile, txn_id)
    except (OSError, InputError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"dester-harden: warning: the baseline for the re-audit was not saved ({shown_line(reason)})",
              file=sys.stderr)
