"""Errors as users see them: one line, no traceback, no file content."""

from __future__ import annotations


def one_line(exc: BaseException) -> str:
    from checks.engine import EngineError
    from checks.errors import InputError
    from checks.fixes import PlanError

    if isinstance(exc, (EngineError, InputError, PlanError)):
        return " ".join(str(exc).split())
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        hint = "; run dester-harden as the installation's owner or with sudo" if isinstance(exc, PermissionError) else ""
        return f"{where}{exc.strerror or type(exc).__name__}{hint}"
    # Internal errors: the message could quote file content, so only the type.
    return f"internal error ({type(exc).__name__}); run 'dester-harden fix --dry-run' for details"
