"""The planned compose files validated by Docker Compose itself, where it is installed."""

from __future__ import annotations

import functools
import os
import subprocess
from typing import TYPE_CHECKING

from checks.fix import scratch
from checks.install.model import Installation

if TYPE_CHECKING:  # pragma: no cover - the planner imports this module, not the other way round
    from checks.fix.planner import Planner


@functools.lru_cache(maxsize=1)
def compose_available() -> bool:
    """Whether ``docker compose`` runs here (asked once per process)."""
    try:
        return subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


class ComposeRejected(Exception):
    """``docker compose config`` refused the planned files (the planner raises it as a PlanError)."""


def compose_check(planner: Planner, inst: Installation) -> None:
    """Where ``docker compose`` is installed, let it validate the planned compose files.

    The flags keep it from resolving variables or env files: without them it
    prints secrets. Files are mirrored into a private temporary directory.
    """
    changed = [p for p in planner.overlay.contents if any(p == s.path for s in inst.compose_files)]
    if not changed or not compose_available():
        return
    scratch.remove_abandoned()  # copies a killed run left behind (they may hold secrets)
    # A private (0700) directory outside the install: planning, and so a dry
    # run, must leave the installation exactly as it was.
    with scratch.validation_dir() as tmp:
        args = ["docker", "compose"]
        # Each file at its absolute path under tmp: included and extended files (maybe
        # outside the install) keep where they are relative to each other.
        for src in inst.compose_files:
            dest = tmp + src.path
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            data = planner.overlay.contents.get(src.path)
            if data is None:
                with open(src.path, "rb") as fh:
                    data = fh.read()
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            if src.path not in inst.reached:
                args += ["-f", dest]
        for ef in inst.env_files:
            # Compose stats an include's env_file even without interpolation: an empty
            # stand-in (the flags below never read it, and no secret is copied).
            dest = tmp + ef.path
            if ef.exists and not os.path.lexists(dest):
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        project = tmp + inst.project_dir
        args += ["--project-directory", project, "config", "--no-interpolate", "--no-env-resolution", "-q"]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=tmp,
                              env={**os.environ, "COMPOSE_DISABLE_ENV_FILE": "1"})
        if proc.returncode != 0:
            from checks.core.secrets import Masker

            masker = Masker(set(inst.secrets) | planner.generated)
            msg = " ".join(masker.text(proc.stderr.replace(tmp, "")).split())[:300]
            raise ComposeRejected(f"docker compose rejects the planned compose file: {msg}")
