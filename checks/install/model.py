"""The installation model: what discovery found, as checks see it.

Everything here is plain data with source positions. Checks read it; only the
change engine (a later layer) writes to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from checks.core.paths import display_path
from checks.core.textio import Source
from checks.core.yamlpos import Node

#: Layout identifiers (see the catalog's "Installation layouts").
LAYOUT_CLI = "cli"
LAYOUT_SETUP_SCRIPT = "setup-script"
LAYOUT_NEWER = "newer"
LAYOUT_CUSTOM = "custom"

LAYOUT_NAMES = {
    LAYOUT_CLI: "CLI install (docker-compose.yml + .env)",
    LAYOUT_SETUP_SCRIPT: "setup-script install (repository clone, apps/api/.env)",
    LAYOUT_NEWER: "newer layout (docker/docker-compose.yml + root .env)",
    LAYOUT_CUSTOM: "custom layout",
}


@dataclass(slots=True)
class Where:
    """A place in a file: what evidence points at."""

    file: str
    """Display path, relative to the install dir where possible."""
    line: int | None
    text: str
    """The line as written (unmasked: render through the masker)."""


@dataclass(slots=True)
class EnvEntry:
    """One ``KEY=value`` line of an env file."""

    key: str
    value: str | None
    """The value after unquoting and interpolation (None for a bare ``KEY``)."""
    raw: str | None
    """The value after unquoting, before interpolation."""
    line: int
    text: str
    """The source line(s) as written."""
    quote: str
    """``'``, ``"`` or "" (unquoted)."""


@dataclass(slots=True)
class EnvFile:
    """An env file: the root ``.env`` or one named by ``env_file``."""

    path: str
    display: str
    source: Source | None
    entries: list[EnvEntry] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    """Why it matters: ``"project"`` (interpolation), ``"root"``, ``"env_file"``."""
    referenced_by: list[tuple[str, Where]] = field(default_factory=list)
    """(service, place of the ``env_file`` entry) for files named by services."""
    required: bool = True

    @property
    def exists(self) -> bool:
        return self.source is not None

    def get(self, key: str) -> EnvEntry | None:
        found = None
        for entry in self.entries:
            if entry.key == key:
                found = entry
        return found

    def as_dict(self) -> dict[str, str]:
        return {e.key: e.value for e in self.entries if e.value is not None}


@dataclass(slots=True)
class Setting:
    """A compose scalar after interpolation, with what was written."""

    value: Any
    raw: Any
    node: Node
    refs: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    literal: str = ""
    defaults: list[str] = field(default_factory=list)

    @property
    def interpolated(self) -> bool:
        return bool(self.refs)

    @property
    def resolved(self) -> bool:
        return not self.missing


@dataclass(slots=True)
class EnvVar:
    """A variable in a service's environment, wherever it was set."""

    key: str
    value: str | None
    raw: str | None
    origin: str
    """``"compose"`` (the ``environment`` key) or ``"env_file"``."""
    where: Where
    setting: Setting | None = None
    """For compose entries: the interpolation details."""
    env_file: EnvFile | None = None

    @classmethod
    def from_env_entry(cls, ef: EnvFile, entry: EnvEntry) -> EnvVar:
        """The variable that ``entry`` of the env file ``ef`` sets."""
        where = Where(ef.display, entry.line, entry.text)
        return cls(entry.key, entry.value, entry.raw, "env_file", where, env_file=ef)


@dataclass(slots=True)
class Port:
    """A published port, from short (``"127.0.0.1:5432:5432/tcp"``) or long syntax."""

    host_ip: str | None
    published: str | None
    """Host port or range as written after interpolation; None when Docker picks one."""
    target: str
    """Container port or range."""
    protocol: str
    where: Where
    node: Node
    long: bool
    interpolated: bool

    @property
    def target_ports(self) -> list[int]:
        return _expand_range(self.target)

    @property
    def published_ports(self) -> list[int]:
        return _expand_range(self.published) if self.published else []

    @property
    def all_interfaces(self) -> bool:
        ip = (self.host_ip or "").strip("[]")
        return ip in ("", "0.0.0.0", "::")


def _expand_range(spec: str | None) -> list[int]:
    if not spec:
        return []
    try:
        if "-" in spec:
            lo, hi = spec.split("-", 1)
            a, b = int(lo), int(hi)
            if 0 <= a <= b <= 65535 and b - a <= 65535:
                return list(range(a, b + 1))
            return []
        return [int(spec)]
    except ValueError:
        return []


