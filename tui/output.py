"""How the command line writes: the mask stdout can show, and the terminal options.

A leaf module: :mod:`tui.cli`, :mod:`tui.changes` and :mod:`tui.run` import it
and it imports none of them (tests/test_tui_imports.py keeps tui/ free of import
cycles).
"""

from __future__ import annotations

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
