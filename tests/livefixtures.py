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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from checks.demo import materialize
from tests.livelab import (
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
LAYOUTS = ("cli",)

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
                api_healthcheck: bool = True) -> LiveInstall:
        """A fresh ``layout`` install with its own project name; deployed and healthy unless ``deploy=False``."""
        if layout not in LAYOUTS:
            raise ValueError(f"unknown layout {layout!r}: one of {', '.join(LAYOUTS)}")
        parent = tmp_path / f"install{len(made)}"
        parent.mkdir()
        install = LiveInstall(materialize(str(parent)))
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
