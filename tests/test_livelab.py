"""The live lab itself (tests/livelab): it reproduces what the tool must find and fix, and leaves nothing behind.

The lab tests are marked ``live``: they skip with the reason where no dockerd can start (and fail
under CI=true). The first tests need no dockerd: the compose rewriting and the mirror parsing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from checks.demo import materialize
from tests.livelab import cache_dir, compose_file, prepare_compose
from tests.livelab.images import apt_mirrors, image_key

DEMO_PASSWORD = "postgres"  # the demo install's, from checks/demo/install


# -- without a dockerd -------------------------------------------------------------------

def test_prepare_compose_names_the_project_and_speeds_up_healthchecks(tmp_path):
    install = Path(materialize(str(tmp_path)))
    original = compose_file(install).read_text()
    prepared = prepare_compose(original, "desterlib-abc-1")
    data = yaml.safe_load(prepared)
    assert data["name"] == "desterlib-abc-1"
    assert data["services"]["postgres"]["healthcheck"]["interval"] == "1s"
    api = data["services"]["api"]["healthcheck"]
    assert api["test"] == ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]
    assert api["interval"] == "1s"
    # Everything else is the demo's own text, comments included.
    kept = [ln for ln in original.splitlines() if "interval:" not in ln]
    assert all(ln in prepared.splitlines() for ln in kept)
    # A second pass renames, it does not add a second name: nor a second API healthcheck.
    again = prepare_compose(prepared, "desterlib-abc-2")
    assert yaml.safe_load(again)["name"] == "desterlib-abc-2"
    assert again.count("healthcheck:") == prepared.count("healthcheck:")


def test_apt_mirrors_reads_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert apt_mirrors(tmp_path) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        "deb http://one.example/security bookworm-security main\n")
    assert apt_mirrors(tmp_path) == ("http://one.example/debian", "http://one.example/security")
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    assert apt_mirrors(tmp_path) == (None, None)


def test_cache_dir_follows_the_environment_given():
    assert cache_dir({"DH_LIVE_CACHE": "/x/y"}) == Path("/x/y")
    assert cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/dester-harden/live")
    assert cache_dir({"HOME": "/h"}) == Path("/h/.cache/dester-harden/live")


def test_image_key_changes_with_the_sources(tmp_path, monkeypatch):
    from tests.livelab import images

    before = image_key()
    for name in ("Dockerfile.api", "Dockerfile.postgres", "Dockerfile.redis", "api_standin.py",
                 "postgres-entrypoint.sh", "redis-entrypoint.sh"):
        (tmp_path / name).write_bytes((images.HERE / name).read_bytes())
    monkeypatch.setattr(images, "HERE", tmp_path)
    assert image_key() == before
    (tmp_path / "api_standin.py").write_text((tmp_path / "api_standin.py").read_text() + "\n# changed\n")
    assert image_key() != before
