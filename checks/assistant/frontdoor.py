"""Use cases of the TLS step: what front door can be set up here, and the login it made.

Both faces call these (and :func:`checks.assistant.usecases.plan` with ``front_door=``, then
:func:`checks.assistant.usecases.apply` with the same choice, which records it); neither finds
servers or keeps secrets on its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.core.errors import InputError
from checks.core.sysroot import SystemRoot
from checks.proxy.model import SERVERS, Choice, FrontDoor
from checks.proxy.servers import Server

if TYPE_CHECKING:
    from checks.install.model import Installation


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
    from checks.audit.rules.common import api_port, api_service
    from checks.audit.settings import load_settings
    from checks.install.discovery import discover
    from checks.proxy import servers

    sysroot = SystemRoot(host_root)
    found = {kind: servers.find_server(kind, sysroot) for kind in SERVERS}
    preselected = "nginx" if found["caddy"].binary is None and found["nginx"].binary is not None else "caddy"
    try:
        saved = load_settings(root).front_door
    except InputError:
        saved = None
    existing: tuple[FrontDoor, ...] = ()
    port = 3001
    try:
        inst = discover(root, None, host_root)
        svc = api_service(inst)
        port = api_port(svc) if svc is not None else 3001
        existing = tuple(_doors(inst))
    except InputError:
        pass
    return Options(found, saved.server if saved else preselected, saved, existing, port)


def _doors(inst: Installation) -> list[FrontDoor]:
    from checks.proxy import detect

    return list(detect.front_doors(inst).doors)


def keep_password(choice: Choice, password: str) -> Kept:
    """Keep the login's password in the OS keyring (else a 0600 file of the state directory)."""
    from checks.change.journal import SecretStore

    user = f"proxy:{choice.domain}"
    where = SecretStore("").keep(user, password)
    if where == "keyring":
        return Kept(f"{SecretStore('').describe('keyring')} (service dester-harden, name {user})", True)
    return Kept(f"{where} (mode 0600; no keyring works here)", False)


def save_choice(root: str, choice: Choice) -> None:
    """Record the front door in the installation's settings (``[front_door]``)."""
    from checks.audit.settings import save_front_door

    save_front_door(root, choice)
