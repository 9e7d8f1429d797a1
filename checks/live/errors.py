"""The one error of the live layer: a part of the running system that could not be read.

Its message is one line meant for the user ("the Docker Engine is not reachable at
unix:///var/run/docker.sock: permission denied (run with sudo or join the docker group)");
:func:`checks.live.gather.gather` turns it into the matching ``*_error`` of the live state.
"""

from __future__ import annotations


class LiveError(Exception):
    """Something of the live system could not be read; ``str()`` is the one-line reason."""


def one_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, trimmed: never a traceback, never a wall of text."""
    text = str(exc).strip() or type(exc).__name__
    first = text.splitlines()[0] if text else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"
