"""The installed Caddy or nginx: version, where a site goes, validation, reload.

(Interface; the implementation lands with the TLS work.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from checks.core.sysroot import SystemRoot

INSTALL_HINT = {"caddy": "apt install caddy", "nginx": "apt install nginx certbot python3-certbot-nginx"}


@dataclass(frozen=True, slots=True)
class Server:
    """A proxy server as found on this machine."""

    kind: str
    """``caddy`` or ``nginx``."""
    binary: str | None
    """None: not installed (say :attr:`install_hint`)."""
    version: str | None
    """``2.6.2``, ``1.22.1``."""
    running: bool
    """A process of it runs (a reload is planned only then)."""

    @property
    def install_hint(self) -> str:
        return INSTALL_HINT[self.kind]

    @property
    def caddy_directive(self) -> str:
        """``basicauth`` before 2.8, ``basic_auth`` from 2.8."""
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Validation:
    ok: bool
    message: str
    """One line: the validator's verdict (``caddy validate: Valid configuration``) or its first error."""


def find_server(kind: str, sysroot: SystemRoot, environ: Mapping[str, str] | None = None) -> Server:
    """The installed server of ``kind`` (PATH from ``environ``)."""
    raise NotImplementedError


def validate(server: Server, sysroot: SystemRoot, changes: Mapping[str, bytes | None],
             links: Mapping[str, str] | None = None) -> Validation:
    """Validate the server's whole configuration under ``sysroot`` as it will be with ``changes``
    (path -> new content, None: removed) and ``links`` (path -> target) in place, in a scratch copy:
    nothing under the root is written. A missing binary is never valid."""
    raise NotImplementedError


def validate_argv(server: Server, sysroot: SystemRoot) -> tuple[str, ...]:
    """The command that validates the installed configuration (after installing, before the reload)."""
    raise NotImplementedError


def reload_argv(server: Server, sysroot: SystemRoot) -> tuple[str, ...]:
    """The command that makes the running server read its configuration again."""
    raise NotImplementedError
