"""The ``dester-harden`` command line.

Kept free of heavy imports: ``dester-harden audit`` must start in a few tens of
milliseconds (benchmarks/audit_speed.py), so textual and docker are never
imported on this path.
"""

from __future__ import annotations

import argparse
import os
import sys

from checks import __version__
from tui.output import COLOR_SYSTEMS, add_root_option
from tui.output import mask_for_stdout as _mask_for_stdout

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def _seconds(text: str) -> float:
    """``--health-timeout``: a number of seconds from 1 to 3600."""
    if not (text.replace(".", "", 1).isdigit() and 1 <= float(text) <= 3600):
        raise argparse.ArgumentTypeError(f"not a number of seconds from 1 to 3600: {text!r}")
    return float(text)


def _confirm_seconds(text: str) -> float:
    """``--confirm-timeout``: 1 to 3600 seconds; 0 (never revert) is refused: a firewall change over SSH
    that could lock the session out is always confirmed or taken back (docs/adr/0010)."""
    if not (text.replace(".", "", 1).isdigit() and 1 <= float(text) <= 3600):
        raise argparse.ArgumentTypeError(f"not a number of seconds from 1 to 3600: {text!r} (a change on trial is "
                                         "always confirmed or reverted: there is no 'never')")
    return float(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from checks.core.textio import shown_line

        # The message can quote an argument as given: `audit $'\e[2J'`.
        self.exit(EXIT_USAGE, f"{self.prog}: error: {shown_line(message)} (see --help)\n")


def _ids(text: str) -> set[str]:
    from checks.audit.catalog import BY_ID

    ids = {t.strip().upper() for t in text.split(",") if t.strip()}
    unknown = sorted(ids - set(BY_ID))
    if unknown:
        raise argparse.ArgumentTypeError("unknown check id " + ", ".join(unknown)
                                         + " (dester-harden explain lists them)")
    return ids


def _open_paths(text: str) -> frozenset[str]:
    """``--open logs,settings,docs``: keys of the protected paths (checks.proxy.model.PROTECTED)."""
    from checks.proxy.model import PROTECTED

    keys = {t.strip().lower() for t in text.split(",") if t.strip()}
    unknown = sorted(keys - set(PROTECTED))
    if unknown:
        raise argparse.ArgumentTypeError("unknown path " + ", ".join(unknown) + " (one of: " + ", ".join(PROTECTED)
                                         + ")")
    return frozenset(keys)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dester-harden",
        description="Audit and harden a self-hosted DesterLib installation.",
        epilog="Run 'dester-harden audit' for a report, 'dester-harden demo' to try it on a bundled insecure install.",
    )
    parser.add_argument("--version", action="version", version=f"dester-harden {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def audit_options(p: argparse.ArgumentParser, with_dir: bool = True) -> None:
        if with_dir:
            p.add_argument("--dir", metavar="D",
                           help="the DesterLib install directory (default: $DESTERLIB_DIR, else ~/.desterlib)")
            p.add_argument("-f", "--file", metavar="FILE", action="append",
                           help="compose file to read instead of discovering them (repeatable, like docker "
                                "compose -f); "
                                "fix changes a file named here even outside --dir (the plan says so), and never "
                                "any other file outside --dir")
        p.add_argument("--profile", choices=("local", "tailscale", "internet"), default=None,
                       help="exposure profile: local (LAN only), tailscale, internet (behind HTTPS); default: the "
                            "settings file's (dester-harden settings), else local")
        p.add_argument("--format", choices=("text", "json", "sarif"), default="text",
                       help="output format (default: text)")
        p.add_argument("--fail-on", choices=("critical", "high", "medium", "low", "never"), default="high",
                       help="exit 1 when a check fails at or above this severity (default: high)")
        p.add_argument("--only", type=_ids, metavar="ID,...", help="run only these checks")
        p.add_argument("--skip", type=_ids, metavar="ID,...",
                       help="do not run these checks (e.g. FS-005 on a huge library)")
        add_root_option(p)

    audit = sub.add_parser("audit", help="report every exposure, ranked, with why and how to fix it",
                           description="Audit the installation from its files. Exit 0 when nothing fails at or above "
                                       "--fail-on, 1 when something does, 2 for usage or input errors.")
    audit_options(audit)
    audit.add_argument("--no-live", action="store_true",
                       help="judge the files only: do not read the Docker Engine, /proc/net nor the API's endpoints "
                            "(the live checks say skipped; also DESTER_HARDEN_NO_LIVE=1)")

    explain = sub.add_parser("explain", help="explain a check (ID) or the score (--score)")
    explain.add_argument("id", nargs="?", metavar="ID", help="a check id such as NET-001")
    explain.add_argument("--score", action="store_true", help="explain how the score is computed")
    add_root_option(explain)  # accepted as on every command; explain reads no system path

    fix = sub.add_parser("fix", help="preview, then apply, the fixes for what the audit found (undo with 'undo')",
                         description="Plan the fixes, show every change (diffs with secrets masked, modes, media "
                                     "counts), then apply them all or nothing, journaled for undo. Exit codes as for "
                                     "audit, judged on the result.")
    audit_options(fix)
    mode = fix.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", help="only show the plan")
    mode.add_argument("--yes", action="store_true", help="apply without asking (needed when not on a terminal); "
                      "also answers yes to the plan's questions (recreating the API without a recent backup)")
    fix.add_argument("--reveal", action="store_true", help="show secret values in the preview instead of masking them")
    fix.add_argument("--list", action="store_true", help="with --dry-run: list every media entry FS-005 would change")
    fix.add_argument("--health-timeout", type=_seconds, default=120.0, metavar="SECONDS", help="seconds recreated "
                     "services get to become healthy before the change is taken back by itself (default 120)")
    fix.add_argument("--files-only", action="store_true", help="change the files only, recreate no running service")
    fix.add_argument("--confirm-timeout", type=_confirm_seconds, default=None, metavar="SECONDS",
                     help="a firewall change is on trial: confirm it within SECONDS (default 60; 1 to 3600) with "
                          "'dester-harden confirm' or at the prompt, else it is reverted by itself, even with the "
                          "session gone or after a reboot")
    fix.add_argument("--domain", metavar="D", help="set up HTTPS with a login for this domain (TLS-001, TLS-002, "
                     "TLS-003): a Caddy or nginx front door, validated before it is installed; default: the one "
                     "saved by the last such fix")
    fix.add_argument("--proxy", choices=("caddy", "nginx"), default=None,
                     help="the front door's server (default: the saved one, else Caddy when installed)")
    fix.add_argument("--open", type=_open_paths, metavar="PATH,...", default=None,
                     help="serve these API paths behind the login too (refused from outside by default): "
                          "logs (/api/v1/logs), settings (/api/v1/settings: the TMDB key), docs (/api/docs: "
                          "the Swagger UI that drives the whole API)")

    history = sub.add_parser("history", help="list the transactions in this installation's undo journal")
    history.add_argument("--dir", metavar="D", help="the DesterLib install directory")
    add_root_option(history)

    undo = sub.add_parser("undo", help="take back a transaction (the last one by default)")
    undo.add_argument("txn", nargs="?", metavar="TXN", help="a transaction id from 'history' (default: the last)")
    undo.add_argument("--last", action="store_true", help="the last applied transaction (the default)")
    undo.add_argument("--dir", metavar="D", help="the DesterLib install directory")
    add_root_option(undo)
    undo.add_argument("--force", action="store_true", help="undo even files edited by hand since the transaction")
    umode = undo.add_mutually_exclusive_group()
    umode.add_argument("--dry-run", action="store_true", help="only show what undo would change")
    umode.add_argument("--yes", action="store_true", help="undo without asking (needed when not on a terminal)")
    undo.add_argument("--reveal", action="store_true", help="show secret values in the preview")
    undo.add_argument("--files-only", action="store_true", help="put the files back only, recreate no service")
    undo.add_argument("--resolved", metavar="TXN",
                      help="record that an interrupted transaction whose secrets are gone was put back by hand")

    confirm = sub.add_parser("confirm", help="keep a firewall change that is on trial (else it is reverted)",
                             description="Confirm the change applied on trial by 'fix' (a firewall step): it stays. "
                                         "Too late (its deadline passed, or the machine rebooted since): it was "
                                         "reverted, exit 1. Nothing on trial: exit 0.")
    confirm.add_argument("--dir", metavar="D", help="the DesterLib install directory")
    add_root_option(confirm)
    confirm.add_argument("--boot", action="store_true", help="(the boot hook) revert a change still on trial from "
                         "before a reboot, and nothing else")

    reaudit = sub.add_parser(
        "reaudit", help="what drifted since the last hardening (for cron): regressed, new, fixed",
        description="Audit the installation and compare it with the baseline saved by the last applied change or "
                    "undo (dester-harden fix, undo, or the assistant). Exit 0 when nothing regressed or fails "
                    "somewhere new at or above --fail-on, 1 when something did, 2 when there is no baseline yet "
                    "(nothing was applied here) or for usage and input errors.")
    reaudit.add_argument("--dir", metavar="D",
                         help="the DesterLib install directory (default: $DESTERLIB_DIR, else ~/.desterlib)")
    reaudit.add_argument("-f", "--file", metavar="FILE", action="append", help="compose file to read (repeatable)")
    reaudit.add_argument("--profile", choices=("local", "tailscale", "internet"), default=None,
                         help="exposure profile (default: the one of the last hardening)")
    reaudit.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    reaudit.add_argument("--fail-on", choices=("critical", "high", "medium", "low", "never"), default="high",
                         help="exit 1 when a check regressed at or above this severity (default: high)")
    add_root_option(reaudit)

    def terminal_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--color-system", choices=COLOR_SYSTEMS, default=None,
                       help="colours to draw with: auto (default), 16, 256, truecolor, or none (as NO_COLOR); "
                            "for sudo, which drops NO_COLOR and TEXTUAL_* variables")
        p.add_argument("--theme", metavar="NAME", default=None,
                       help="a Textual theme, e.g. textual-dark, textual-light, nord, gruvbox, textual-ansi")

    assistant = sub.add_parser("assistant", help="the guided assistant in the terminal (the default on a terminal)",
                               description="Walk through hardening screen by screen: network exposure, database "
                                           "password, permissions, containers, TLS, firewall; every change previewed "
                                           "and undoable. On later runs: what drifted since the last hardening.")
    assistant.add_argument("--dir", metavar="D",
                           help="the DesterLib install directory (default: $DESTERLIB_DIR, else ~/.desterlib)")
    assistant.add_argument("-f", "--file", metavar="FILE", action="append", help="compose file to read (repeatable)")
    assistant.add_argument("--profile", choices=("local", "tailscale", "internet"), default=None,
                           help="start with this exposure profile (default: the last one chosen, else local)")
    add_root_option(assistant)
    terminal_options(assistant)

    demo = sub.add_parser("demo",
                          help="try it on a bundled, deliberately insecure installation in a temporary directory",
                          description="Copy a deliberately insecure installation to a temporary directory and open the "
                                      "assistant on it (on a terminal), or print its audit (otherwise, or with "
                                      "--audit).")
    audit_options(demo, with_dir=False)
    demo.add_argument("--keep", action="store_true", help="keep the temporary installation and print its path")
    demo.add_argument("--audit", action="store_true", help="print the audit report instead of opening the assistant")
    terminal_options(demo)
    from tui import settingscli

    settingscli.add_parsers(sub)
    return parser


