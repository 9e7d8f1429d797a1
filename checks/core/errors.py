"""Errors that reach the user as one line, never as a traceback."""

from __future__ import annotations


class InputError(Exception):
    """Bad input: a missing directory, an unreadable or malformed file.

    Rendered as ``FILE:LINE: message`` (or ``FILE: message`` when no line applies).
    The message never quotes file content, so it cannot carry a secret.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        return where + self.message


class EngineError(Exception):
    """A change could not be made; nothing (or everything) was rolled back.

    Defined here (and re-exported by :mod:`checks.change.engine`) so that the
    confined file operations (:mod:`checks.change.confined`) raise it too.
    """
