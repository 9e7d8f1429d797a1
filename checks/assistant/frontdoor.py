"""Use cases of the TLS step: what front door can be set up here, and the login it made.

Both faces call these (and :func:`checks.assistant.usecases.plan` with ``front_door=``); neither
finds servers or keeps secrets on its own.
(Interface; the implementation lands with the TLS work.)
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.proxy.model import Choice, FrontDoor
from checks.proxy.servers import Server


@dataclass(frozen=True, slots=True)
class Options:
    """What the TLS step offers on this machine."""

    servers: dict[str, Server]
    """``caddy`` and ``nginx`` as found (``binary`` None: not installed; say ``install_hint``)."""
    preselected: str
    """``caddy`` when Caddy is installed (or nothing is), else ``nginx``."""
    saved: Choice | None
    """The front door recorded in the installation's settings (a re-audit checks the same one)."""
    existing: tuple[FrontDoor, ...]
    """Front doors already in place, with what each protects and leaves open."""
    api_port: int


@dataclass(frozen=True, slots=True)
class Kept:
    """Where the proxy login's password went after it was shown."""

    where: str
    """One line for the user: "the system keyring (dester-harden / proxy:desterlib.example.com)", or the
    path of a 0600 file in dester-harden's own state directory when no keyring works."""
    keyring: bool


def options(root: str, *, host_root: str = "/") -> Options:
    """The servers, the saved choice and the existing front doors for the installation at ``root``."""
    raise NotImplementedError


def keep_password(choice: Choice, password: str) -> Kept:
    """Keep the login's password in the OS keyring (else a 0600 file of the state directory)."""
    raise NotImplementedError


def save_choice(root: str, choice: Choice) -> None:
    """Record the front door in the installation's settings (``[front_door]``)."""
    raise NotImplementedError
