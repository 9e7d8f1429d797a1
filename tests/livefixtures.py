"""pytest plugin: the live lab (tests/livelab) as fixtures, and the ``live`` marker.

* ``live_lab`` (session): a :class:`tests.livelab.LiveLab`, started once per session and stopped at
  its end (also after Ctrl-C). Where it cannot start it skips every test that uses it with the
  one-line reason; under ``CI=true`` it fails instead, since ``.ci/run`` installs what it needs.
* ``live_install`` (function): a factory ``live_install(layout="cli", **opts)`` returning a
  :class:`tests.livelab.LiveInstall`: a fresh copy of the layout with a unique compose project
  name, deployed and healthy unless ``deploy=False``, removed with its volumes after the test.

The cache directory is resolved here, at import, from the real environment: the autouse
``hermetic_env`` fixture points HOME at a temporary directory before any test runs.

Registered from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.demo import materialize
from tests import installs
from tests.livelab import (
    HERE,
    LabUnavailable,
    LiveInstall,
    LiveLab,
    cache_dir,
    compose_file,
    find_compose_plugin,
    prepare_compose,
)

#: From the real environment, before hermetic_env changes HOME.
CACHE = cache_dir(os.environ)
PLUGIN = find_compose_plugin(os.environ)


def _cli(parent: Path, hardened: bool) -> Path:
    """The bundled demo install (``dester-harden demo``'s): the CLI layout, deliberately insecure."""
    if hardened:
        raise ValueError("the cli layout is the insecure demo: hardened=True is for 'newer'")
    return Path(materialize(str(parent)))


#: What the newer layout's locally built services are built from in the lab: the API stand-in image
#: for ``apps/api/Dockerfile``, the scanner stand-in for ``apps/go-service``.
_API_DOCKERFILE = """\
# The live lab's stand-in for DesterLib's apps/api/Dockerfile: the API stand-in, built locally.
FROM desterlib/api:latest
"""
_SCANNER_DOCKERFILE = """\
# The live lab's stand-in for DesterLib's Go scanner: no authentication, POST /scan takes any root_path.
FROM desterlib/api:latest
COPY scanner_standin.py /app/scanner_standin.py
ENV SCANNER_PORT=8080
EXPOSE 8080
CMD ["python3", "-u", "/app/scanner_standin.py"]
"""


def _newer(parent: Path, hardened: bool) -> Path:
    """tests/installs.py's newer layout (SQLite, Redis, the scanner; api and scanner built locally)."""
    root = installs.newer_install(parent, hardened=hardened)
    (root / "apps" / "api" / "Dockerfile").write_text(_API_DOCKERFILE)
    scanner = root / "apps" / "go-service"
    scanner.mkdir(parents=True, exist_ok=True)
    (scanner / "Dockerfile").write_text(_SCANNER_DOCKERFILE)
    shutil.copyfile(HERE / "scanner_standin.py", scanner / "scanner_standin.py")
    return root


LAYOUTS: dict[str, Callable[[Path, bool], Path]] = {"cli": _cli, "newer": _newer}

_labs: list[LiveLab] = []


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: a real-component test against the live lab (a real dockerd)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for lab in _labs:
        terminalreporter.write_sep("-", f"live lab {lab.root.name} (images {lab.images_how or 'not ready'})")
        for name, seconds in lab.timings:
            terminalreporter.write_line(f"{name:>32}: {seconds:6.2f} s")


@pytest.fixture(scope="session")
def live_lab() -> Iterator[LiveLab]:
    try:
        lab = LiveLab.start(CACHE, PLUGIN)
    except LabUnavailable as exc:
        why = f"live lab unavailable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(why + " (under CI=true the lab must start: .ci/run installs what it needs)")
        pytest.skip(why)
    _labs.append(lab)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture
def live_install(live_lab: LiveLab, tmp_path: Path) -> Iterator[Callable[..., LiveInstall]]:
    made: list[LiveInstall] = []

    def factory(layout: str = "cli", *, deploy: bool = True, hc_interval: str = "1s",
                api_healthcheck: bool = True, hardened: bool = False) -> LiveInstall:
        """A fresh ``layout`` install with its own project name; deployed and healthy unless ``deploy=False``."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
        parent = tmp_path / f"install{len(made)}"
        parent.mkdir()
        install = LiveInstall(LAYOUTS[layout](parent, hardened))
        install.project = live_lab.new_project()
        install.compose = compose_file(install)
        install.compose.write_text(prepare_compose(install.compose.read_text(), install.project, hc_interval,
                                                   api_healthcheck))
        made.append(install)
        if deploy:
            live_lab.deploy(install)
        return install

    yield factory
    for install in reversed(made):
        live_lab.down(install.project)