def _on_terminal() -> bool:
    try:
        return sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


class _PipeSafe:
    """stdout that a reader may close (``dester-harden audit | head -1``).

    Once the reader is gone, output is dropped and the command carries on to
    its own exit code: a closed pipe is not an error of the audit, and a
    ``fix --yes`` piped into ``head`` still applies (or refuses) exactly as
    without the pipe. File descriptor 1 is pointed at /dev/null, so the
    interpreter's last flush at exit cannot fail either ("Exception ignored
    ... BrokenPipeError").
    """

    def __init__(self, stream) -> None:
        self._stream = stream
        self.gone = False

    def _closed(self) -> None:
        self.gone = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._closed()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._closed()

    @property
    def buffer(self):
        return _PipeSafeBuffer(self, self._stream.buffer)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class _PipeSafeBuffer:
    """The binary side of :class:`_PipeSafe` (JSON and SARIF are written as bytes)."""

    def __init__(self, owner: _PipeSafe, raw) -> None:
        self._owner = owner
        self._raw = raw

    def write(self, data: bytes) -> int:
        if not self._owner.gone:
            try:
                return self._raw.write(data)
            except BrokenPipeError:
                self._owner._closed()
        return len(data)

    def flush(self) -> None:
        if not self._owner.gone:
            try:
                self._raw.flush()
            except BrokenPipeError:
                self._owner._closed()

    def __getattr__(self, name: str):
        return getattr(self._raw, name)


