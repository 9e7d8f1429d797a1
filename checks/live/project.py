"""The compose project name, derived as Compose v2 derives it.

Compose (compose-go's ``withNamePrecedenceLoad`` and ``projectName``) takes, in order:
``COMPOSE_PROJECT_NAME`` from the environment, then from the ``.env`` of the project
directory (used as written, and refused when it is not a valid name); the top-level
``name:`` of the compose files (interpolated, then normalised); the basename of the
project directory (the first compose file's directory), normalised. Normalising keeps
``[a-z0-9_-]`` of the lowercased text and strips leading ``_`` and ``-``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from checks.core.interpolate import interpolate
from checks.install.model import Installation
from checks.live.errors import LiveError

_NOT_NAME = re.compile(r"[^a-z0-9_-]")


def normalize(name: str) -> str:
    """``name`` as Compose normalises a project name (``My App.v2`` -> ``myappv2``)."""
    return _NOT_NAME.sub("", name.lower()).lstrip("_-")


def _dot_env(inst: Installation) -> dict[str, str]:
    """The variables of ``.env`` in the project directory, the only env file Compose reads for itself."""
    path = os.path.join(inst.project_dir, ".env")
    for ef in inst.env_files:
        if ef.path == path:
            return ef.as_dict()
    return {}


def project_name(inst: Installation, environ: Mapping[str, str] | None = None) -> str:
    """The name Compose gives the project of ``inst``; :class:`LiveError` when Compose would refuse it."""
    env = os.environ if environ is None else environ
    dot_env = _dot_env(inst)
    explicit = env.get("COMPOSE_PROJECT_NAME") or dot_env.get("COMPOSE_PROJECT_NAME") or ""
    if explicit:
        if normalize(explicit) != explicit:
            raise LiveError(f"COMPOSE_PROJECT_NAME {explicit!r} is not a valid compose project name "
                            "(lowercase letters, digits, '-' and '_', starting with a letter or digit)")
        return explicit
    top = inst.top.get("name") if inst.top is not None else None
    if top is not None and isinstance(top.value, str | int | float) and not isinstance(top.value, bool):
        # Compose interpolates `name:` with the OS environment over the .env file.
        named = normalize(interpolate(str(top.value), {**dot_env, **env}).value)
        if named:
            return named
    return normalize(os.path.basename(os.path.normpath(inst.project_dir)))
