"""How the command line writes: the mask stdout can show, and the terminal options.

A leaf module: :mod:`tui.cli`, :mod:`tui.changes` and :mod:`tui.run` import it
and it imports none of them (tests/test_tui_imports.py keeps tui/ free of import
cycles).
"""

from __future__ import annotations

import argparse
import os
import sys

#: --color-system values -> TEXTUAL_COLOR_SYSTEM (None: NO_COLOR).
COLOR_SYSTEMS = ("auto", "16", "256", "truecolor", "none")
TEXTUAL_COLOR = {"auto": "auto", "16": "standard", "256": "256", "truecolor": "truecolor"}


def mask_for_stdout(fmt: str) -> str:
    """The mask for secrets in ``fmt`` output: "••••", or "****" where stdout cannot show it."""
    from checks.core.secrets import MASK

    if fmt != "text":
        return MASK
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        MASK.encode(enc)
    except (UnicodeEncodeError, LookupError):
        return "****"
    # Under LC_ALL=C Python's UTF-8 mode makes stdout UTF-8, but the locale says
    # the terminal shows ASCII: "••••" would print as mojibake there.
    import locale

    try:
        codeset = locale.nl_langinfo(locale.CODESET)
    except (AttributeError, ValueError):
        return MASK
    if codeset.replace("-", "").replace("_", "").lower() in ("ansix3.41968", "ascii", "usascii"):
        return "****"
    return MASK


ROOT_HELP = ("treat DIR as / for system paths: /etc/caddy, /etc/nginx, ... (read and changed under DIR; "
             "the installation itself is --dir): for tests and a cautious first run on a copy")


def system_root(text: str) -> str:
    """``--root DIR``: an existing directory, made absolute (not a directory: a usage error, exit 2)."""
    import stat

    path = os.path.abspath(os.path.expanduser(text))
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    except PermissionError:
        pass  # there, but not for this user: what is read under it says so (skipped, never pass)
    except OSError:
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}") from None
    return path


def add_root_option(parser: argparse.ArgumentParser) -> None:
    """``--root DIR`` on a command, with the older hidden ``--host-root`` as its alias (both set ``host_root``)."""
    parser.add_argument("--root", dest="host_root", type=system_root, default="/", metavar="DIR", help=ROOT_HELP)
    parser.add_argument("--host-root", dest="host_root", type=system_root, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS)