def main(argv: list[str] | None = None) -> int:
    stdout = sys.stdout
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Output piped into `head` outside the guarded commands: not an error worth a traceback.
        _PipeSafe(stdout)._closed()
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - no traceback may reach a user
        if os.environ.get("DESTER_HARDEN_DEBUG"):
            raise
        # The message is not printed: it could quote file content.
        print(f"dester-harden: internal error ({type(exc).__name__}); set DESTER_HARDEN_DEBUG=1 for details "
              "and please report it",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if isinstance(sys.stdout, _PipeSafe):
            try:
                sys.stdout.flush()
            finally:
                sys.stdout = stdout


_COMMANDS = ("audit", "explain", "fix", "history", "undo", "confirm", "reaudit", "demo", "assistant", "suppress",
             "settings")


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `dester-harden [--dir D]` (no command) is the default job on D: the
    # assistant on a terminal, the audit report otherwise (cron, pipes, CI).
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        opts = {a.split("=")[0] for a in argv}
        wants_tui = bool(opts & {"--color-system", "--theme"})
        wants_report = bool(opts & {"--format", "--fail-on", "--only", "--skip"})
        argv = (["assistant"] if wants_tui or (_on_terminal() and not wants_report) else ["audit"]) + argv
    args = parser.parse_args(argv)
    from checks.core.errors import InputError

    if args.command != "assistant" and not isinstance(sys.stdout, _PipeSafe):
        sys.stdout = _PipeSafe(sys.stdout)  # the assistant draws on the terminal itself

    try:
        if args.command == "explain":
            return _explain(args, parser)
        if args.command == "demo":
            return _demo(args)
        if args.command in ("suppress", "settings"):
            from tui import settingscli

            return settingscli.suppress(args) if args.command == "suppress" else settingscli.show(args)
        if args.command == "assistant":
            from tui.run import run_assistant

            return run_assistant(args)
        if args.command is None:
            args = parser.parse_args(["audit"])
        if args.command in ("fix", "history", "undo", "confirm", "reaudit"):
            from tui import changes

            if args.command == "fix":
                _profile_from_settings(args)

            return changes.run(args)
        _recover_if_needed(args)
        return _audit(args)
    except InputError as exc:
        print(f"dester-harden: error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE


def _profile_from_settings(args) -> None:
    """``--profile`` when given, else the settings file's, else local (a malformed file: InputError)."""
    if args.profile:
        return
    from checks.audit.settings import load_settings, resolve_profile
    from checks.install.discovery import default_install_dir

    args.profile, _ = resolve_profile(None, load_settings(args.dir or default_install_dir()))


def _recover_if_needed(args) -> None:
    """Finish what a killed fix or undo left, before anything else reads the files."""
    from checks.change.pending import has_unfinished
    from checks.install.discovery import default_install_dir

    directory = os.path.abspath(os.path.expanduser(getattr(args, "dir", None) or default_install_dir()))
    if not os.path.isdir(directory):
        return  # nothing to recover; the audit says in one line that it is missing
    if not has_unfinished(directory):
        return  # the common case: a directory listing, no import of the engine
    from checks.assistant.usecases import recover

    # The audit only reads: a rollback that cannot be done, or a journal another
    # user could write (never acted on), is a warning and the audit goes on.
    done = recover(directory)
    for m in done.messages:
        print(f"dester-harden: {_one_line(m)}", file=sys.stderr)
    if done.warning:
        print(f"dester-harden: warning: {_one_line(done.warning)}", file=sys.stderr)


def _one_line(text: str) -> str:
    from checks.core.textio import shown_line

    return shown_line(text)


def _color_enabled(stream) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _write(text: str, binary_utf8: bool) -> None:
    if binary_utf8 and hasattr(sys.stdout, "buffer"):
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.buffer.flush()
        return
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        text.encode(enc)
    except UnicodeEncodeError:
        text = text.encode(enc, errors="replace").decode(enc)
    sys.stdout.write(text)
    sys.stdout.flush()


def run_and_render(directory: str, args, live: bool = False) -> int:
    """Audit ``directory`` and print the report; ``live``: read what runs first (the live checks)."""
    from checks.audit.run import exit_code, run_audit
    from checks.install.discovery import discover

    inst = discover(directory, files=getattr(args, "file", None), host_root=args.host_root)
    settings = _settings(directory)  # a malformed file: one line naming it and the line, exit 2
    profile = args.profile or (settings.profile if settings else None) or "local"
    state = None
    if live and args.host_root == "/":  # a --host-root fixture tree is no running system
        from checks.assistant.usecases import live_state

        state = live_state(inst, only=args.only, skip=args.skip)
    report = run_audit(inst, profile, only=args.only, skip=args.skip, mask=_mask_for_stdout(args.format),
                       settings=settings, live=state)
    if args.format == "json":
        from checks.audit.report import render_json

        _write(render_json(report), True)
    elif args.format == "sarif":
        from checks.audit.report import render_sarif

        _write(render_sarif(report), True)
    else:
        from checks.audit.report import render_text

        _write(render_text(report, color=_color_enabled(sys.stdout)), False)
    if args.format != "json":  # JSON carries them in its "warnings" list
        for w in report.warnings:
            print(f"dester-harden: warning: {_one_line(report.masker.text(w))}", file=sys.stderr)
    if inst.unfollowed:
        print(f"dester-harden: error: {_one_line(report.masker.text(inst.unfollowed[0]))}"
              " (checks that would pass are reported as error)", file=sys.stderr)
    return exit_code(report, args.fail_on)


def _settings(directory: str):
    """The installation's settings, or None when there is no file (without importing the settings module)."""
    from checks.change.statedir import journal_dir
    from checks.change.trust import UntrustedJournal
    from checks.core.names import SETTINGS_FILE

    try:
        if not os.path.lexists(os.path.join(journal_dir(os.path.abspath(directory)), SETTINGS_FILE)):
            return None
    except (UntrustedJournal, OSError):
        pass  # load_settings says why in a warning
    from checks.audit.settings import load_settings

    return load_settings(directory)


def _audit(args) -> int:
    from checks.install.discovery import default_install_dir

    directory = args.dir or default_install_dir()
    return run_and_render(directory, args, live=not args.no_live)


def _demo(args) -> int:
    import shutil
    import tempfile

    from checks.demo import materialize

    tmp = tempfile.mkdtemp(prefix="dester-harden-demo-")
    try:
        install = materialize(tmp)
        if not args.audit and (_on_terminal() or args.color_system or args.theme):
            from tui.run import run_assistant

            args.dir, args.file = install, None
            if isinstance(sys.stdout, _PipeSafe):
                sys.stdout = sys.stdout._stream  # the assistant draws on the terminal itself
            if args.keep:
                print(f"The demo installation is in {install} (remove it when done).", file=sys.stderr)
            return run_assistant(args)
        code = run_and_render(install, args)
        if args.keep:
            print(f"The demo installation is in {install} (remove it when done).", file=sys.stderr)
        # The demo succeeded when it ran; its findings are the point, not a failure.
        return EXIT_OK if code in (EXIT_OK, EXIT_FINDINGS) else code
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _explain(args, parser) -> int:
    from checks.audit.catalog import BY_ID, CATALOG
    from checks.audit.run import explain_score

    if args.score:
        print(explain_score())
        return EXIT_OK
    if not args.id:
        for chk in CATALOG:
            kind = " (live)" if chk.live else ""
            print(f"{chk.id:<8} {chk.title}{kind}")
        print("\nRun 'dester-harden explain ID' for why a check matters and how it is fixed.")
        return EXIT_OK
    found = BY_ID.get(args.id.strip().upper())
    if found is None:
        print(f"dester-harden: error: unknown check id {args.id!r} (run 'dester-harden explain' for the list)",
              file=sys.stderr)
        return EXIT_USAGE
    chk = found
    import textwrap

    sev = chk.severity[0] if len(set(chk.severity)) == 1 else (
        f"{chk.severity[0]} (local) / {chk.severity[1]} (tailscale) / {chk.severity[2]} (internet)")
    out = [f"{chk.id}: {chk.title}", f"Severity: {sev}"]
    if chk.live:
        out.append("Kind: live check (reads the running system)")
    if chk.profiles != ("local", "tailscale", "internet"):
        out.append("Applies to the " + " and ".join(chk.profiles) + " profile")
    out.append("")
    out += textwrap.wrap("Why: " + chk.why, 80, subsequent_indent="     ")
    out.append("")
    out += textwrap.wrap("Fix: " + chk.fix, 80, subsequent_indent="     ")
    print("\n".join(out))
    return EXIT_OK
