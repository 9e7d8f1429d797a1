"""Shared fixtures: a hermetic environment and helpers to run the CLI.

Tests never see the developer's own HOME, DESTERLIB_DIR, colours or keyring.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The live lab's fixtures (live_lab, live_install) and the ``live`` marker; the proxy lab's (proxy_lab, ``proxy``).
pytest_plugins = ["tests.livefixtures", "tests.proxylab", "tests.fwlab", "tests.fwdocker"]

PROJECT = Path(__file__).resolve().parent.parent
#: ../shared exists in CI and on developer machines, not in a user's clone.
SHARED = Path(os.environ.get("DESTER_HARDEN_SHARED", PROJECT.parent / "shared"))
REAL = SHARED / "real-desterlib" / "desterlib"
PEER = SHARED / "peer-fixtures" / "compose-lint"

#: A fixed clock for everything that depends on "now" (OPS-001's backup age).
FIXED_NOW = 1_790_000_000.0  # 2026-09-21


def need_shared(path: Path = SHARED) -> Path:
    """Skip, visibly, when ../shared (or a part of it) is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent: it exists in CI and next to a developer checkout, not in a user's clone")
    return path


def need_venv_tool(name: str) -> str:
    """The path of the executable ``name`` installed next to this Python (the test extras put it there).

    Absent, the test skips, visibly; under ``CI=true`` it fails, since ``.ci/run`` installs it.
    """
    local = Path(sys.executable).parent / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    why = (f"{name} is not installed in this virtual environment (pip install -e '.[test]')"
           + (f"; the one at {found} belongs to another environment" if found else ""))
    if os.environ.get("CI") == "true":
        pytest.fail(why + ", and .ci/run installs it")
    pytest.skip(why)


@pytest.fixture(autouse=True)
def hermetic_env(tmp_path_factory, monkeypatch, request):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("DESTERLIB_DIR", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("DESTER_HARDEN_DEBUG", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local" / "share"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    # Root's own journal and the secrets fallback file: never /var/lib/dester-harden in a test.
    monkeypatch.setenv("DESTER_HARDEN_STATE_DIR", str(tmp_path_factory.mktemp("state") / "dester-harden"))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    # This machine's sockets, Docker Engine and addresses are no test's input: the live layer is off
    # (usecases.live_state says None) except in tests marked live, whose input is the lab's Engine, or
    # where a test turns it on (monkeypatch.delenv("DESTER_HARDEN_NO_LIVE")).
    # The host's own iptables and nft are never a test's input, not even read (live tests included): a
    # test reads a firewall inside its own namespace, or passes gather() a firewall_reader.
    monkeypatch.setenv("DESTER_HARDEN_NO_FIREWALL", "1")
    if request.node.get_closest_marker("live") is None:
        monkeypatch.setenv("DESTER_HARDEN_NO_LIVE", "1")
    else:
        monkeypatch.delenv("DESTER_HARDEN_NO_LIVE", raising=False)
    yield


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str, env: dict | None = None, input: str | None = None, cwd: str | None = None) -> Result:
    """Run ``python -m tui ARGS`` in a subprocess, as a user would (no terminal)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True, env=full_env,
                          input=input, cwd=cwd or str(PROJECT), timeout=120)
    return Result(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def cli():
    return run_cli


# -- snapshots live in the top-level snapshots/ ------------------------------------
# pytest-textual-snapshot stores SVGs beside each test in __snapshots__/; the
# design card keeps them in snapshots/. The path still goes through the test's
# own folder and module (snapshots/<folder under tests>/<module>/<test>.svg),
# so syrupy's clean-up on --snapshot-update only ever sees one module's files
# (an override that returned one flat folder would delete the others).
SNAPSHOTS = PROJECT / "snapshots"
try:
    from pytest_textual_snapshot import SVGImageExtension as _SVG
except ImportError:  # the snapshot plugin is not installed: nothing to relocate
    _SVG = None

if _SVG is not None:
    def _snapshot_dirname(cls, *, test_location) -> str:
        test_dir = Path(test_location.filepath).resolve().parent
        try:
            rel = test_dir.relative_to(PROJECT / "tests")
        except ValueError:
            rel = Path(test_dir.name)
        return str(SNAPSHOTS / rel / test_location.basename)

    _SVG.dirname = classmethod(_snapshot_dirname)
