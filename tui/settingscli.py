"""``dester-harden suppress`` and ``dester-harden settings``: the settings file from the command line.

Kept apart from :mod:`tui.cli` (which only registers the parsers and dispatches
here) so the audit's start stays light; the settings themselves are
:mod:`checks.audit.settings`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from tui.output import add_root_option

if TYPE_CHECKING:
    from checks.audit.settings import Settings

EXIT_OK, EXIT_USAGE = 0, 2


def add_parsers(sub: Any) -> None:  # argparse's _SubParsersAction is private
    """Register ``suppress`` and ``settings`` on the CLI's subparsers."""
    sup = sub.add_parser("suppress", help="accept a finding with a reason: shown as suppressed, not counted",
                         description="Append a suppression to this installation's settings file. A suppressed "
                                     "failure is still shown (with its reason) but not counted in the score or the "
                                     "exit code; after --until it fails again and says so.")
    sup.add_argument("id", metavar="ID", help="the check id, such as NET-003")
    sup.add_argument("--reason", required=True, help="why the finding is accepted (required)")
    sup.add_argument("--scope", metavar="S", help="only this part: service:NAME, file:PATH (relative to the "
                                                  "install) or path:PATH (a file or a directory)")
    sup.add_argument("--until", metavar="YYYY-MM-DD", help="the last day the suppression applies")
    sup.add_argument("--dir", metavar="D", help="the DesterLib install directory")
    add_root_option(sup)  # accepted as on every command; a suppression names no system path

    st = sub.add_parser("settings", help="print the effective settings: profile, suppressions, the file's path",
                        description="Show the settings this installation's audits use: the profile and where it "
                                    "comes from, each suppression and whether it is active, expired or matches "
                                    "nothing, and where the settings file is.")
    st.add_argument("--dir", metavar="D", help="the DesterLib install directory")
    st.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_root_option(st)


def _install_dir(args: argparse.Namespace) -> str:
    from checks.core.errors import InputError
    from checks.install.discovery import default_install_dir

    given = args.dir or default_install_dir()
    root = os.path.abspath(os.path.expanduser(given))
    if not os.path.isdir(root):
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", given)
    return root


def suppress(args: argparse.Namespace) -> int:
    """Add one suppression (errors are InputError: one line, exit 2)."""
    from checks.audit.settings import add_suppression, settings_path
    from checks.core.errors import InputError
    from checks.core.textio import shown_line

    root = _install_dir(args)
    try:
        sup = add_suppression(root, args.id, args.reason, args.scope, args.until)
    except ValueError as exc:  # a bad --until
        raise InputError(str(exc)) from None
    scope = f" ({sup.scope})" if sup.scope else ""
    until = f" until {sup.until.isoformat()}" if sup.until else ""
    print(shown_line(f"Suppressed {sup.check}{scope}{until}: {sup.reason}"))
    print(shown_line(f"Written to {settings_path(root)}"))
    return EXIT_OK


def _statuses(root: str, settings: Settings, host_root: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Each suppression with its state against an audit of the installation as it is now."""
    import datetime as _dt

    from checks.audit.catalog import BY_ID
    from checks.audit.run import run_audit
    from checks.audit.settings import covers, resolve_profile
    from checks.install.discovery import discover

    profile, _ = resolve_profile(None, settings)
    report = run_audit(discover(root, host_root=host_root), profile, settings=settings)
    today = _dt.date.today()
    rows = []
    for sup in settings.suppressions:
        hits = [f.id for f in report.findings if f.status == "fail" and covers(sup, f, root)]
        if sup.check not in BY_ID:
            state = "unknown check"
        elif not sup.active(today):
            state = "expired"
        elif not hits:
            state = "matches nothing"
        else:
            state = "active"
        rows.append({**sup.as_dict(), "line": sup.line, "state": state})
    return rows, report.warnings


def show(args: argparse.Namespace) -> int:
    """Print the effective settings."""
    from checks.audit.settings import load_settings, resolve_profile
    from checks.core.textio import json_safe, shown, shown_line

    root = _install_dir(args)
    settings = load_settings(root)
    profile, source = resolve_profile(None, settings)
    rows, warnings = _statuses(root, settings, args.host_root)
    if args.format == "json":
        doc = {"install": root, "path": settings.path, "used": settings.loaded,
               "profile": {"value": profile, "source": source}, "suppressions": rows, "warnings": warnings}
        sys.stdout.write(json_safe(json.dumps(doc, indent=2, ensure_ascii=False)) + "\n")
        return EXIT_OK
    state = "" if settings.loaded else " (not used: see the warning)" if settings.warnings else \
        " (not present: defaults apply)"
    out = [f"Settings file: {settings.path or 'none (the state directory could not be located)'}{state}"]
    out.append(f"Profile: {profile} ({source})")
    if not rows:
        out.append("Suppressions: none (add one with: dester-harden suppress ID --reason TEXT)")
    else:
        out.append("Suppressions:")
        for r in rows:
            extra = (f" [{r['scope']}]" if r["scope"] else "") + (f" until {r['until']}" if r["until"] else "")
            out.append(f"  {r['check']:<8} {r['state']:<16}{extra}  {r['reason']}")
    sys.stdout.write("\n".join(shown(line) for line in out) + "\n")
    for w in warnings:
        print(f"dester-harden: warning: {shown_line(w)}", file=sys.stderr)
    return EXIT_OK