@dataclass(slots=True)
class Mount:
    """A volume entry of a service, from short or long syntax."""

    kind: str
    """``bind``, ``volume``, ``tmpfs``, ``npipe``, ``cluster`` or ``image``."""
    source: str | None
    """Host path (bind) or volume name (volume), as written after interpolation."""
    target: str | None
    read_only: bool
    where: Where
    node: Node
    long: bool
    interpolated: bool
    host_path: str | None = None
    """For binds and bind-backed named volumes: the absolute host path."""
    via_volume: str | None = None
    """For bind-backed named volumes: the volume's name."""


@dataclass(slots=True)
class Service:
    """One service of the (merged) compose model."""

    name: str
    node: Node
    where: Where
    compose_file: Source
    image: Setting | None = None
    ports: list[Port] = field(default_factory=list)
    mounts: list[Mount] = field(default_factory=list)
    environment: dict[str, EnvVar] = field(default_factory=dict)
    """The effective environment: ``environment`` over ``env_file`` entries."""
    compose_env: dict[str, EnvVar] = field(default_factory=dict)
    compose_env_written: list[EnvVar] = field(default_factory=list)
    """Every ``environment`` entry of every compose file, overridden ones included:
    a secret written in the base file stays in that file when an override replaces it."""
    env_file_vars: list[EnvVar] = field(default_factory=list)
    """Every entry of every env file the service reads, in order."""
    env_files: list[EnvFile] = field(default_factory=list)

    def opt(self, key: str) -> Node | None:
        return self.node.get(key)

    @property
    def image_name(self) -> str:
        if self.image is None or not isinstance(self.image.value, str):
            return ""
        return self.image.value

    @property
    def image_repo(self) -> str:
        """The image's last path component without tag or digest (``postgres``)."""
        ref = self.image_name.split("@", 1)[0]
        last = ref.rsplit("/", 1)[-1]
        return last.split(":", 1)[0].lower()


@dataclass(slots=True)
class Installation:
    """A DesterLib installation as found on disk."""

    root: str
    layout: str
    compose_files: list[Source]
    project_dir: str
    project_env: dict[str, str]
    """Variables for compose interpolation (the project's ``.env``)."""
    env_files: list[EnvFile]
    services: list[Service]
    top: Node | None
    """The merged top-level compose mapping."""
    media_path: str = "/media"
    """Where the API looks for media inside its container (CONTAINER_MEDIA_PATH)."""
    host_root: str = "/"
    """The host filesystem root for /etc and /var (tests point this at a fixture tree)."""
    now: float = 0.0
    notes: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    """Every secret value found; output is masked against them."""
    root_mode: int = 0
    mode_overlay: dict[str, int] = field(default_factory=dict)
    """Planned modes (absolute path -> bits) that checks see instead of the disk's."""
    planned: dict[str, bytes] = field(default_factory=dict)
    """Planned contents (absolute path -> bytes) of files outside the compose model that checks read
    (the front door's system files): what the planner's re-audit sees instead of the disk."""
    planned_links: dict[str, str] = field(default_factory=dict)
    """Planned symbolic links (absolute path -> target), for the same re-audit."""
    root_uid: int = 0
    reached: dict[str, str] = field(default_factory=dict)
    """Compose files (absolute path -> ``"include"`` or ``"extends"``) that the files Compose is given
    include or extend; ``compose_files`` lists them after those."""
    unfollowed: list[str] = field(default_factory=list)
    """``file:line: why`` for each include or extends that could not be followed: checks that would
    pass report ``error`` instead, since they could not see every service."""
    interp_env_files: dict[str, list[EnvFile]] = field(default_factory=dict)
    """Compose file (display path) -> the env files its ``${VAR}`` come from, the one that wins first."""
    file_env: dict[str, dict[str, str]] = field(default_factory=dict)
    """Compose file (display path) -> its variables, where they are not ``project_env`` (an included file)."""

    def env_for(self, file: str | None) -> dict[str, str]:
        """The variables ``${VAR}`` sees in compose file ``file`` (display path)."""
        return self.file_env.get(file, self.project_env) if file else self.project_env

    @property
    def command_line_files(self) -> list[Source]:
        """The compose files Compose is given (``-f``), without what they include or extend."""
        return [s for s in self.compose_files if s.path not in self.reached]

    def service(self, name: str) -> Service | None:
        for svc in self.services:
            if svc.name == name:
                return svc
        return None

    def lstat(self, path: str) -> tuple[int, int]:
        """(permission bits, owner uid) of ``path`` without following a symlink, planned modes first."""
        import os
        import stat as _stat

        st = os.lstat(path)
        return self.mode_overlay.get(os.path.abspath(path), _stat.S_IMODE(st.st_mode)), st.st_uid

    def display(self, path: str) -> str:
        """``path`` as shown: relative to the installation when inside it."""
        return display_path(path, self.root)
