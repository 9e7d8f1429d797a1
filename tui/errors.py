"""Errors as users see them: one line, no traceback, no file content, no raw control character."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    from checks.core.errors import EngineError, InputError
    from checks.core.textio import shown_line
    from checks.fix.planner import PlanError

    if isinstance(exc, (EngineError, InputError, PlanError)):
        return shown_line(str(exc))
    if isinstance(exc, OSError):
        where = f"{shown_line(str(exc.filename))}: " if exc.filename else ""
        hint = ("; run dester-harden as the installation's owner or with sudo"
                if isinstance(exc, PermissionError) else "")
        return f"{where}{exc.strerror or type(exc).__name__}{hint}"
    # Internal errors: the message could quote file content, so only the type.
    return f"internal error ({type(exc).__name__}); run 'dester-harden fix --dry-run' for details"
