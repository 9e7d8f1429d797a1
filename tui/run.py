"""Starting the assistant: terminal options, the session, the app."""

from __future__ import annotations

import os
import sys


def apply_terminal_options(color_system: str | None) -> None:
    """--color-system, before Textual is imported (it reads its settings then).

    sudo drops NO_COLOR and TEXTUAL_* from the environment, which is why these
    are flags as well.
    """
    from tui.output import TEXTUAL_COLOR

    if color_system == "none":
        os.environ["NO_COLOR"] = "1"
    elif color_system:
        os.environ["TEXTUAL_COLOR_SYSTEM"] = TEXTUAL_COLOR[color_system]


def build_app(root: str, *, profile: str | None = None, files=None, host_root: str = "/", theme: str | None = None,
              now=None, hostname: str | None = None, new_secret=None, cursor_blink: bool = True,
              shown_root: str | None = None, live_state=None, euid: int | None = None, hasher=None):
    """The app for one installation (the tests build theirs here too; ``shown_root``: how the
    screens name the install directory, fixed by the snapshot tests; ``live_state(root)``: the
    running system, a fake in tests, the use case when None; ``euid``: fixed by the snapshots;
    ``hasher``: bcrypt for the proxy login, with a fixed salt in the snapshots)."""
    from checks.assistant.session import Session
    from tui.app import DesterApp

    session = Session(root, profile=profile, files=files, host_root=host_root, now=now, hostname=hostname,
                      new_secret=new_secret, shown_root=shown_root, hasher=hasher)
    return DesterApp(session, theme=theme, cursor_blink=cursor_blink, live_state=live_state, euid=euid)


def run_assistant(args) -> int:
    from checks.core.errors import InputError
    from checks.install.discovery import default_install_dir

    root = os.path.abspath(os.path.expanduser(args.dir or default_install_dir()))
    if not os.path.isdir(root):
        raise InputError("install directory not found (use --dir or set DESTERLIB_DIR)", args.dir or root)
    apply_terminal_options(getattr(args, "color_system", None))  # before Textual is imported
    theme = getattr(args, "theme", None)
    if theme:
        from textual.theme import BUILTIN_THEMES

        if theme not in BUILTIN_THEMES:
            print(f"dester-harden: error: unknown theme {theme!r} (one of: {', '.join(sorted(BUILTIN_THEMES))})",
                  file=sys.stderr)
            return 2
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print("dester-harden: error: the assistant needs a terminal; use 'dester-harden audit' or "
              "'dester-harden fix' in scripts", file=sys.stderr)
        return 2
    app = build_app(root, profile=getattr(args, "profile", None), files=getattr(args, "file", None),
                    host_root=getattr(args, "host_root", "/"), theme=theme)
    code = app.run()
    if code is None and app.return_code:
        code = app.return_code
    if app.hangup and app.hangup_code == 143:
        print("dester-harden: stopped by SIGTERM; a change being applied was finished first "
              "(dester-harden history shows it)", file=sys.stderr)
    return int(code or 0)
